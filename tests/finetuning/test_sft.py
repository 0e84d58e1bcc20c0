"""SFT: chat rendering, reply-only labels, truncation, collation and a tiny GPT-2 step."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import copy  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
from pathlib import Path  # noqa: E402

import datasets  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lmforge.errors import ConfigError, DataError  # noqa: E402
from lmforge.finetuning.sft.data import (  # noqa: E402
    DEFAULT_CHAT_TEMPLATE,
    END_OF_TURN,
    SftCollator,
    chat_prompt,
    ensure_chat_template,
    prepare_sft,
)

TEXTS = [
    "What is two plus two? Four.",
    "The cat sees the river. A dog likes a letter!",
    "Be brief. Answer in French: bonjour le monde.",
    "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\nhi<|im_end|>\n",
]

MULTI_TURN = [
    {"role": "system", "content": "Be brief always."},
    {"role": "user", "content": "What is two plus two?"},
    {"role": "assistant", "content": "Four."},
    {"role": "user", "content": "And the cat?"},
    {"role": "assistant", "content": "The cat sees the river."},
]


@pytest.fixture(scope="module")
def bpe_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lmforge.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("sft") / "bpe"
    train_tokenizer(TEXTS * 3, out, kind="bpe", vocab_size=400, min_frequency=1)
    return out


@pytest.fixture()
def tok(bpe_path: Path):
    """A fresh tokenizer per test (ensure_chat_template mutates it); it has no chat template."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(bpe_path))


def _trained_segments(tok, row: dict) -> list[str]:
    """Decoded runs of consecutive tokens whose label is not -100."""
    segments: list[str] = []
    current: list[int] = []
    for token, label in zip(row["input_ids"], row["labels"], strict=True):
        if label != -100:
            assert label == token  # labels are not shifted; the model shifts them
            current.append(token)
        elif current:
            segments.append(tok.decode(current))
            current = []
    if current:
        segments.append(tok.decode(current))
    return segments


def test_single_turn_labels_are_response_and_end_marker(tok) -> None:
    ds = datasets.Dataset.from_dict(
        {"prompt": ["What is two plus two?"], "response": ["Four."], "id": [7]}
    )
    out = prepare_sft(ds, tok)
    assert out.column_names == ["input_ids", "attention_mask", "labels"]
    row = out[0]
    assert _trained_segments(tok, row) == ["Four." + END_OF_TURN]
    assert tok.decode(row["input_ids"]) == (
        "<|im_start|>user\nWhat is two plus two?<|im_end|>\n"
        "<|im_start|>assistant\nFour.<|im_end|>\n"
    )


def test_multi_turn_trains_every_assistant_turn(tok) -> None:
    ds = datasets.Dataset.from_dict({"messages": [MULTI_TURN]})
    row = prepare_sft(ds, tok)[0]
    assert _trained_segments(tok, row) == [
        "Four." + END_OF_TURN,
        "The cat sees the river." + END_OF_TURN,
    ]
    trained = tok.decode([t for t in row["labels"] if t != -100])
    for text in ("Be brief", "two plus", "And the cat", "user", "system", "assistant"):
        assert text not in trained


def test_custom_template_with_eos_is_respected(tok) -> None:
    # A template whose replies end with the EOS token, with a space-terminated header.
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'assistant' %}"
        "{{ 'Assistant: ' + m['content'] + eos_token + '\n' }}"
        "{% else %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}"
    )
    row = prepare_sft(datasets.Dataset.from_dict({"messages": [MULTI_TURN]}), tok)[0]
    segments = _trained_segments(tok, row)
    # Byte-level BPE may glue the header's trailing space to the reply (" Four"); such a token
    # straddles the boundary and is trained, so the reply's first word is never unlabeled.
    assert segments[0] == " Four." + tok.eos_token
    assert [s.lstrip() for s in segments] == [
        "Four." + tok.eos_token,
        "The cat sees the river." + tok.eos_token,
    ]


