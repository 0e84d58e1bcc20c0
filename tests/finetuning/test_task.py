"""The request models tasks build: schemas that say exactly what validation accepts."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from lmforge.wire import NON_BLANK, NonBlank, OneOrManyTexts, record_model


def test_non_blank_pattern_is_pythons_whitespace() -> None:
    # The schema's pattern must agree with str.split / str.strip, which the tasks use.
    spaces = [c for c in map(chr, range(0x3001)) if c.isspace()]
    assert spaces and all(not re.search(NON_BLANK, c) for c in spaces)
    assert all(re.search(NON_BLANK, c) for c in ("a", "\x1b", "\u200b", "\ufeff", "é"))


def test_one_of_and_optional_fields_are_never_null() -> None:
    schema = OneOrManyTexts.model_json_schema()
    assert schema["oneOf"] == [{"required": ["text"]}, {"required": ["texts"]}]
    assert "default" not in schema["properties"]["text"]  # absent, not null
    for body in ({}, {"text": "a", "texts": ["b"]}, {"text": None}, {"texts": []},
                 {"text": 3}, {"text": "a", "other": 1}):
        with pytest.raises(ValidationError):
            OneOrManyTexts.model_validate(body)
    assert OneOrManyTexts.model_validate({"texts": ["a", "b"]}).all_texts() == ["a", "b"]


def test_record_model_uses_the_run_columns_and_ignores_other_fields() -> None:
    from pydantic import Field

    model = record_model("Words", {
        "schema": (list[NonBlank], Field(None, min_length=1)),
        "model_config": (NonBlank, Field(None))}, "doc", any_of=("schema", "model_config"))
    schema = model.model_json_schema()
    assert set(schema["properties"]) == {"schema", "model_config"}
    assert schema["anyOf"] == [{"required": ["schema"]}, {"required": ["model_config"]}]
    got = model.model_validate({"schema": ["a"], "label": 1})
    assert got.model_dump(by_alias=True, exclude_none=True) == {"schema": ["a"]}
    for bad in ({}, {"schema": [" "]}, {"model_config": "\t"}, {"schema": []}):
        with pytest.raises(ValidationError):
            model.model_validate(bad)
