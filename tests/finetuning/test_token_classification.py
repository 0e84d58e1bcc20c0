"""Token classification: label sets, sub-word alignment, truncation, batching, decoding."""

from __future__ import annotations

import logging
import random
import string
from typing import Any

import datasets
import pytest
import torch

from lmforge.errors import DataError
from lmforge.finetuning.token_classification.data import (
    TokenClassificationCollator,
    collect_labels,
    convert_tags,
    decode_word_predictions,
    entities_from_tags,
    prepare_token_classification,
)

SENTENCES = [
    (["Peter", "Blackburnshire", "lives", "in", "Paris", "."],
     ["B-PER", "I-PER", "O", "O", "B-LOC", "O"]),
    (["Anna", "visited", "the", "United", "Nations", "in", "Geneva", "."],
     ["B-PER", "O", "O", "B-ORG", "I-ORG", "O", "B-LOC", "O"]),
    (["Unbelievably", ",", "Peter", "lives", "."], ["O", "O", "B-PER", "O", "O"]),
]  # fmt: skip
LABELS = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
LABEL2ID = {label: i for i, label in enumerate(LABELS)}


@pytest.fixture(scope="module")
def ner_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Tiny WordPiece: frequent words stay whole, rare long words split into ## pieces."""
    from transformers import AutoTokenizer

    from lmforge.tokenizer import train_tokenizer

    common = "peter lives in paris . anna visited the united nations in geneva ."
    # Random filler words use up the 300-token budget, so rare words stay split.
    rng = random.Random(0)
    filler = [
        " ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(6)) for _ in range(8))
        for _ in range(60)
    ]
    texts = [common] * 30 + filler + [" ".join(s[0]) for s in SENTENCES]
    out = tmp_path_factory.mktemp("ner_tok")
    train_tokenizer(texts, out, kind="wordpiece", vocab_size=300, min_frequency=1)
    return AutoTokenizer.from_pretrained(out)


@pytest.fixture()
def ner_ds() -> datasets.Dataset:
    """The three sentences as a CoNLL-shaped dataset."""
    return datasets.Dataset.from_dict(
        {"tokens": [s[0] for s in SENTENCES], "tags": [s[1] for s in SENTENCES]}
    )


def test_collect_labels_orders_o_then_type_then_prefix(ner_ds: datasets.Dataset) -> None:
    assert collect_labels(ner_ds) == ["O", "B-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert collect_labels(ner_ds, complete=True) == LABELS
    assert collect_labels([["S-PER", "O"], ["B-LOC", "E-LOC"]], "BIOES") == [
        "O", "B-LOC", "E-LOC", "S-PER",
    ]  # fmt: skip
    full = collect_labels([["B-LOC"]], "BIOES", complete=True)
    assert full == ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
    # An I-X right after O is conlleval-legal (IOB1 data), not an error.
    assert collect_labels([["O", "I-MISC"]]) == ["O", "I-MISC"]


@pytest.mark.parametrize(("tags", "scheme"), [(["O", "E-PER"], "BIO"), (["X-PER"], "BIOES")])
def test_collect_labels_rejects_tags_outside_the_scheme(tags: list[str], scheme: str) -> None:
    with pytest.raises(DataError, match=f"tag '{tags[-1]}'"):
        collect_labels([tags], scheme)


def test_convert_tags_between_schemes() -> None:
    bio = ["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG", "I-ORG", "I-ORG"]
    bioes = ["B-PER", "E-PER", "O", "S-LOC", "O", "B-ORG", "I-ORG", "E-ORG"]
    assert convert_tags(bio, "BIOES") == bioes
    assert convert_tags(bioes, "BIO") == bio
    # IOB1: I-X opens a chunk after O or after another type.
    iob1 = ["I-LOC", "I-PER", "I-PER", "O"]
    assert convert_tags(iob1, "BIOES") == ["S-LOC", "B-PER", "E-PER", "O"]


def test_entities_from_tags_bio_and_bioes() -> None:
    words = ["Peter", "Smith", "flew", "to", "New", "York", "City", "."]
    expected = [
        {"type": "PER", "start_word": 0, "end_word": 2, "text": "Peter Smith"},
        {"type": "LOC", "start_word": 4, "end_word": 7, "text": "New York City"},
    ]
    bio = ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "I-LOC", "O"]
    assert entities_from_tags(words, bio) == expected
    assert entities_from_tags(words, convert_tags(bio, "BIOES")) == expected
    # Adjacent entities of the same type stay apart (B after I; S after S).
    two = entities_from_tags(["A", "B"], ["B-PER", "B-PER"])
    assert [(e["start_word"], e["end_word"]) for e in two] == [(0, 1), (1, 2)]
    two = entities_from_tags(["A", "B"], ["S-PER", "S-PER"])
    assert [(e["start_word"], e["end_word"]) for e in two] == [(0, 1), (1, 2)]


def _pieces(tokenizer: Any, word: str) -> int:
    return len(tokenizer(word, add_special_tokens=False)["input_ids"])


def test_labels_align_to_first_subword(ner_tokenizer: Any, ner_ds: datasets.Dataset) -> None:
    assert _pieces(ner_tokenizer, "Blackburnshire") > 1  # precondition: the word splits
    out = prepare_token_classification(ner_ds, ner_tokenizer, LABEL2ID)
    assert set(out.column_names) >= {"input_ids", "labels", "word_ids", "num_words"}
    words, tags = SENTENCES[0]
    expected_labels, expected_wids = [-100], [-1]  # [CLS]
    for w, (word, tag) in enumerate(zip(words, tags, strict=True)):
        extra = _pieces(ner_tokenizer, word) - 1
        expected_labels += [LABEL2ID[tag]] + [-100] * extra
        expected_wids += [w] + [-1] * extra
    expected_labels.append(-100)  # [SEP]
    expected_wids.append(-1)
    row = out[0]
    assert row["labels"] == expected_labels
    assert row["word_ids"] == expected_wids
    assert row["num_words"] == len(words)
    assert len(row["input_ids"]) == len(expected_labels)
    # Hand check of the start: [CLS] Peter(B-PER) Blackburnshire(I-PER, first piece only).
    assert row["labels"][:3] == [-100, LABEL2ID["B-PER"], LABEL2ID["I-PER"]]
    assert row["labels"][3] == -100