def test_train_on_prompt_labels_everything(tok) -> None:
    ds = datasets.Dataset.from_dict({"messages": [MULTI_TURN]})
    row = prepare_sft(ds, tok, train_on_prompt=True)[0]
    assert row["labels"] == row["input_ids"]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"text": ["hi"]}, "'messages' column or 'prompt' and 'response'.*columns: text"),
        ({"prompt": ["hi"], "answer": ["yo"]}, "columns: prompt, answer"),
        ({"messages": [MULTI_TURN, MULTI_TURN[:2]]}, "row 1 of train has no assistant"),
        ({"messages": [[{"role": "bot", "content": "x"}]]}, "row 0.*role 'bot'"),
        ({"prompt": ["a", "b"], "response": ["ok", " "]}, "row 1.*empty assistant reply"),
        ({"messages": [MULTI_TURN[2:]]}, "row 0 of train starts with an assistant"),
    ],
)
def test_invalid_data_errors(tok, data, match) -> None:
    with pytest.raises(DataError, match=match):
        prepare_sft(datasets.Dataset.from_dict(data), tok)


@pytest.mark.parametrize(("template", "match"), [
    ("{% for m in messages %}{{ m.content }", "does not render.*roles"),
    ("{{ raise_exception('user and assistant roles must alternate') }}", "must alternate"),
])
def test_a_template_that_does_not_render_is_one_config_error(tok, template, match) -> None:
    tok = copy.deepcopy(tok)
    tok.chat_template = template
    ds = datasets.Dataset.from_dict({"messages": [MULTI_TURN]})
    with pytest.raises(ConfigError, match=match) as err:
        prepare_sft(ds, tok)
    assert "\n" not in str(err.value)



def test_default_template_when_missing(tok, bpe_path: Path) -> None:
    from transformers import AutoTokenizer

    assert tok.chat_template is None
    ds = datasets.Dataset.from_dict({"messages": [MULTI_TURN]})
    before = prepare_sft(ds, tok)[0]  # uses the default without changing the tokenizer
    assert tok.chat_template is None
    assert ensure_chat_template(tok) is True
    assert tok.chat_template == DEFAULT_CHAT_TEMPLATE
    assert ensure_chat_template(tok) is False
    assert prepare_sft(ds, tok)[0] == before
    prompt = chat_prompt(tok, MULTI_TURN[:2])
    assert prompt.endswith("What is two plus two?<|im_end|>\n<|im_start|>assistant\n")
    # The caller saves the template with the tokenizer; it must come back on load.
    tok.save_pretrained(str(bpe_path.parent / "saved"))
    reloaded = AutoTokenizer.from_pretrained(str(bpe_path.parent / "saved"))
    assert reloaded.chat_template == DEFAULT_CHAT_TEMPLATE


def test_truncation_keeps_start_and_drops_cut_replies(tok, caplog) -> None:
    short_prompt = "What is two plus two?"
    long_prompt = " ".join(["The cat sees the river."] * 20)
    ds = datasets.Dataset.from_dict(
        {"prompt": [short_prompt, long_prompt], "response": ["Four.", "Four."]}
    )
    full = prepare_sft(ds, tok)
    limit = len(full[0]["input_ids"]) - 3  # cuts the first reply's end, not its start
    with caplog.at_level(logging.WARNING, logger="lmforge.finetuning.sft"):
        out = prepare_sft(ds, tok, max_length=limit)
    assert "dropped 1 of 2 train examples" in caplog.text
    assert len(out) == 1
    row = out[0]
    assert len(row["input_ids"]) == limit
    assert row["input_ids"] == full[0]["input_ids"][:limit]
    assert row["labels"] == full[0]["labels"][:limit]
    with pytest.raises(DataError, match="raise max_length"):
        prepare_sft(ds, tok, max_length=5)


def test_inconsistent_template_is_rejected(tok) -> None:
    tok.chat_template = "{{ messages[-1]['content'] }}"
    with pytest.raises(ConfigError, match="prefix"):
        prepare_sft(datasets.Dataset.from_dict({"messages": [MULTI_TURN]}), tok)


def test_collator_and_tiny_gpt2_forward(tok) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    ds = datasets.Dataset.from_dict(
        {"prompt": ["What is two plus two?", "Hi"], "response": ["Four.", "The cat sees."]}
    )
    rows = list(prepare_sft(ds, tok))
    batch = SftCollator(tok)(rows, generator=torch.Generator())
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    width = batch["input_ids"].shape[1]
    assert width % 8 == 0
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        assert batch["labels"][i, :n].tolist() == row["labels"]
        assert (batch["labels"][i, n:] == -100).all()
        assert (batch["input_ids"][i, n:] == tok.pad_token_id).all()
        assert batch["attention_mask"][i].sum() == n
    torch.manual_seed(0)
    config = GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=len(tok),
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    loss = GPT2LMHeadModel(config)(**batch).loss
    assert math.isfinite(loss.item())
