"""The playground's API on NER and QA runs: the task's input fields, the spans it draws."""

from __future__ import annotations

import shutil
from pathlib import Path

from lmforge.predictor import load_predictor
from tests.serving.conftest import ner_run, qa_run  # noqa: F401 - fixtures
from tests.ui.conftest import POST, ui_client


def test_ner_and_qa_get_their_fields_and_the_rows_lmforge_predict_writes(
        tmp_path: Path, ner_run: Path, qa_run: Path) -> None:  # noqa: F811
    root = tmp_path / "runs"
    shutil.copytree(ner_run, root / "ner")
    shutil.copytree(qa_run, root / "qa")
    client = ui_client(root)
    assert {m["run"]: m["task"] for m in client.get("/api/models").json()} == \
        {"ner": "token_classification", "qa": "qa"}
    ner = client.get("/api/model", params={"run": "ner"}).json()
    assert ner["fields"] == ["text"] and not ner["generative"]
    qa = client.get("/api/model", params={"run": "qa"}).json()
    assert set(qa["fields"]) == {"question", "context"}
    record = {"text": "mr smith met jones in paris"}
    row = client.post("/api/predict", json={"run": "ner", "record": record},
                      headers=POST).json()
    assert row == load_predictor(root / "ner", precision="fp32").predict([record])[0]
    assert all(record["text"][e["start"]:e["end"]] == e["text"] for e in row["entities"])
    record = {"question": "where does smith live ?", "context": "smith in paris"}
    row = client.post("/api/predict", json={"run": "qa", "record": record},
                      headers=POST).json()
    start = row["start"]  # the page highlights context[start:start + len(answer)]
    assert row["answer"] and record["context"][start:start + len(row["answer"])] == \
        row["answer"]
    assert client.post("/api/chat", json={"run": "qa", "prompt": "hi"},
                       headers=POST).status_code == 400  # not a generative run
