"""The configs of ``lmforge pipeline`` and ``lmforge runs`` (no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.config import check, check_choice, opt


@dataclass
class PipelineJob:
    """``lmforge pipeline``: run stages in dependency order, skipping unchanged ones.

    Each stage is a command with its config; ``${stages.NAME.model}`` (or ``.run_dir``,
    ``.tokenizer``) in a value refers to an earlier stage's output. A stage whose command,
    resolved config, data fingerprints, parent runs and lmforge code are unchanged since its
    last successful run is skipped (see docs/pipelines.md).
    """

    name: str = opt("pipeline", "Pipeline name; the default folder is runs/NAME.")
    stages: dict = opt({}, "Stages by name: {command: finetune, config: FILE_OR_MAPPING, "
                           "overrides: [key=value], needs: [STAGE], ...config sections}.")
    force: list[str] = opt([], "Stages to rerun even when their cache is valid (their children "
                               "rerun too, since they depend on the new run).")
    dry_run: bool = opt(False, "Print the plan (order, cached or to run) without running.")
    output_dir: str | None = opt(None, "Pipeline folder (default: runs/NAME); stage S runs in "
                                       "OUTPUT/S.")

    def __post_init__(self) -> None:
        check(bool(self.name) and "/" not in self.name, "name must be a plain folder name")
        check(bool(self.stages), "the pipeline has no stages; list them under stages:")


@dataclass
class RunsJob:
    """``lmforge runs``: list runs with their lineage, or compare two runs.

    ``lmforge runs [ROOT]`` lists every run directory under ROOT (default runs/);
    ``lmforge runs compare A B`` shows the config keys and metrics that differ.
    """

    action: str = opt("list", "list, compare, or a folder to list (same as root=...).")
    a: str | None = opt(None, "compare: the first run directory.")
    b: str | None = opt(None, "compare: the second run directory.")
    root: str = opt("runs", "Folder searched for run directories.")
    depth: int = opt(3, "How deep under root to look for run directories.")
    output_dir: str | None = opt(None, "Unused (runs writes nothing).")

    def __post_init__(self) -> None:
        if self.action not in ("list", "compare"):
            # `lmforge runs runs/pipeline` lists that folder.
            self.root, self.action = self.action, "list"
            check(self.a is None, f"unexpected argument {self.a!r}: use `lmforge runs ROOT` or "
                                  "`lmforge runs compare A B`")
        check_choice("action", self.action, ("list", "compare"))
        if self.action == "compare":
            check(bool(self.a) and bool(self.b), "compare needs two runs: "
                                                 "lmforge runs compare RUN_A RUN_B")
        check(self.depth >= 1, "depth must be >= 1")
