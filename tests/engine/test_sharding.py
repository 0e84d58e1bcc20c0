"""The FSDP pieces that need no process group: refusals, tie bookkeeping, the objective's
inner-model attributes. The two-process runs are in ``test_fsdp.py``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType
from transformers import LlamaConfig, LlamaForCausalLM

from lmforge.cli import main
from lmforge.engine import sharding
from lmforge.engine.precision import make_accelerator
from lmforge.errors import ConfigError


class _Objective(torch.nn.Module):
    """The shape of the engine's objectives: a wrapper with the model as ``.model``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model


def _tied_llama() -> LlamaForCausalLM:
    return LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16,
                                        num_hidden_layers=1, num_attention_heads=2,
                                        num_key_value_heads=1, tie_word_embeddings=True))


def test_other_commands_refuse_fsdp_at_start(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(sharding.FSDP_ENV, "true")
    sharding.check_fsdp_command("finetune")
    with pytest.raises(ConfigError, match="finetune` only, not `pretrain`"):
        sharding.check_fsdp_command("pretrain")
    assert main(["pretrain", "data.path=missing.txt"]) == 2
    assert "FSDP is supported for `lmforge finetune` only" in capsys.readouterr().err
    monkeypatch.setenv(sharding.FSDP_ENV, "false")
    sharding.check_fsdp_command("pretrain")


def test_fsdp1_on_cpu_is_refused_before_accelerate_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sharding.FSDP_ENV, "true")
    monkeypatch.delenv("FSDP_VERSION", raising=False)  # accelerate launch's default is 1
    with pytest.raises(ConfigError, match="launch with --fsdp_version 2"):
        make_accelerator("fp32")
    monkeypatch.setenv("FSDP_VERSION", "2")
    sharding.refuse_fsdp1_on_cpu()
    # One process (no group to shard over): accelerate's plain single-process state stays.
    accelerator, _ = make_accelerator("fp32")
    assert accelerator.distributed_type == DistributedType.NO
    sharding.enable_cpu_fsdp(SimpleNamespace(distributed_type=DistributedType.NO))


def test_objective_gets_block_classes_and_tie_weights() -> None:
    llama = _tied_llama()
    objective = _Objective(llama)
    sharding.expose_inner_model(objective)
    assert objective._no_split_modules == ["LlamaDecoderLayer"]
    assert objective.tie_weights == llama.tie_weights


def test_gathered_state_keeps_one_name_per_tied_weight() -> None:
    objective = _Objective(_tied_llama())
    assert sharding.tied_names(objective) == {
        "model.lm_head.weight": "model.model.embed_tokens.weight"}
    # A gathered full state dict holds a separate copy under each name.
    full = {name: tensor.clone() for name, tensor in objective.state_dict().items()}
    kept = sharding._without_aliases(objective, full)
    assert "model.lm_head.weight" not in kept and "model.model.embed_tokens.weight" in kept
    ties = sharding.tied_names(objective)
    sharding.check_ties_kept(objective, ties)
    objective.model.lm_head.weight = torch.nn.Parameter(torch.zeros(16, 8))  # untied
    with pytest.raises(ConfigError, match="untied"):
        sharding.check_ties_kept(objective, ties)
