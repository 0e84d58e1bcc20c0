"""Fully sharded data parallelism (FSDP2, ``torch.distributed.fsdp.fully_shard``) via accelerate.

Under FSDP every process holds 1/N of each parameter, gradient and optimizer state, and a
layer's full weights exist only while that layer runs (an all-gather before its forward and
backward, a reduce-scatter of its gradients after): ZeRO stage 3 (Rajbhandari et al. 2020).
The engine leaves the sharding itself to ``accelerate`` (``Accelerator.prepare``) and this
module supplies what lmforge does differently from a DDP run:

- **CPU processes.** accelerate 1.16 picks FSDP only for accelerator devices
  (``AcceleratorState.__init__`` sets ``DistributedType.FSDP`` in the multi-GPU/XPU/NPU...
  branch, never for ``MULTI_CPU``), so ``accelerate launch --use_fsdp`` on CPUs silently
  trains plain DDP. :func:`enable_cpu_fsdp` makes the same assignment for gloo processes;
  accelerate's own FSDP2 code then shards, gathers and checkpoints as it does on GPUs (FSDP2
  runs on CPU tensors with gloo). FSDP1 does not, hence :func:`refuse_fsdp1_on_cpu`: with
  ``accelerate launch``'s defaults (``--fsdp_cpu_ram_efficient_loading true``, which turns
  ``sync_module_states`` on) accelerate's plugin raises "FSDP parameter initialization with
  `sync_module_states=True` is not supported on cpu", and without them torch's
  ``FullyShardedDataParallel`` rejects the ``device_id`` accelerate passes ("Inconsistent
  compute device and `device_id` on rank 0: cpu vs cpu:0").
- **Checkpoints.** The weights are gathered into one full state dict on rank 0
  (``accelerator.get_state_dict``) and written as ``model.safetensors``, the same file a
  single-process run writes; the optimizer state stays sharded: accelerate's
  ``save_fsdp_optimizer`` writes ``optimizer_0/`` (one ``torch.distributed.checkpoint`` shard
  per rank, ``fsdp_state_dict_type: SHARDED_STATE_DICT``) or a full ``optimizer.bin``
  (``FULL_STATE_DICT``). Resuming broadcasts the weights from rank 0 into the shards and
  loads the optimizer with ``load_fsdp_optimizer``.
- **Forwards in lockstep.** Every forward all-gathers from every rank, so evaluation runs
  the same number of batches on each rank, and a model used by one process alone (reports,
  ``model/``) is rebuilt unsharded from the last checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from lmforge.errors import ConfigError

# accelerate is imported inside the functions: engine/precision.py imports this module and
# keeps accelerate out of the CLI's start-up.

FSDP_ENV = "ACCELERATE_USE_FSDP"
"""``true`` under ``accelerate launch --use_fsdp`` or a config's ``distributed_type: FSDP``."""

FSDP_COMMANDS = ("finetune",)
"""Commands whose end of run handles a sharded model (the others refuse FSDP at start)."""


def fsdp_requested() -> bool:
    """Whether the launcher asked for FSDP (accelerate's environment variable)."""
    return os.environ.get(FSDP_ENV, "false").lower() == "true"


