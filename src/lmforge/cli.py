"""The ``lmforge`` command line.

One table maps each command to its root config dataclass and the function that runs it; the
parser and the ``--help`` text are generated from the dataclasses (field docs and defaults),
so a new command is one entry here plus its config.

Usage::

    lmforge pretrain -c configs/pretrain-mlm.yaml train.lr=3e-4 data.max_length=128
    lmforge pretrain --resume output_dir=runs/my-run
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, TextIO

from lmforge import __version__
from lmforge.adversarial.settings import AttackJob
from lmforge.api import run_command
from lmforge.config import build_config, iter_options, load_yaml
from lmforge.continual.settings import ContinualJob
from lmforge.deploy.settings import ExportJob
from lmforge.errors import ConfigError, LmforgeError
from lmforge.explaining.settings import ExplainJob
from lmforge.pipelines.settings import PipelineJob, RunsJob
from lmforge.prompting.settings import PromptJob
from lmforge.serving.settings import ServeJob
from lmforge.settings import (
    EvaluateJob,
    FinetuneJob,
    PredictJob,
    PretrainJob,
    TokenizerTrainJob,
)
from lmforge.tuning.settings import TuneJob


@dataclass(frozen=True)
class Command:
    """A CLI command: its config class and ``module:function`` that runs it."""

    config: type
    target: str
    summary: str
    # Extra options of this command: (flags, config key, help), e.g. -s/--space -> tune.space.
    flags: tuple[tuple[tuple[str, ...], str, str], ...] = ()
    # Config fields that bare words fill, in order (default: a single ``run`` field).
    positionals: tuple[str, ...] = ()

    def load(self) -> Callable[..., dict[str, Any]]:
        """Import the function lazily (keeps ``lmforge --help`` fast)."""
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)


COMMANDS: dict[str, Command] = {
    "tokenizer train": Command(TokenizerTrainJob, "lmforge.tokenizer.command:run_tokenizer_train",
                               "train a WordPiece / byte-level BPE / Unigram tokenizer"),
    "pretrain": Command(PretrainJob, "lmforge.pretraining.run:run_pretrain",
                        "self-supervised pretraining: mlm (+wwm, nsp, sop) or clm"),
    "finetune": Command(FinetuneJob, "lmforge.finetuning.run:run_finetune",
                        "fine-tune a pretrained model on a labeled task (classification)"),
    "evaluate": Command(EvaluateJob, "lmforge.evaluation.command:run_evaluate",
                        "evaluate a run: perplexity for pretraining, full report for "
                        "fine-tuning"),
    "predict": Command(PredictJob, "lmforge.predictor:run_predict",
                       "predict with a fine-tuned run on a file or stdin (jsonl out)"),
    "serve": Command(ServeJob, "lmforge.serving.server:run_serve",
                     "HTTP server for a fine-tuned run or ONNX export (dynamic batching)"),
    "export": Command(ExportJob, "lmforge.deploy.export:run_export",
                      "export a fine-tuned run: merged HF folder, ONNX, int8 ONNX (checked)"),
    "attack": Command(AttackJob, "lmforge.adversarial.command:run_attack",
                      "attack a fine-tuned classifier (character / synonym / Chinese) and "
                      "report its robustness"),
    "prompt": Command(PromptJob, "lmforge.prompting.command:run_prompt",
                      "zero-shot / in-context prompting with calibration, few-shot "
                      "prompt-based fine-tuning"),
    "tune": Command(TuneJob, "lmforge.tuning.run:run_tune",
                    "hyperparameter search over fine-tuning runs (Optuna: TPE, pruning, "
                    "shared studies)",
                    flags=((("-s", "--space"), "tune.space", "search space YAML file"),
                           (("--storage",), "tune.storage",
                            "study storage: an RDB URL or a journal file (shared by workers)"))),
    "pipeline": Command(PipelineJob, "lmforge.pipelines.run:run_pipeline",
                        "run stages (tokenizer, pretrain, finetune, tune, evaluate, export) "
                        "with content caching and lineage",
                        flags=((("--force",), "force", "rerun these stages (comma-separated) "
                                                       "even when cached"),)),
    "runs": Command(RunsJob, "lmforge.pipelines.runs:run_runs",
                    "list runs with their lineage (`lmforge runs [ROOT]`) or compare two "
                    "(`lmforge runs compare A B`)", positionals=("action", "a", "b")),
    "explain": Command(ExplainJob, "lmforge.explaining.command:run_explain",
                       "attributions (IG, gradient x input, rollout, occlusion, LIME, SHAP) "
                       "as jsonl / HTML / PNG; evaluate=true: their faithfulness"),
    "continual": Command(ContinualJob, "lmforge.continual.run:run_continual",
                         "learn a stream of experiences in order (naive, joint, replay, ewc, "
                         "lwf, agem, lora per experience); accuracy matrix, BWT, FWT"),
}


def options_help(config_cls: type) -> str:
    """Render every option of ``config_cls`` as ``key (default): help`` lines."""
    lines = ["options (set in the YAML file or as key=value):"]
    for key, default, help_text in iter_options(config_cls):
        wrapped = textwrap.fill(help_text, width=76, initial_indent="      ",
                                subsequent_indent="      ")
        lines.append(f"  {key} = {default!r}")
        if wrapped.strip():
            lines.append(wrapped)
    return "\n".join(lines)


def _add_command(sub: Any, name: str, command: Command) -> None:
    doc = (command.config.__doc__ or command.summary).strip()
    parser = sub.add_parser(name, help=command.summary, description=doc,
                            epilog=options_help(command.config),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. train.lr=3e-4 (a bare RUN_DIR means "
                             "run=RUN_DIR for commands that take a run)")
    parser.add_argument("-c", "--config", help="YAML config file")
    parser.add_argument("--output-dir", help="run directory (same as output_dir=...)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the run's latest checkpoint")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    for flags, key, help_text in command.flags:
        parser.add_argument(*flags, dest=f"opt:{key}", metavar=key.rsplit(".", 1)[-1].upper(),
                            help=f"{help_text} (same as {key}=...)")
    parser.set_defaults(command=command)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (sub-commands generated from :data:`COMMANDS`)."""
    parser = argparse.ArgumentParser(
        prog="lmforge", description="lmforge: a transformer language model from theory to "
                                    "practice. Run `lmforge COMMAND --help` for its options.")
    parser.add_argument("--version", action="version", version=f"lmforge {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    groups: dict[str, Any] = {}
    for name, command in COMMANDS.items():
        if " " in name:
            group, leaf = name.split(" ", 1)
            if group not in groups:
                group_parser = sub.add_parser(group, help=f"{group} commands")
                groups[group] = group_parser.add_subparsers(title=f"{group} commands",
                                                            metavar="COMMAND")
            _add_command(groups[group], leaf, command)
        else:
            _add_command(sub, name, command)
    return parser


def _positional_run(config_cls: type, overrides: list[str],
                    positionals: Sequence[str] = ()) -> list[str]:
    """``lmforge serve runs/x`` == ``lmforge serve run=runs/x`` for commands with a ``run`` field.

    A command with ``positionals`` maps its bare words to those fields in order. Any other
    bare word is an error naming the expected ``key=value`` form.
    """
    bare = [o for o in overrides if "=" not in o]
    if not bare:
        return overrides
    if positionals:
        if len(bare) > len(positionals):
            raise ConfigError(f"unexpected argument {bare[len(positionals)]!r}: this command "
                              f"takes at most {len(positionals)} words ({', '.join(positionals)})")
        named = iter(positionals)
        return [f"{next(named)}={o}" if "=" not in o else o for o in overrides]
    has_run = "run" in {f.name for f in fields(config_cls)}
    if len(bare) > 1 or not has_run:
        raise ConfigError(f"unexpected argument {bare[-1]!r}: options are key=value "
                          f"(e.g. train.lr=3e-4)" + ("; give one run directory" if has_run
                                                     else ""))
    return [f"run={o}" if o in bare else o for o in overrides]


def _resolve(args: argparse.Namespace) -> Any:
    overrides = _positional_run(args.command.config, list(args.overrides),
                                args.command.positionals)
    for _, key, _ in args.command.flags:
        if getattr(args, f"opt:{key}", None) is not None:
            overrides.append(f"{key}={getattr(args, f'opt:{key}')}")
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    base = None
    if args.resume:
        # A resumed run starts from its own saved config; the file / overrides given now win.
        out = next((o.split("=", 1)[1] for o in reversed(overrides)
                    if o.startswith("output_dir=")), None)
        saved = os.path.join(out, "config.yaml") if out else None
        if saved and os.path.isfile(saved):
            base = load_yaml(saved)
    return build_config(args.command.config, args.config, overrides, base=base)


def _print_summary(summary: dict[str, Any], out: TextIO) -> None:
    def fmt(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    for key, value in summary.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k}={fmt(v)}" for k, v in value.items()
                              if not isinstance(v, (dict, list)))
            print(f"  {key}: {inner}", file=out)
        else:
            print(f"  {key}: {fmt(value)}", file=out)


