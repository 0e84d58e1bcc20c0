"""The episodic memory of replay and A-GEM, and mixing memory rows into a batch.

The buffer holds (experience, row) pairs, filled after each experience:

- ``per_experience``: capacity M is shared equally by the experiences seen so far; when a
  new experience arrives each older share is cut to M / (t + 1) (a random subset, since
  every share is stored in random order), and the new experience adds a random sample;
- ``reservoir`` (Vitter 1985): every row of the stream has the same chance M / N_seen to be
  in the buffer, whatever its experience.

Both are seeded, so a resumed stream rebuilds exactly the buffer it had.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lmforge.continual.settings import buffer_spec
from lmforge.errors import ConfigError


def buffer_capacity(text: str, stream_examples: int) -> int:
    """Memory size in examples from ``strategy.buffer_size`` (N or P%).

    Raises:
        ConfigError: The buffer would hold more examples than the stream has.
    """
    value, percent = buffer_spec(text)
    capacity = int(round(value / 100.0 * stream_examples)) if percent else int(value)
    if capacity > stream_examples:
        raise ConfigError(f"strategy.buffer_size={text} is larger than the stream's "
                          f"{stream_examples} training examples; use a smaller size or a "
                          "percentage below 100%")
    if percent and value > 0 and capacity == 0:
        raise ConfigError(f"strategy.buffer_size={text} of {stream_examples} examples rounds "
                          "to an empty buffer; use a larger percentage or a count")
    return capacity


class ReplayBuffer:
    """A seeded memory of (experience index, row index) pairs.

    Args:
        capacity: Examples it holds at most.
        policy: ``per_experience`` or ``reservoir``.
        seed: Seed of the sampling.
    """

    def __init__(self, capacity: int, policy: str, seed: int) -> None:
        self.capacity, self.policy, self.seed = capacity, policy, seed
        self.groups: dict[int, list[int]] = {}  # per_experience: rows of each experience
        self.items: list[tuple[int, int]] = []  # reservoir
        self.seen = 0

    def add_experience(self, index: int, rows: int) -> None:
        """Update the memory after experience ``index`` (with ``rows`` training rows)."""
        rng = np.random.default_rng([self.seed, index])
        if self.policy == "reservoir":
            for row in range(rows):
                self.seen += 1
                if len(self.items) < self.capacity:
                    self.items.append((index, row))
                else:
                    slot = int(rng.integers(0, self.seen))
                    if slot < self.capacity:
                        self.items[slot] = (index, row)
            return
        self.groups[index] = []
        share = self.capacity // len(self.groups)
        extra = self.capacity - share * len(self.groups)
        for k, key in enumerate(sorted(self.groups)):
            quota = share + (1 if k < extra else 0)  # the remainder goes to the oldest
            if key == index:
                self.groups[key] = [int(r) for r in rng.permutation(rows)[:quota]]
            else:
                self.groups[key] = self.groups[key][:quota]

    def entries(self) -> list[tuple[int, int]]:
        """Every (experience, row) in the memory."""
        if self.policy == "reservoir":
            return list(self.items)
        return [(k, r) for k in sorted(self.groups) for r in self.groups[k]]

    def __len__(self) -> int:
        return len(self.entries())

    def sample(self, count: int, generator: torch.Generator) -> list[tuple[int, int]]:
        """``count`` entries drawn uniformly (with replacement when the memory is smaller)."""
        entries = self.entries()
        if not entries:
            return []
        if count <= len(entries):
            picks = torch.randperm(len(entries), generator=generator)[:count]
        else:
            picks = torch.randint(len(entries), (count,), generator=generator)
        return [entries[int(i)] for i in picks]


def memory_batch(stream: Any, entries: list[tuple[int, int]], collator: Any,
                 device: torch.device) -> dict[str, torch.Tensor]:
    """Collate the training rows ``entries`` of ``stream`` into a batch on ``device``."""
    examples = []
    for exp, row in entries:
        examples.append(stream.experiences[exp].train[row])
    batch = collator(examples)
    return {k: v.to(device) for k, v in batch.items()}


def concat_batches(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
                   pad_token_id: int) -> dict[str, torch.Tensor]:
    """Stack two padded batches along the batch axis, padding the shorter one's tokens."""
    width = max(a["input_ids"].shape[1], b["input_ids"].shape[1])

    def widen(t: torch.Tensor, key: str) -> torch.Tensor:
        if t.dim() < 2 or t.shape[1] == width:
            return t
        value = pad_token_id if key == "input_ids" else 0
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    return {k: torch.cat([widen(a[k], k), widen(b[k], k)]) for k in a}
