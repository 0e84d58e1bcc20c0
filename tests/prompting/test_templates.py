"""Templates and verbalizers from YAML: shipped files load, bad files give one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.errors import ConfigError
from lmforge.prompting.templates import load_prompts, parse_prompts

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "configs" / "prompts").glob("*.yaml"))
LABELS = {"sst2": ["0", "1"], "trec": [str(i) for i in range(6)]}


def test_there_are_shipped_prompt_files() -> None:
    assert {p.stem for p in SHIPPED} >= {"sst2", "trec"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_prompt_file_loads(path: Path) -> None:
    prompts = load_prompts(path)
    assert len(prompts.templates) >= 2
    prompts.check_masked()
    if prompts.task in LABELS:
        prompts.check_labels(LABELS[prompts.task])
    for t in prompts.templates:  # every template fills into a cloze input and a demonstration
        before, _ = t.split("a question")
        assert "a question" in before
        assert t.word(prompts.labels[0]) in t.fill("x", t.word(prompts.labels[0]))


def test_per_template_verbalizer_override_and_fill() -> None:
    prompts = parse_prompts({"labels": {0: ["bad"], 1: "good"},
                             "templates": ["{text} It was {mask}.",
                                           {"name": "r", "text": "Review: {text}\nSentiment: "
                                                                 "{mask}",
                                            "labels": {0: "negative", 1: "positive"}}]})
    assert prompts.labels == ["0", "1"]
    t0, t1 = prompts.templates
    assert t0.verbalizer == {"0": ["bad"], "1": ["good"]} and t0.name == "t0"
    assert t1.verbalizer == {"0": ["negative"], "1": ["positive"]}
    assert t0.fill("Fine {braces}", "good") == "Fine {braces} It was good."
    assert t1.split("x") == ("Review: x\nSentiment: ", "")
    assert [t.name for t in prompts.select(["r"]).templates] == ["r"]
    assert [t.name for t in prompts.select(["0"]).templates] == ["t0"]


@pytest.mark.parametrize(("raw", "message"), [
    ({"labels": {0: ["a"]}, "templates": ["no text here {mask}"]}, "containing {text}"),
    ({"labels": {0: ["a"]}, "templates": ["{text} {answer}"]}, "unknown placeholder {answer}"),
    ({"labels": {0: []}, "templates": ["{text} {mask}"]}, "label words"),
    ({"labels": {0: ["a"]}, "templates": []}, "non-empty list"),
    ({"labels": {0: ["a"]}, "templates": ["{text} {mask}"], "verbaliser": {}}, "unknown key"),
    ({"templates": ["{text} {mask}"]}, "no verbalizer"),
])
def test_bad_prompt_files_raise_one_line_errors(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")) \
            as err:
        parse_prompts(raw, "p.yaml")
    assert "\n" not in str(err.value)


def test_label_checks() -> None:
    prompts = parse_prompts({"labels": {0: ["bad"], 1: ["good"], 7: ["odd"]},
                             "templates": ["{text} It was {mask}.", "{text} {text}"]})
    with pytest.raises(ConfigError, match=r"label\(s\) \['7'\] that are not in the data"):
        prompts.check_labels(["0", "1"])
    with pytest.raises(ConfigError, match=r"no words for data label\(s\) \['2'\]"):
        prompts.check_labels(["0", "1", "2", "7"])
    with pytest.raises(ConfigError, match="has no {mask} slot"):
        prompts.check_masked()
    with pytest.raises(ConfigError, match="does not exist"):
        load_prompts("no/such/file.yaml")
