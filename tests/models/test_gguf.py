"""GGUF -> Hugging Face folder conversion, on a tiny GGUF file written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from lmforge.errors import ConfigError  # noqa: E402
from lmforge.models.build import load_tokenizer, resolve_checkpoint  # noqa: E402
from lmforge.models.gguf import CACHE_ENV, MARKER, convert_gguf  # noqa: E402

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN = 32, 2, 4, 2, 64
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                 "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
                 "{% endif %}")


def _byte_bpe(corpus: list[str]) -> tuple[list[str], list[str]]:
    """A small byte-level BPE vocabulary and its merges, as llama.cpp's ``gpt2`` model."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    state = json.loads(tok.to_str())["model"]
    vocab = sorted(state["vocab"], key=state["vocab"].get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in state["merges"]]
    return vocab, merges


def write_tiny_gguf(path: Path, arch: str = "llama") -> Path:
    """A 2-layer Llama-architecture GGUF (float32 tensors) with a byte-level BPE tokenizer."""
    vocab, merges = _byte_bpe(["hello world, how are you today?"] * 20 +
                              ["the quick brown fox jumps over the lazy dog"] * 20)
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny")
    writer.add_block_count(LAYERS)
    writer.add_context_length(64)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(vocab))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(vocab)
    writer.add_token_types([gguf.TokenType.NORMAL] * len(vocab))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_chat_template(CHAT_TEMPLATE)
    head_dim = HIDDEN // HEADS

    def tensor(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.05).astype(np.float32))

    tensor("token_embd.weight", len(vocab), HIDDEN)
    writer.add_tensor("output_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    for i in range(LAYERS):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        tensor(f"blk.{i}.attn_q.weight", HIDDEN, HIDDEN)
        tensor(f"blk.{i}.attn_k.weight", KV_HEADS * head_dim, HIDDEN)
        tensor(f"blk.{i}.attn_v.weight", KV_HEADS * head_dim, HIDDEN)
        tensor(f"blk.{i}.attn_output.weight", HIDDEN, HIDDEN)
        tensor(f"blk.{i}.ffn_gate.weight", FFN, HIDDEN)
        tensor(f"blk.{i}.ffn_up.weight", FFN, HIDDEN)
        tensor(f"blk.{i}.ffn_down.weight", HIDDEN, FFN)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_converted_folder_matches_the_gguf_model_and_reloads(
        tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    folder = Path(convert_gguf(tiny_gguf))
    assert folder.is_relative_to(tmp_path / "cache")
    assert (folder / "model.safetensors").is_file() and (folder / MARKER).is_file()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config  # loads as a plain, trainable model

    direct = AutoModelForCausalLM.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name,
                                                  dtype=torch.float32).eval()
    plain = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.tensor([[5, 17, 42, 99, 3]])
    with torch.no_grad():
        torch.testing.assert_close(plain(ids).logits, direct(ids).logits)
    assert any(p.requires_grad for p in plain.parameters())

    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer("hello world")["input_ids"] == AutoTokenizer.from_pretrained(
        str(tiny_gguf.parent), gguf_file=tiny_gguf.name)("hello world")["input_ids"]
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True).endswith("assistant\n")


def test_conversion_is_cached_and_resolve_checkpoint_uses_it(
        tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    first = convert_gguf(tiny_gguf)
    stamp = (Path(first) / "model.safetensors").stat().st_mtime_ns
    assert resolve_checkpoint(str(tiny_gguf)) == first  # a .gguf path resolves to the folder
    assert (Path(first) / "model.safetensors").stat().st_mtime_ns == stamp  # not redone
    assert load_tokenizer(str(tiny_gguf)).is_fast


def test_explicit_output_folder_is_never_overwritten(tiny_gguf: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="exists"):
        convert_gguf(tiny_gguf, out)
    assert (out / "notes.txt").read_text() == "keep me"
    fresh = convert_gguf(tiny_gguf, tmp_path / "fresh")
    assert Path(fresh, MARKER).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


@pytest.mark.parametrize("content, match", [
    (b"PK\x03\x04 not a gguf", "not a GGUF file"),
])
def test_bad_files_get_one_line_errors(tmp_path: Path, content: bytes, match: str) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(content)
    with pytest.raises(ConfigError, match=match):
        convert_gguf(bad, tmp_path / "out")
    with pytest.raises(ConfigError, match="does not exist"):
        convert_gguf(tmp_path / "missing.gguf")


def test_unsupported_architecture_names_the_supported_ones(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "odd.gguf", arch="rwkv6")
    with pytest.raises(ConfigError, match=r"cannot convert .*llama") as err:
        convert_gguf(path, tmp_path / "out")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()