def test_label_all_subwords_turns_b_into_i(ner_tokenizer: Any) -> None:
    ds = datasets.Dataset.from_dict({"tokens": [["Blackburnshire", "."]], "tags": [["B-PER", "O"]]})
    n = _pieces(ner_tokenizer, "Blackburnshire")
    out = prepare_token_classification(ds, ner_tokenizer, LABEL2ID, label_all_subwords=True)
    b, i = LABEL2ID["B-PER"], LABEL2ID["I-PER"]
    assert out[0]["labels"] == [-100, b] + [i] * (n - 1) + [LABEL2ID["O"], -100]


def test_unknown_label_and_missing_columns_are_data_errors(
    ner_tokenizer: Any, ner_ds: datasets.Dataset
) -> None:
    bad = datasets.Dataset.from_dict({"tokens": [["Peter"]], "tags": [["B-FOO"]]})
    with pytest.raises(DataError, match=r"label 'B-FOO' is not one of the model's labels \["):
        prepare_token_classification(bad, ner_tokenizer, LABEL2ID)
    with pytest.raises(DataError, match="column 'words' not found .*tokens, tags"):
        prepare_token_classification(ner_ds, ner_tokenizer, LABEL2ID, tokens_column="words")
    with pytest.raises(DataError, match="column 'ner_tags' not found"):
        prepare_token_classification(ner_ds, ner_tokenizer, LABEL2ID, tags_column="ner_tags")
    unlabeled = prepare_token_classification(ner_ds, ner_tokenizer, LABEL2ID, tags_column=None)
    assert "labels" not in unlabeled.column_names


def test_truncated_words_are_counted_and_decoded_as_o(
    ner_tokenizer: Any, ner_ds: datasets.Dataset, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="lmforge.finetuning.token_classification"):
        out = prepare_token_classification(ner_ds, ner_tokenizer, LABEL2ID, max_length=6)
    assert all(len(ids) <= 6 for ids in out["input_ids"])
    kept = [sum(1 for w in wids if w >= 0) for wids in out["word_ids"]]
    lost = sum(len(s[0]) for s in SENTENCES) - sum(kept)
    assert lost > 0
    assert f"{lost} of " in caplog.text and "cut by max_length=6" in caplog.text
    decoded = decode_word_predictions(out["labels"], out["word_ids"], LABELS, out["num_words"])
    for tags, (_, gold), k in zip(decoded, SENTENCES, kept, strict=True):
        assert len(tags) == len(gold)
        assert tags[:k] == gold[:k]
        assert tags[k:] == ["O"] * (len(gold) - k)


def test_decode_round_trip_from_padded_batch(ner_tokenizer: Any, ner_ds: datasets.Dataset) -> None:
    out = prepare_token_classification(ner_ds, ner_tokenizer, LABEL2ID)
    batch = TokenClassificationCollator(ner_tokenizer)(list(out))
    # Gold ids as "predictions", padded like model output; -100 positions are never read.
    preds = batch["labels"].clamp(min=0).tolist()
    id2label = {i: label for label, i in LABEL2ID.items()}
    decoded = decode_word_predictions(preds, out["word_ids"], id2label, out["num_words"])
    assert decoded == [s[1] for s in SENTENCES]
    # Configs reloaded from JSON key id2label by strings.
    str_keys = {str(i): label for i, label in id2label.items()}
    assert decode_word_predictions(preds, out["word_ids"], str_keys, out["num_words"]) == decoded


def test_collator_pads_labels_with_ignore_index(
    ner_tokenizer: Any, ner_ds: datasets.Dataset
) -> None:
    out = prepare_token_classification(ner_ds, ner_tokenizer, LABEL2ID)
    rows = list(out)
    batch = TokenClassificationCollator(ner_tokenizer)(rows, torch.Generator())
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    lengths = [len(r["input_ids"]) for r in rows]
    width = batch["input_ids"].shape[1]
    assert width % 8 == 0 and width >= max(lengths)
    for i, n in enumerate(lengths):
        assert batch["attention_mask"][i].sum() == n
        assert (batch["labels"][i, n:] == -100).all()
        assert (batch["input_ids"][i, n:] == ner_tokenizer.pad_token_id).all()
        assert batch["labels"][i, :n].tolist() == rows[i]["labels"]


def test_tiny_bert_forward_gives_finite_loss(ner_tokenizer: Any, ner_ds: datasets.Dataset) -> None:
    from transformers import BertConfig, BertForTokenClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(ner_tokenizer), hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
        num_labels=len(LABELS),
    )  # fmt: skip
    model = BertForTokenClassification(config).eval()
    out = prepare_token_classification(ner_ds, ner_tokenizer, LABEL2ID)
    batch = TokenClassificationCollator(ner_tokenizer)(list(out))
    with torch.no_grad():
        result = model(**batch)
    assert torch.isfinite(result.loss)
    assert result.logits.shape == (*batch["input_ids"].shape, len(LABELS))  # (B, L, C)
    preds = result.logits.argmax(-1).tolist()
    decoded = decode_word_predictions(preds, out["word_ids"], LABELS, out["num_words"])
    assert [len(t) for t in decoded] == [len(s[0]) for s in SENTENCES]
