"""Length-bucketed forward passes of the predictor (what `lmforge predict` and the server run)."""

from __future__ import annotations

import random

from lmforge.predictor import length_chunks


def _cost(lengths: list[int], chunks: list[list[int]], overhead: int) -> int:
    return sum(overhead + len(c) * max(lengths[i] for i in c) for c in chunks)


def test_length_chunks_partition_the_batch_at_least_as_cheaply_as_one_pass() -> None:
    rng = random.Random(0)
    for n in (1, 2, 5, 32, 64):
        lengths = [rng.randint(3, 60) for _ in range(n)]
        chunks = length_chunks(lengths, overhead=48)
        assert sorted(i for c in chunks for i in c) == list(range(n))  # every input once
        flat = [lengths[i] for c in chunks for i in c]
        assert flat == sorted(flat)  # passes of similar (ascending) lengths
        assert _cost(lengths, chunks, 48) <= _cost(lengths, [list(range(n))], 48)
    # Equal lengths: one pass. Very different lengths and no overhead: one pass per length.
    assert length_chunks([20] * 8) == [list(range(8))]
    assert length_chunks([5, 50, 5, 50], overhead=0) == [[0, 2], [1, 3]]
    assert length_chunks([]) == []
