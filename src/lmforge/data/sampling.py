"""Deterministic batch index lists: shuffling, length grouping, and sharding across ranks.

Batches are plain lists of row indices computed up front from ``(seed, epoch)``, so a resumed
run can skip exactly the batches it already trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmforge.errors import ConfigError

MEGABATCH_MULT = 50  # as in HF's LengthGroupedSampler


def make_batches(
    num_examples: int,
    batch_size: int,
    *,
    lengths: Sequence[int] | None = None,
    shuffle: bool = True,
    group_by_length: bool = False,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
) -> list[list[int]]:
    """Split ``range(num_examples)`` into batches of indices.

    With ``group_by_length``, indices are shuffled, then sorted by length (longest first)
    inside mega-batches of ``50 * batch_size``, so each batch holds similar lengths and needs
    little padding while the order stays random across mega-batches; the batch order is then
    shuffled, keeping the batch with the longest example first so an out-of-memory shows at
    step 0 rather than hours in.

    Args:
        num_examples: Number of rows.
        batch_size: Rows per batch.
        lengths: Length of each row; required with ``group_by_length``.
        shuffle: Shuffle rows (and batch order). False keeps the natural order (still
            length-sorted within mega-batches when grouping).
        group_by_length: Group rows of similar length.
        seed: Base seed.
        epoch: Mixed into the seed so every epoch gets a new, reproducible order.
        drop_last: Drop the final smaller batch.

    Returns:
        Lists of row indices; every index appears exactly once (unless dropped).

    Raises:
        ConfigError: Bad ``batch_size`` or ``lengths``.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if num_examples < 0:
        raise ConfigError(f"num_examples must be >= 0, got {num_examples}")
    if group_by_length and lengths is None:
        raise ConfigError("group_by_length needs the example lengths")
    if lengths is not None and len(lengths) != num_examples:
        raise ConfigError(f"got {len(lengths)} lengths for {num_examples} examples")

    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(num_examples) if shuffle else np.arange(num_examples)
    if not group_by_length:
        batches = [order[i : i + batch_size].tolist() for i in range(0, num_examples, batch_size)]
        if drop_last and batches and len(batches[-1]) < batch_size:
            batches.pop()
        return batches

    lens = np.asarray(lengths)
    mega = MEGABATCH_MULT * batch_size
    grouped = []
    for i in range(0, num_examples, mega):
        chunk = order[i : i + mega]
        # Stable sort on -length: longest first, ties keep the shuffled order.
        grouped.append(chunk[np.argsort(-lens[chunk], kind="stable")])
    flat = np.concatenate(grouped) if grouped else np.empty(0, dtype=np.int64)
    batches = [flat[i : i + batch_size].tolist() for i in range(0, num_examples, batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()  # the only short batch is the last one, before reordering
    if shuffle and len(batches) > 1:
        perm = rng.permutation(len(batches))
        batches = [batches[k] for k in perm]
        longest = max(range(len(batches)), key=lambda k: max(lens[batches[k]]))
        batches[0], batches[longest] = batches[longest], batches[0]
    return batches


def shard_batches(batches: Sequence[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """Every ``world_size``-th batch starting at ``rank``; the remainder is dropped so that
    all ranks run the same number of steps (a rank that runs one step more would hang in the
    gradient all-reduce).

    Args:
        batches: Output of :func:`make_batches` (identical on every rank).
        rank: This process's rank, ``0 <= rank < world_size``.
        world_size: Number of processes.

    Returns:
        This rank's batches.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"invalid rank {rank} for world_size {world_size}")
    usable = len(batches) // world_size * world_size
    return [list(b) for b in batches[rank:usable:world_size]]
