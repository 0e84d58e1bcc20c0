"""Model presets and loading."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer, BertForMaskedLM, GPT2LMHeadModel, LlamaForCausalLM

from lmforge.errors import ConfigError
from lmforge.models.build import SHAPES, build_model, count_parameters, resolve_checkpoint
from lmforge.settings import ModelConfig


@pytest.mark.parametrize(("size", "layers", "hidden"), [("tiny", 2, 128), ("mini", 4, 256),
                                                        ("small", 4, 512), ("base", 12, 768)])
def test_bert_presets_follow_published_shapes(wordpiece_dir: Path, size: str, layers: int,
                                              hidden: int) -> None:
    assert SHAPES[size][:2] == (layers, hidden)
    if size in ("tiny", "mini"):  # building the big ones would only cost test time
        tok = AutoTokenizer.from_pretrained(wordpiece_dir)
        model = build_model(ModelConfig(size=size), tok, "mlm").model
        assert isinstance(model, BertForMaskedLM)
        assert model.config.num_hidden_layers == layers and model.config.hidden_size == hidden
        assert model.config.intermediate_size == 4 * hidden
        assert model.config._attn_implementation == "sdpa"


def test_decoders_and_overrides(bpe_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(bpe_dir)
    gpt = build_model(ModelConfig(family="gpt2", size="tiny"), tok, "clm").model
    assert isinstance(gpt, GPT2LMHeadModel) and gpt.config.eos_token_id == tok.eos_token_id
    llama = build_model(ModelConfig(family="llama", size="tiny",
                                    overrides={"num_hidden_layers": 1}), tok, "clm").model
    assert isinstance(llama, LlamaForCausalLM) and llama.config.num_hidden_layers == 1
    trainable, total = count_parameters(llama)
    assert trainable == total > 0
    with pytest.raises(ConfigError, match="not a field"):
        build_model(ModelConfig(family="gpt2", size="tiny", overrides={"bogus": 1}), tok, "clm")


def test_missing_checkpoint_is_a_config_error(wordpiece_dir: Path, tmp_path: Path) -> None:
    tok = AutoTokenizer.from_pretrained(wordpiece_dir)
    with pytest.raises(ConfigError, match="does not exist"):
        build_model(ModelConfig(pretrained=str(tmp_path / "nope")), tok, "mlm")


def test_resolve_checkpoint_maps_run_dirs(tmp_path: Path) -> None:
    (tmp_path / "run" / "model").mkdir(parents=True)
    assert resolve_checkpoint(str(tmp_path / "run")) == str(tmp_path / "run" / "model")
    assert resolve_checkpoint("org/name") == "org/name"
