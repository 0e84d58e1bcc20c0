"""Process-wide state that one run changes, put back when the run ends.

A notebook, ``lmforge tune`` and ``lmforge continual`` run many trainings in one Python
process. Each run seeds the global RNGs, may set torch's thread count and builds an
``accelerate`` state with its own precision; :func:`run_scope` saves all of that before the
run and restores it afterwards, so a run leaves the process as it found it (and a caller's
own ``Accelerator`` keeps its settings).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any


def _accelerate_states() -> list[Any]:
    from accelerate.state import AcceleratorState, GradientState

    return [AcceleratorState._shared_state, GradientState._shared_state]


@contextlib.contextmanager
def run_scope() -> Iterator[None]:
    """Save torch threads, the global RNGs and accelerate's run state; restore them on exit.

    ``accelerate``'s ``PartialState`` (device, process group, rank) is not touched: it is
    the same for every run of the process.
    """
    # torch and numpy are imported here, not at module level: the run context imports this
    # module, and `lmforge --help` / `import lmforge` must not pay for torch (about 1 s).
    import numpy as np
    import torch

    threads = torch.get_num_threads()
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
           torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    saved = [dict(state) for state in _accelerate_states()]
    try:
        yield
    finally:
        for state, before in zip(_accelerate_states(), saved, strict=True):
            state.clear()
            state.update(before)
        torch.set_num_threads(threads)
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
        if rng[3] is not None:
            torch.cuda.set_rng_state_all(rng[3])
