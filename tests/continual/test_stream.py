"""Loading a stream: the global label space and the class masks of each scenario."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.config import from_dict
from lmforge.continual.settings import ContinualJob
from lmforge.continual.stream import load_stream
from lmforge.finetuning.task import get_task
from lmforge.models.build import load_tokenizer
from tests.continual.conftest import stream_config

Stream = tuple[Path, dict[str, Path]]


def _load(encoder: Path, cfg: dict):  # noqa: ANN202
    job = from_dict(ContinualJob, cfg)
    return load_stream(job, get_task("classification"), load_tokenizer(str(encoder)))


def test_task_scenario_gives_each_experience_its_own_slice(tiny_stream: Stream,
                                                           tmp_path: Path) -> None:
    encoder, data = tiny_stream
    stream = _load(encoder, stream_config(encoder, data, tmp_path))
    assert stream.labels == ["mood:neg", "mood:pos", "topic:sport", "topic:tech",
                             "size:big", "size:small"]
    assert [e.classes for e in stream.experiences] == [[0, 1], [2, 3], [4, 5]]
    masks = stream.class_masks(0)
    assert masks.tolist()[1] == [False, False, True, True, False, False]
    topic = stream.experiences[1]
    assert set(topic.train["labels"]) == {2, 3} and set(topic.train["task_ids"]) == {1}
    assert stream.distill_groups(2) == [[0, 1], [2, 3]]


def test_class_scenario_opens_classes_as_experiences_arrive(tiny_stream: Stream,
                                                            tmp_path: Path) -> None:
    encoder, data = tiny_stream
    both = tmp_path / "both"
    both.mkdir()
    lines = (data["mood"] / "train.tsv").read_text().splitlines() + \
        (data["topic"] / "train.tsv").read_text().splitlines()[1:]
    (both / "train.tsv").write_text("\n".join(lines) + "\n")
    cfg = stream_config(encoder, data, tmp_path, scenario="class")
    cfg["experiences"] = [
        {"name": "moods", "labels": ["neg", "pos"], "data": {"path": str(both)}},
        {"name": "topics", "labels": ["sport", "tech"], "data": {"path": str(both)}}]
    stream = _load(encoder, cfg)
    assert stream.labels == ["neg", "pos", "sport", "tech"]
    # Every row lands in exactly one experience (train or its carved validation rows).
    assert sum(len(e.train) + len(e.eval) for e in stream.experiences) == 128
    assert set(stream.experiences[1].train["labels"]) == {2, 3}
    assert stream.class_masks(0)[1].tolist() == [True, True, False, False]
    assert stream.class_masks(1)[0].tolist() == [True, True, True, True]
    assert stream.distill_groups(1) == [[0, 1]]


def test_domain_scenario_shares_one_head(tiny_stream: Stream, tmp_path: Path) -> None:
    encoder, data = tiny_stream
    cfg = stream_config(encoder, data, tmp_path, scenario="domain")
    cfg["experiences"] = [{"name": "a", "data": {"path": str(data["mood"])}},
                          {"name": "b", "data": {"path": str(data["mood"])},
                           "task": {"label_column": "label"}}]
    stream = _load(encoder, cfg)
    assert stream.labels == ["neg", "pos"]
    assert stream.class_masks(0).all()
    with pytest.raises(Exception, match="needs the same labels"):
        cfg["experiences"][1]["data"]["path"] = str(data["topic"])
        _load(encoder, cfg)
