"""The replay memory: capacity, policies, determinism, and batch mixing."""

from __future__ import annotations

import pytest
import torch

from lmforge.continual.buffer import ReplayBuffer, buffer_capacity, concat_batches
from lmforge.errors import ConfigError


def test_capacity_from_count_or_percent_and_too_large() -> None:
    assert buffer_capacity("200", 1000) == 200
    assert buffer_capacity("10%", 1000) == 100
    with pytest.raises(ConfigError, match="larger than the stream's 1000"):
        buffer_capacity("5000", 1000)
    with pytest.raises(ConfigError, match="rounds to an empty buffer"):
        buffer_capacity("0.01%", 1000)


def test_per_experience_shares_are_equal_and_nested() -> None:
    buf = ReplayBuffer(90, "per_experience", seed=0)
    buf.add_experience(0, 500)
    first = list(buf.groups[0])
    assert len(buf) == 90
    buf.add_experience(1, 500)
    buf.add_experience(2, 500)
    assert [len(buf.groups[k]) for k in range(3)] == [30, 30, 30]
    assert buf.groups[0] == first[:30]  # a shrinking share keeps a subset of what it had
    assert all(0 <= r < 500 for _, r in buf.entries())


def test_reservoir_is_uniform_and_seeded() -> None:
    counts = torch.zeros(4)
    for seed in range(40):
        buf = ReplayBuffer(40, "reservoir", seed=seed)
        for k in range(4):
            buf.add_experience(k, 100)
        assert len(buf) == 40
        for exp, _ in buf.entries():
            counts[exp] += 1
    # Each experience holds about a quarter of the memory (1,600 draws in all).
    assert ((counts / counts.sum()) - 0.25).abs().max() < 0.05
    a, b = ReplayBuffer(10, "reservoir", 3), ReplayBuffer(10, "reservoir", 3)
    for buf in (a, b):
        buf.add_experience(0, 50)
        buf.add_experience(1, 50)
    assert a.entries() == b.entries()


def test_concat_pads_the_shorter_batch() -> None:
    a = {"input_ids": torch.ones(2, 3, dtype=torch.long),
         "attention_mask": torch.ones(2, 3, dtype=torch.long),
         "labels": torch.tensor([0, 1]), "task_ids": torch.tensor([1, 1])}
    b = {"input_ids": torch.full((1, 5), 7), "attention_mask": torch.ones(1, 5, dtype=torch.long),
         "labels": torch.tensor([3]), "task_ids": torch.tensor([0])}
    out = concat_batches(a, b, pad_token_id=0)
    assert out["input_ids"].shape == (3, 5)
    assert out["input_ids"][0].tolist() == [1, 1, 1, 0, 0]
    assert out["attention_mask"][1].tolist() == [1, 1, 1, 0, 0]
    assert out["labels"].tolist() == [0, 1, 3] and out["task_ids"].tolist() == [1, 1, 0]
