"""``lmforge pipeline``: order, references, content caching, --force, bad input; lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lmforge
from lmforge.cli import main
from lmforge.commands.pipeline import plan
from lmforge.pipelines.settings import PipelineJob
from tests.tuning.conftest import finetune_config, write_yaml


def _pipeline(encoder: Path, data: Path, tmp_path: Path) -> dict:
    ft = write_yaml(tmp_path / "ft.yaml", finetune_config(encoder, data, max_steps=6))
    return {
        "name": "tiny",
        "output_dir": str(tmp_path / "pipe"),
        "stages": {
            # listed before its parent on purpose: order comes from the references
            "evaluate": {"run": "${stages.finetune.model}", "split": "test"},
            "finetune": {"config": str(ft)},
            "sibling": {"command": "finetune", "config": str(ft), "train": {"max_steps": 4}},
        },
    }


def test_cache_rerun_force_and_lineage(tiny_task: tuple[Path, Path], tmp_path: Path) -> None:
    encoder, data = tiny_task
    spec = _pipeline(encoder, data, tmp_path)
    first = lmforge.pipeline(spec).summary
    assert first["ran"] == ["finetune", "evaluate", "sibling"] and first["cached"] == []
    pipe = tmp_path / "pipe"
    lineage = json.loads((pipe / "evaluate" / "lineage.json").read_text())
    parent = json.loads((pipe / "finetune" / "lineage.json").read_text())
    assert lineage["parents"][0]["run_id"] == parent["run_id"]
    assert lineage["parents"][0]["config_hash"] == parent["config_hash"]
    assert parent["data"]["data.path"] and parent["packages"]["torch"]
    assert parent["code"]["source_hash"]
    # Nothing changed: every stage is reused.
    again = lmforge.pipeline(spec).summary
    assert again["ran"] == [] and again["cached"] == ["finetune", "evaluate", "sibling"]
    # One fine-tuning key changed: that stage and its child rerun, the sibling does not.
    changed = lmforge.pipeline(spec, "stages.finetune.train.lr=0.004").summary
    assert changed["ran"] == ["finetune", "evaluate"] and changed["cached"] == ["sibling"]
    # --force reruns one stage (and what depends on it).
    forced = lmforge.pipeline(spec, "stages.finetune.train.lr=0.004", force=["sibling"]).summary
    assert forced["ran"] == ["sibling"]
    # A data file that changes invalidates the stages that read it.
    (data / "extra").mkdir(exist_ok=True)
    try:
        (data / "extra" / "note.txt").write_text("changed")
        moved = lmforge.pipeline(spec, "stages.finetune.train.lr=0.004").summary
        assert moved["ran"] == ["finetune", "evaluate", "sibling"]
    finally:
        (data / "extra" / "note.txt").unlink()
        (data / "extra").rmdir()

    # lmforge runs: a table with parents; compare shows the changed key.
    code = main(["runs", str(pipe)])
    assert code == 0
    a = tmp_path / "a"
    lmforge.finetune(finetune_config(encoder, data, max_steps=2), output_dir=str(a))
    b = tmp_path / "b"
    lmforge.finetune(finetune_config(encoder, data, max_steps=2, lr=0.004), output_dir=str(b))
    result = lmforge.api.run_command("runs", lmforge.api.resolve_job(
        "runs", None, ("action=compare", f"a={a}", f"b={b}")))
    assert result["config_differences"] == 1 and "train.lr" in result["table"]
    listing = lmforge.api.run_command("runs", lmforge.api.resolve_job("runs", None,
                                                                      (f"root={pipe}",)))
    assert listing["count"] == 4  # the pipeline folder and its three stages
    assert "finetune" in listing["table"].splitlines()[2]


def test_plan_resolves_references_without_running(tiny_task: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    encoder, data = tiny_task
    folder, stages, order = plan(PipelineJob(**_pipeline(encoder, data, tmp_path)))
    assert order == ["finetune", "evaluate", "sibling"]
    assert stages["evaluate"].job.run == str(folder / "finetune")
    assert stages["evaluate"].job.output_dir == str(folder / "evaluate")


@pytest.mark.parametrize(("stages", "message"), [
    ({"a": {"command": "finetune", "model": {"pretrained": "${stages.b.model}"}},
      "b": {"command": "finetune", "model": {"pretrained": "${stages.a.model}"}}},
     "cycle: a -> b -> a"),
    ({"finetune": {"train": {"epochs": 1}},
      "evaluate": {"run": "${stages.finetuen.model}"}}, "did you mean 'finetune'"),
    ({"finetune": {"command": "fintune"}}, "did you mean 'finetune'"),
    ({"finetune": {"train": {"lrr": 1}}}, "stage 'finetune' (finetune): unknown config key"),
    ({"finetune": {"train": {"epochs": 1}}, "evaluate": {"run": "${stages.finetune.modle}"}},
     "did you mean 'model'"),
])
def test_bad_pipelines_fail_before_any_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             stages: dict, message: str) -> None:
    config = write_yaml(tmp_path / "p.yaml", {"name": "bad", "stages": stages})
    code = main(["pipeline", "-c", str(config), "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["main.yaml", "zh-bert-mini.yaml"])
def test_shipped_pipelines_resolve(name: str) -> None:
    from lmforge.config import build_config

    root = Path(__file__).resolve().parents[2]
    job = build_config(PipelineJob, root / "configs" / "pipelines" / name)
    import os

    cwd = os.getcwd()
    os.chdir(root)  # stage configs are relative to the repository root
    try:
        folder, stages, order = plan(job)
    finally:
        os.chdir(cwd)
    assert order[0] in ("finetune", "tokenizer") and len(order) >= 3
