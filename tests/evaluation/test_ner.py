"""NER metrics (seqeval, strict) and tag-scheme conversion."""

from __future__ import annotations

import pytest

from lmforge.errors import ConfigError, DataError
from lmforge.evaluation import bio_to_bioes, bioes_to_bio, convert_scheme, ner_metrics

GOLD = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "B-ORG"]]
# PER exact; LOC boundary error (I-LOC dropped); ORG predicted as PER (type error).
PRED = [["B-PER", "I-PER", "O", "B-LOC", "O", "O", "B-PER"]]


def test_strict_metrics_by_hand():
    m = ner_metrics(GOLD, PRED)
    # gold entities: PER[0:2], LOC[3:5], ORG[6]; predicted: PER[0:2], LOC[3], PER[6]
    # only PER[0:2] matches -> P = 1/3, R = 1/3, F1 = 1/3
    assert m["precision"] == pytest.approx(1 / 3)
    assert m["recall"] == pytest.approx(1 / 3)
    assert m["f1"] == pytest.approx(1 / 3)
    # tokens: 5 of 7 tags equal (positions 4 and 6 differ)
    assert m["accuracy"] == pytest.approx(5 / 7)
    # PER: 2 predicted, 1 correct, 1 gold -> P 1/2, R 1, F1 2/3
    assert m["per_type"]["PER"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1}
    )
    assert m["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["per_type"]["ORG"]["support"] == 1 and m["per_type"]["ORG"]["f1"] == 0.0
    assert m["num_sequences"] == 1 and m["num_tokens"] == 7


def test_strict_rejects_chunk_starting_with_inside_tag():
    pred = [["I-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "B-ORG"]]
    m = ner_metrics(GOLD, pred)
    # strict: "I-PER I-PER" is not an entity -> 2 of 2 predicted right, 2 of 3 gold found
    assert m["precision"] == pytest.approx(1.0)
    assert m["recall"] == pytest.approx(2 / 3)
    # conlleval repairs it into PER[0:2], a full match
    assert m["f1_lenient"] == pytest.approx(1.0)


def test_bioes_scheme_matches_bio():
    gold = [bio_to_bioes(s) for s in GOLD]
    pred = [bio_to_bioes(s) for s in PRED]
    assert ner_metrics(gold, pred, scheme="BIOES")["f1"] == pytest.approx(1 / 3)


def test_bio_bioes_round_trip():
    seqs = [
        ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O"],
        ["B-ORG", "B-PER", "O", "O", "B-MISC"],
        ["O", "O"],
        [],
    ]
    assert bio_to_bioes(seqs[0]) == ["B-PER", "I-PER", "E-PER", "O", "S-LOC", "B-LOC", "E-LOC", "O"]
    assert bio_to_bioes(seqs[1]) == ["S-ORG", "S-PER", "O", "O", "S-MISC"]
    for seq in seqs:
        assert bioes_to_bio(bio_to_bioes(seq)) == seq
        assert convert_scheme(convert_scheme(seq, to="BIOES"), to="BIO") == seq
    # An I- tag that starts a chunk is treated as its beginning, as conlleval does.
    assert bio_to_bioes(["O", "I-PER", "I-PER", "I-LOC"]) == ["O", "B-PER", "E-PER", "S-LOC"]


def test_errors():
    with pytest.raises(DataError, match="sequence 0 has 7 gold tags but 6 predicted"):
        ner_metrics(GOLD, [PRED[0][:-1]])
    with pytest.raises(DataError, match="1 gold sequences but 2 predicted"):
        ner_metrics(GOLD, PRED * 2)
    with pytest.raises(ConfigError, match="use 'BIO' or 'BIOES'"):
        ner_metrics(GOLD, PRED, scheme="IOB1-ish")
    with pytest.raises(DataError, match="not in the BIO scheme"):
        ner_metrics(GOLD, [bio_to_bioes(PRED[0])])
    with pytest.raises(DataError, match="no sequences"):
        ner_metrics([], [])
    with pytest.raises(DataError, match="not a BIO/BIOES tag"):
        ner_metrics([["PER"]], [["O"]])