def is_sharded(accelerator: Any) -> bool:
    """Whether ``accelerator`` shards the model (FSDP)."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def check_fsdp_command(command: str) -> None:
    """Refuse FSDP for a command whose end of run expects a whole model in each process.

    Raises:
        ConfigError: FSDP was requested and ``command`` is not in :data:`FSDP_COMMANDS`.
    """
    if fsdp_requested() and command not in FSDP_COMMANDS:
        raise ConfigError(f"FSDP is supported for `lmforge {' / '.join(FSDP_COMMANDS)}` only, "
                          f"not `{command}`; launch {command} without --use_fsdp (DDP)")


def refuse_fsdp1_on_cpu() -> None:
    """Before the ``Accelerator`` is built on a CPU: stop FSDP version 1 with one line.

    Raises:
        ConfigError: FSDP was requested with ``fsdp_version`` 1 (accelerate's default).
    """
    if fsdp_requested() and os.environ.get("FSDP_VERSION", "1") != "2":
        raise ConfigError("FSDP version 1 does not run on CPU processes (see "
                          "lmforge/engine/sharding.py); launch with --fsdp_version 2 (or "
                          "fsdp_version: 2 in the accelerate config)")


def enable_cpu_fsdp(accelerator: Any) -> None:
    """Turn a multi-process CPU (gloo) accelerator into an FSDP2 one when FSDP was requested.

    Does what ``AcceleratorState.__init__`` does for GPUs (see the module docstring): the
    plugin built from the ``FSDP_*`` environment variables, ``DistributedType.FSDP`` in both
    accelerate's ``AcceleratorState`` and ``PartialState`` (a later ``AcceleratorState()``
    copies the latter's fields). A no-op without FSDP, off CPU or with one process.
    """
    if not fsdp_requested():
        return
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.MULTI_CPU:
        return
    from accelerate.state import PartialState
    from accelerate.utils import FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin()  # version 2 (refuse_fsdp1_on_cpu ran first)
    if accelerator.mixed_precision != "no":
        plugin.set_mixed_precision(accelerator.mixed_precision)
    state = accelerator.state
    state.fsdp_plugin = plugin
    state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP


def forget_cpu_fsdp() -> None:
    """Undo :func:`enable_cpu_fsdp` in the process-wide state kept between runs.

    ``PartialState`` outlives a run's ``AcceleratorState``; left at FSDP, the next run's
    state would copy it without a plugin.
    """
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    shared = PartialState._shared_state
    if shared.get("distributed_type") == DistributedType.FSDP and \
            getattr(shared.get("device"), "type", None) == "cpu":
        shared["distributed_type"] = DistributedType.MULTI_CPU


def expose_inner_model(model: torch.nn.Module) -> None:
    """Give an objective wrapper its ``transformers`` model's ``_no_split_modules`` and
    ``tie_weights``, which accelerate's FSDP2 preparation looks up on the module it shards.

    ``_no_split_modules``: ``TRANSFORMER_BASED_WRAP`` shards each transformer block apart (so
    one block's full weights exist at a time); without the names the whole model would be
    one FSDP unit. ``tie_weights``: with ``fsdp_cpu_ram_efficient_loading`` (the default of
    ``accelerate launch``) the model goes to the meta device and is refilled from rank 0's
    weights, and only a ``tie_weights`` call ties the output layer to the embeddings again;
    without it the two would train as separate matrices.
    """
    for module in model.modules():
        if module is model:
            continue
        if not getattr(model, "_no_split_modules", None) and \
                getattr(module, "_no_split_modules", None):
            model._no_split_modules = list(module._no_split_modules)
        if not hasattr(model, "tie_weights") and callable(getattr(module, "tie_weights", None)):
            model.tie_weights = module.tie_weights


def tied_names(model: torch.nn.Module) -> dict[str, str]:
    """``{alias: first name}`` of parameters registered under more than one name (an output
    layer tied to the embeddings); ``named_parameters`` lists such a parameter once."""
    first: dict[int, str] = {}
    aliases = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            aliases[name] = first[id(param)]
        else:
            first[id(param)] = name
    return aliases


def check_ties_kept(model: torch.nn.Module, before: Mapping[str, str]) -> None:
    """Fail if sharding untied weights (e.g. the output layer from the embeddings).

    Raises:
        ConfigError: Tied parameters came out of ``accelerator.prepare`` as separate ones.
    """
    lost = set(before) - set(tied_names(model))
    if lost:
        raise ConfigError(f"FSDP preparation untied {sorted(lost)} from the weights they share; "
                          "launch with --fsdp_cpu_ram_efficient_loading false")


def write_sharded_state(accelerator: Any, model: torch.nn.Module, optimizer: Any,
                        folder: Path) -> None:
    """All ranks: write the full weights (rank 0) and the optimizer state into ``folder``.

    Args:
        accelerator: The FSDP accelerator.
        model: The prepared (sharded) model.
        optimizer: The prepared optimizer.
        folder: The checkpoint being assembled (every rank sees it).
    """
    from accelerate.utils import save_fsdp_optimizer

    state = accelerator.get_state_dict(model)  # collective; full on rank 0, empty elsewhere
    if accelerator.is_main_process:
        save_file(_without_aliases(model, state), str(folder / "model.safetensors"))
    save_fsdp_optimizer(accelerator.state.fsdp_plugin, accelerator, optimizer, model, folder)


def load_sharded_state(accelerator: Any, model: torch.nn.Module, optimizer: Any,
                       folder: Path) -> None:
    """All ranks: restore what :func:`write_sharded_state` wrote into the live shards."""
    from accelerate.utils import load_fsdp_optimizer
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    # Rank 0 reads the file and broadcasts each tensor; the others only receive their shard.
    full = load_file(str(folder / "model.safetensors")) if accelerator.is_main_process else {}
    for alias, name in tied_names(model).items() if full else ():
        full[alias] = full[name]  # the file names a tied weight once (_without_aliases)
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True,
                                                               broadcast_from_rank0=True))
    load_fsdp_optimizer(accelerator.state.fsdp_plugin, accelerator, optimizer, model, folder)


def _without_aliases(model: torch.nn.Module,
                     state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the second name of each tied parameter (lm_head = embeddings), as
    ``safetensors.torch.save_model`` does; ``load_model`` expects one name per tensor.

    The gathered state holds a separate copy under each name, so the ties are read from the
    model (:func:`tied_names`).
    """
    aliases = tied_names(model)
    return {name: tensor.contiguous() for name, tensor in state.items() if name not in aliases}
