"""``lmforge continual`` end to end on a tiny encoder and three keyword experiences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

import lmforge
from lmforge.cli import main
from lmforge.continual.metrics import stream_metrics
from tests.continual.conftest import stream_config

Stream = tuple[Path, dict[str, Path]]


def test_naive_stream_fills_the_matrix_and_saves_each_experience(
        tiny_stream: Stream, tmp_path: Path) -> None:
    encoder, data = tiny_stream
    run = lmforge.continual_learning(stream_config(encoder, data, tmp_path / "run"))
    s = run.summary
    assert len(s["accuracy_matrix"]) == 3 and all(len(r) == 3 for r in s["accuracy_matrix"])
    expected = stream_metrics(s["accuracy_matrix"], s["initial_accuracy"])
    assert {k: s[k] for k in expected} == pytest.approx(expected)
    assert run.metrics["average_accuracy"] == pytest.approx(s["average_accuracy"])
    assert s["labels"][:2] == ["mood:neg", "mood:pos"]
    for name in ("accuracy_matrix.png", "accuracy_curves.png", "summary.json", "initial.json"):
        assert (run.run_dir / name).is_file()
    rows = [json.loads(x) for x in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "accuracy/size" in r] == [0, 1, 2, 3]
    for i, name in enumerate(data):
        folder = run.run_dir / "experiences" / f"{i}-{name}"
        assert json.loads((folder / "done.json").read_text())["row"] == s["accuracy_matrix"][i]
        assert not (folder / "checkpoints").exists()  # removed once the experience is done
    # Each experience's model is an lmforge model folder over the stream's label space.
    clf = lmforge.load(run.run_dir / "experiences" / "2-size")
    assert clf.predict(["a huge story"])[0]["label"] in s["labels"]


def test_lora_per_experience_cannot_forget(tiny_stream: Stream, tmp_path: Path) -> None:
    encoder, data = tiny_stream
    cfg = stream_config(encoder, data, tmp_path / "lora", strategy={"name": "lora"},
                        train={"lr": 2e-2})
    s = lmforge.continual_learning(cfg).summary
    r = s["accuracy_matrix"]
    # Experience i's adapter and head are never trained after i: its accuracy is frozen.
    assert [r[-1][i] for i in range(3)] == [r[i][i] for i in range(3)]
    assert s["bwt"] == 0.0 and s["forgetting"] == 0.0
    assert s["trainable_parameters_last"] < s["parameters"] / 5
    folder = tmp_path / "lora" / "experiences" / "1-topic" / "model"
    assert (folder / "adapter_model.safetensors").is_file()
    assert not (folder / "model.safetensors").exists()  # only the adapter is stored


@pytest.mark.parametrize("strategy", ["replay", "ewc", "lwf", "agem", "joint"])
def test_each_strategy_runs_a_stream(strategy: str, tiny_stream: Stream,
                                     tmp_path: Path) -> None:
    encoder, data = tiny_stream
    cfg = stream_config(encoder, data, tmp_path / strategy, names=["mood", "topic"],
                        strategy={"name": strategy, "buffer_size": "25%"},
                        train={"max_steps": 4})
    s = lmforge.continual_learning(cfg).summary
    assert len(s["accuracy_matrix"]) == (1 if strategy == "joint" else 2)
    if strategy in ("replay", "agem"):
        assert s["buffer_examples"] == 32  # 25 % of 2 x 64 rows, shared by both experiences
    if strategy == "agem":
        assert s["agem_steps"] == 4  # a reference gradient at every step of experience 2
    if strategy == "ewc":
        state = load_file(str(tmp_path / "ewc" / "experiences" / "0-mood" / "ewc.safetensors"))
        fisher = [v for k, v in state.items() if k.startswith("fisher.")]
        assert fisher and all(float(v.min()) >= 0 for v in fisher)
        assert sum(float(v.sum()) for v in fisher) > 0
        assert s["stored_parameters"] == 3 * s["parameters"]  # model, Fisher, anchor
    if strategy == "joint":
        assert "bwt" not in s and s["experiences"] == ["mood", "topic"]


def _cli(tmp_path: Path, encoder: Path, data: dict[str, Path], **over: object) -> int:
    import yaml

    path = tmp_path / "stream.yaml"
    path.write_text(yaml.safe_dump(stream_config(encoder, data, tmp_path / "bad", **over)))
    return main(["continual", "-c", str(path)])


@pytest.mark.parametrize(("over", "message"), [
    ({"scenario": "class", "names": ["mood", "mood2"]}, "scenario=class needs disjoint labels"),
    ({"scenario": "domain"}, "scenario=domain needs the same labels"),
    ({"strategy": {"name": "replay", "buffer_size": "100000"}}, "larger than the stream's"),
    ({"empty": True}, "has an empty train split"),
])
def test_bad_streams_exit_2_with_one_line(over: dict, message: str, tiny_stream: Stream,
                                          tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    encoder, data = tiny_stream
    data = {**data, "mood2": data["mood"]}
    if over.pop("empty", False):
        cfg_names = ["mood", "topic"]
        code = _cli(tmp_path, encoder, data, names=cfg_names,
                    experiences=[{"name": "mood", "task_id": "m",
                                  "data": {"path": str(data["mood"])}},
                                 {"name": "topic", "task_id": "t", "labels": ["nothing"],
                                  "data": {"path": str(data["topic"])}}])
    else:
        over.setdefault("names", ["mood", "topic"])
        code = _cli(tmp_path, encoder, data, **over)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and message in err[0], err


def test_intermediate_task_transfer_gets_a_new_head(tiny_stream: Stream, tmp_path: Path) -> None:
    """Fine-tuning from a classifier of another label set keeps its encoder, new head."""
    encoder, data = tiny_stream
    three = tmp_path / "three"
    three.mkdir()
    rows = (data["mood"] / "train.tsv").read_text().splitlines()
    extra = [r.replace("\tpos", "\tmixed") for r in rows[1:20]]
    (three / "train.tsv").write_text("\n".join(rows + extra) + "\n")
    common = {"train": {"max_steps": 2, "batch_size": 16, "num_threads": 1},
              "track": {"backends": ["jsonl"], "progress": False}}
    first = lmforge.finetune(data={"path": str(three)}, model={"pretrained": str(encoder)},
                             output_dir=str(tmp_path / "a"), **common)
    second = lmforge.finetune(data={"path": str(data["topic"])},
                              model={"pretrained": str(first.run_dir)},
                              output_dir=str(tmp_path / "b"), **common)
    assert len(first.summary["labels"]) == 3 and second.summary["labels"] == ["sport", "tech"]
    assert second.summary["new_head"] is True


def test_a_second_run_into_a_finished_stream_needs_resume(
        tiny_stream: Stream, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rerunning into the same folder must not silently reuse the earlier stream's results."""
    import yaml

    encoder, data = tiny_stream
    out = tmp_path / "run"
    config = tmp_path / "stream.yaml"
    config.write_text(yaml.safe_dump(stream_config(encoder, data, out, names=["mood", "topic"],
                                                   train={"max_steps": 2})))
    assert main(["continual", "-c", str(config)]) == 0
    first = json.loads((out / "summary.json").read_text())["accuracy_matrix"]
    capsys.readouterr()
    assert main(["continual", "-c", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a continual run" in err[0] and "--resume" in err[0]
    assert main(["continual", "-c", str(config), "--resume"]) == 0  # done: nothing to train
    assert json.loads((out / "summary.json").read_text())["accuracy_matrix"] == first
