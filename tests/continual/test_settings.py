"""The stream config: experiences as a list of sections, scenario checks, buffer sizes."""

from __future__ import annotations

import pytest

from lmforge.config import build_config, from_dict
from lmforge.continual.settings import ContinualJob, buffer_spec
from lmforge.errors import ConfigError

TWO = [{"name": "a", "task_id": "a", "data": {"path": "x"}},
       {"name": "b", "task_id": "b", "data": {"path": "y"}}]


def test_experiences_are_typed_sections() -> None:
    job = from_dict(ContinualJob, {"experiences": TWO, "strategy": {"name": "replay",
                                                                   "buffer_size": "10%"}})
    assert job.experiences[1].data.path == "y"
    assert job.experiences[1].data.validation_ratio == 0.1  # the experience's default
    assert job.experiences[0].task.text_column == "text"


def test_a_misspelled_key_inside_an_experience_names_its_index() -> None:
    bad = [TWO[0], {**TWO[1], "data": {"pathh": "y"}}]
    with pytest.raises(ConfigError, match=r"experiences\[1\]\.data\.pathh.*did you mean"):
        from_dict(ContinualJob, {"experiences": bad})


@pytest.mark.parametrize(("data", "message"), [
    ({"experiences": TWO[:1]}, "at least two experiences"),
    ({"experiences": [TWO[0], {**TWO[1], "task_id": None}]}, "scenario=task needs a task_id"),
    ({"experiences": [TWO[0], {**TWO[1], "task_id": "a"}]}, "distinct task_id"),
    ({"experiences": [TWO[0], {**TWO[1], "name": "a"}]}, "names must be unique"),
    ({"experiences": TWO, "scenario": "class", "strategy": {"name": "lora"}},
     "lora .* needs scenario=task"),
    ({"experiences": TWO, "strategy": {"name": "replay"}}, "needs a memory"),
    ({"experiences": TWO, "strategy": {"name": "replay", "buffer_size": "150%"}},
     "not valid"),
])
def test_bad_streams_fail_with_one_line(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(ContinualJob, data)


def test_buffer_spec() -> None:
    assert buffer_spec("10%") == (10.0, True)
    assert buffer_spec("250") == (250.0, False)
    with pytest.raises(ConfigError):
        buffer_spec("lots")


def test_shipped_stream_config_is_valid() -> None:
    job = build_config(ContinualJob, "configs/stream5-continual.yaml")
    assert [e.name for e in job.experiences] == ["sst2", "agnews", "trec", "sst5", "tweets"]
