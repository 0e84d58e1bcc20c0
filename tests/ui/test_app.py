"""The UI's API without a browser: runs, comparison, report, the form, and its safety checks."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from time import sleep

import pytest
import yaml

from lmforge.commands.ui import ui_hooks
from lmforge.errors import ConfigError
from lmforge.ui import UiJob, build_app, jobs
from lmforge.ui.paths import OutsideRoot, resolve_under
from tests.ui.conftest import POST, ui_client


def test_runs_are_listed_with_metrics_status_and_lineage_links(root: Path) -> None:
    rows = {r["run"]: r for r in ui_client(root).get("/api/runs").json()}
    assert set(rows) == {"alpha", "beta"}
    beta = rows["beta"]
    assert beta["command"] == "finetune" and beta["task"] == "classification"
    assert beta["status"] == "finished" and beta["metrics"]["accuracy"] == pytest.approx(0.76)
    assert beta["parents"][0]["run"] == "alpha"  # a link to a run under the root
    assert rows["alpha"]["parents"][0]["run"] is None  # runs/pretrain-1 is not there


def test_compare_draws_one_curve_per_run_and_the_report_is_lmforge_report(root: Path) -> None:
    client = ui_client(root)
    charts = client.get("/api/compare", params={"run": ["alpha", "beta"]}).json()["charts"]
    loss = next(c for c in charts if ">train_loss<" in c)
    assert loss.count("<polyline") == 2 and "alpha" in loss and "beta" in loss
    page = client.get("/api/report", params={"run": "alpha"})
    assert page.status_code == 200 and "lmforge report: alpha" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")


@pytest.mark.parametrize("bad", ["../x", "/etc", "alpha/../../x", "..", "a\\..\\..\\x"])
def test_paths_outside_the_root_are_refused(root: Path, bad: str) -> None:
    client = ui_client(root)
    assert client.get("/api/report", params={"run": bad}).status_code == 403
    assert client.get("/api/run", params={"run": bad}).status_code == 403


def test_a_symlink_out_of_the_root_is_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(OutsideRoot):
        resolve_under(root.resolve(), "link")
    assert ui_client(root).get("/api/run", params={"run": "link"}).status_code == 403
    assert resolve_under(root.resolve(), "alpha/eval-validation").is_dir()


def test_off_loopback_needs_a_token_and_requests_must_carry_it(root: Path) -> None:
    with pytest.raises(ConfigError, match="token"):
        build_app(UiJob(root=str(root), host="0.0.0.0"), ui_hooks(), None)
    client = ui_client(root, token="s3cret", host="0.0.0.0")
    assert client.get("/api/runs").status_code == 401
    assert client.get("/api/runs", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    # ?token= once in the browser, then the cookie.
    assert client.get("/", params={"token": "s3cret"}).status_code == 200
    assert client.get("/api/runs").status_code == 200


def test_no_token_answers_loopback_hosts_only_and_posts_need_the_header(root: Path) -> None:
    client = ui_client(root)
    assert client.get("/api/info", headers={"host": "evil.example:7860"}).status_code == 401
    assert client.get("/api/info", headers={"host": "localhost:7860"}).status_code == 200
    body = {"command": "finetune", "name": "x", "values": {}}
    assert client.post("/api/preview", json=body).status_code == 403
    assert client.post("/api/preview", json=body, headers=POST).status_code == 200


def test_the_form_is_the_cli_config_and_validates_like_it(root: Path) -> None:
    client = ui_client(root)
    sections = client.get("/api/form/finetune").json()["sections"]
    options = {o["key"]: o for s in sections for o in s["options"]}
    assert options["train.lr"]["default"] == "5e-05" and options["train.lr"]["help"]
    assert "output_dir" not in options and {"data", "train", "task"} <= \
        {s["section"] for s in sections}
    body = {"command": "finetune", "name": "run-1",
            "values": {"train.max_steps": "3", "track.backends": "[jsonl]",
                       "train.lr": "5e-05"}}
    got = client.post("/api/preview", json=body, headers=POST).json()
    assert got["command"] == ("lmforge finetune --output-dir=run-1 train.max_steps=3 "
                              "'track.backends=[jsonl]'")
    config = yaml.safe_load(got["yaml"])
    assert config["train"]["max_steps"] == 3 and config["track"]["backends"] == ["jsonl"]
    bad = [({"train.nope": "1"}, "unknown option"), ({"train.batch_size": "x"}, "batch_size"),
           ({"task.name": "nope"}, "nope")]
    for values, message in bad:
        answer = client.post("/api/preview", json={**body, "values": values}, headers=POST)
        assert answer.status_code == 400 and message in answer.json()["detail"]
    for name in ("../up", "a/b", ".hidden"):
        answer = client.post("/api/start", json={**body, "name": name}, headers=POST)
        assert answer.status_code == 400
    assert client.post("/api/start", json={**body, "name": "alpha"},
                       headers=POST).status_code == 400  # exists


def test_a_started_job_is_detached_recorded_and_stoppable(tmp_path: Path) -> None:
    run = tmp_path / "job"
    state = jobs.start_job(run, ["finetune", f"--output-dir={run}", "data.path=missing.csv"])
    pid = state["pid"]
    assert os.getsid(pid) == pid  # its own session: a reload or a UI restart leaves it alone
    assert jobs.read_state(run)["argv"][:3] == [sys.executable, "-m", "lmforge"]
    assert jobs.job_status(run) == "running"
    # A restarted UI knows the process only from ui-job.json (and /proc): still running.
    cmdline = Path(f"/proc/{pid}/cmdline")
    for _ in range(400):  # until the child has exec'd (before, /proc shows pytest's argv)
        if b"lmforge" in cmdline.read_bytes():
            break
        sleep(0.01)
    child = jobs._children.pop(pid)
    assert jobs.job_status(run) == "running"
    assert jobs.stop_job(run)
    assert child.wait(timeout=30) != 0
    assert jobs.job_status(run) == "stopped"


def test_the_command_line_takes_the_root_as_a_flag_or_a_word(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from lmforge import cli

    ran: list[UiJob] = []
    monkeypatch.setattr(cli, "run_command", lambda name, job, resume=False: ran.append(job)
                        or {"command": name})
    assert cli.main(["ui", "--root", "a"]) == 0 and cli.main(["ui", "b", "port=9000"]) == 0
    assert [job.root for job in ran] == ["a", "b"] and ran[1].port == 9000
    assert ran[0].host == "127.0.0.1"  # loopback unless told otherwise


def test_the_form_refuses_files_outside_the_root_and_its_data_roots(root: Path,
                                                                    tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    (outside / "data").mkdir(parents=True)
    (root / "inputs").mkdir()
    (root / "inputs" / "out").symlink_to(outside / "data")
    client = ui_client(root)
    body = {"command": "finetune", "name": "paths-1", "values": {"train.max_steps": "3"}}
    refused = [("data.path", "/etc"), ("data.path", "~/.ssh"), ("data.path", "../elsewhere"),
               ("data.path", "inputs/out"),  # a symlink out of the root
               ("model.pretrained", str(outside / "data")),
               ("data.path", "http://example.com/x.csv")]
    for key, value in refused:
        values = {**body["values"], key: value}
        for route in ("/api/preview", "/api/start"):
            answer = client.post(route, json={**body, "values": values}, headers=POST)
            assert answer.status_code == 403, (key, value, answer.text)
            assert key in answer.json()["detail"]
    assert not (root / "paths-1").exists()  # nothing was started
    allowed = {"data.path": "inputs", "model.pretrained": "bert-base-uncased",
               "task.text_column": "sentence"}
    answer = client.post("/api/preview", json={**body, "values": {**body["values"], **allowed}},
                         headers=POST)
    assert answer.status_code == 200, answer.text
    # data_roots=[FOLDER] allows one more folder.
    wider = ui_client(root, data_roots=[str(outside)])
    answer = wider.post("/api/preview", json={**body, "values": {"data.path": str(
        outside / "data")}}, headers=POST)
    assert answer.status_code == 200, answer.text