def _command_name(command: Command) -> str:
    return next(name for name, known in COMMANDS.items() if known is command)


def drop_load_report(record: logging.LogRecord) -> bool:
    """Logging filter: False for transformers' multi-line ``LOAD REPORT`` table.

    lmforge logs its own one line when a head is new (``models.build``), so the table (a
    screenful per model load, most of it "can be ignored") is only shown with ``--debug``.
    """
    return "LOAD REPORT" not in record.getMessage()


def quiet_libraries(debug: bool, interactive: bool) -> None:
    """Trim library noise: the load-report table unless ``debug``, and the per-file
    loading / dataset progress bars when stderr is not a terminal (log files, CI)."""
    if debug:
        return
    logger = logging.getLogger("transformers.modeling_utils")
    if drop_load_report not in logger.filters:
        logger.addFilter(drop_load_report)
    if not interactive:
        import datasets
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        datasets.disable_progress_bars()


def _flag_override(config_cls: type, word: str) -> str:
    """``--evaluate`` -> ``evaluate=true`` for a boolean top-level option of the command."""
    name = word[2:].replace("-", "_") if word.startswith("--") and "=" not in word else ""
    kinds = {f.name: f.type for f in fields(config_cls)}
    return f"{name}=true" if kinds.get(name) in (bool, "bool") else word


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lmforge`` console script; returns the exit code."""
    parser = build_parser()
    # key=value words may follow options (`lmforge export RUN --output-dir X format=onnx`);
    # argparse leaves those after an option unparsed, so they are added back here.
    args, extra = parser.parse_known_args(argv)
    if hasattr(args, "command"):
        extra = [_flag_override(args.command.config, word) for word in extra]
    unknown = [word for word in extra if word.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra and hasattr(args, "overrides"):
        args.overrides = [*args.overrides, *extra]
    if not hasattr(args, "command"):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "filelock", "fsspec", "jieba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet_libraries(debug=args.debug, interactive=sys.stderr.isatty())
    try:
        job = _resolve(args)
        summary = dict(run_command(_command_name(args.command), job, resume=args.resume))
    except LmforgeError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted; resume with --resume", file=sys.stderr)
        return 130
    # stdout carries data when the command writes its results there (predict output=-):
    # then the table and summary go to stderr, so `lmforge predict RUN | jq` works.
    out = sys.stderr if getattr(job, "writes_stdout", False) else sys.stdout
    table = summary.pop("table", None)
    if table:
        print(table, file=out)
    print("done:", file=out)
    _print_summary(summary, out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
