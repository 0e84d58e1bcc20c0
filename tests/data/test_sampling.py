"""make_batches / shard_batches: determinism, coverage, length grouping, sharding."""

from __future__ import annotations

import random

import pytest

from lmforge.data import make_batches, shard_batches
from lmforge.errors import ConfigError


def _flat(batches: list[list[int]]) -> list[int]:
    return [i for b in batches for i in b]


def _padded_tokens(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(max(lengths[i] for i in b) * len(b) for b in batches)


def test_deterministic_and_epoch_dependent() -> None:
    a = make_batches(103, 8, seed=1, epoch=0)
    assert a == make_batches(103, 8, seed=1, epoch=0)
    assert a != make_batches(103, 8, seed=1, epoch=1)
    assert a != make_batches(103, 8, seed=2, epoch=0)
    assert sorted(_flat(a)) == list(range(103))
    assert [len(b) for b in a] == [8] * 12 + [7]


def test_no_shuffle_and_drop_last() -> None:
    assert make_batches(5, 2, shuffle=False) == [[0, 1], [2, 3], [4]]
    assert make_batches(5, 2, shuffle=False, drop_last=True) == [[0, 1], [2, 3]]


def test_group_by_length() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(5, 500) for _ in range(1000)]
    grouped = make_batches(1000, 16, lengths=lengths, group_by_length=True, seed=3)
    assert grouped == make_batches(1000, 16, lengths=lengths, group_by_length=True, seed=3)
    assert sorted(_flat(grouped)) == list(range(1000))
    plain = make_batches(1000, 16, lengths=lengths, seed=3)
    assert _padded_tokens(grouped, lengths) < 0.75 * _padded_tokens(plain, lengths)
    assert max(lengths[i] for i in grouped[0]) == max(lengths)  # longest batch first
    dropped = make_batches(1000, 16, lengths=lengths, group_by_length=True, drop_last=True)
    assert all(len(b) == 16 for b in dropped) and len(dropped) == 62


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        make_batches(10, 0)
    with pytest.raises(ConfigError):
        make_batches(10, 2, group_by_length=True)
    with pytest.raises(ConfigError):
        make_batches(10, 2, lengths=[1, 2])


def test_shard_batches() -> None:
    batches = make_batches(70, 4, seed=0)  # 18 batches
    shards = [shard_batches(batches, r, 4) for r in range(4)]
    assert [len(s) for s in shards] == [4, 4, 4, 4]  # 2 leftover batches dropped
    assert shards[1] == [batches[1], batches[5], batches[9], batches[13]]
    seen = _flat([b for s in shards for b in s])
    assert len(seen) == len(set(seen))
    with pytest.raises(ConfigError):
        shard_batches(batches, 4, 4)
