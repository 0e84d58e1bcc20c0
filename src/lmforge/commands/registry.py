"""The one table of ``lmforge`` commands.

Each entry says everything the rest of the system may ask of a command: its root config
class (the CLI's options and ``--help``, the Python API's arguments), its entry point (a
``module:function`` string, imported only when the command runs, so ``lmforge --help`` stays
fast), whether it continues a killed run, whether it can be a pipeline stage, and which
summary keys hold its headline metrics. Adding a command is its module in
``lmforge/commands/`` plus one line here; ``tests/commands/test_registry.py`` then checks
the CLI help, the Python API function and pipeline support of every entry.
"""

from __future__ import annotations

import importlib
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lmforge.adversarial.settings import AttackJob
from lmforge.continual.settings import ContinualJob
from lmforge.deploy.settings import ExportJob, PredictJob
from lmforge.errors import ConfigError
from lmforge.evaluation.settings import EvaluateJob
from lmforge.explaining.settings import ExplainJob
from lmforge.finetuning.settings import FinetuneJob
from lmforge.models.settings import ConvertJob
from lmforge.pipelines.settings import PipelineJob, RunsJob
from lmforge.pretraining.settings import PretrainJob
from lmforge.prompting.settings import PromptJob
from lmforge.reporting.settings import ReportJob
from lmforge.serving.settings import ServeJob
from lmforge.tokenizer.settings import TokenizerTrainJob
from lmforge.tuning.settings import TuneJob
from lmforge.ui.settings import UiJob

Flag = tuple[tuple[str, ...], str, str]
"""An extra CLI option: (flags, config key, help), e.g. ``(("-s", "--space"), "tune.space",
"search space YAML file")``."""


@dataclass(frozen=True)
class Command:
    """A command: its config, its entry point and what other parts may ask of it.

    Attributes:
        config: The root config dataclass (CLI options, ``--help``, YAML, Python API).
        target: ``module:function`` of the entry point ``(job, resume=False, ...) -> summary``.
        summary: One line for ``lmforge --help``.
        flags: Extra options of this command, e.g. ``-s/--space`` for ``tune.space``.
        positionals: Config fields that bare words fill, in order (default: a single ``run``
            field, when the config has one); a last name ending in ``*`` (``"runs*"``) is a
            list field that takes all remaining bare words.
        resumes: ``--resume`` continues a killed run from its checkpoints (a pipeline stage
            killed mid-run resumes too).
        pipeline_stage: It can be a stage of ``lmforge pipeline`` (it runs to completion and
            writes a run folder).
        summary_keys: Keys of the summary whose numbers are the command's headline metrics,
            the first present wins (``RunResult.metrics``, ``lmforge runs``); none: the
            summary's own top-level numbers.
        report_sections: ``module:function`` paths of what the command adds to its run's
            report (``lmforge report``, ``report.html``): ``(run, job) -> [Section]`` with
            ``run`` a :class:`~lmforge.reporting.rundata.RunData`; imported only when a
            report is drawn. The generic parts (metrics, curves, lineage, config) need none.
        loads_models: The command may load models, data sets or torch. False (``lmforge
            report``): it reads files only, so it runs without the torch process scope and the
            library set-up, and starts in well under a second instead of seconds.
    """

    config: type
    target: str
    summary: str
    flags: tuple[Flag, ...] = ()
    positionals: tuple[str, ...] = ()
    resumes: bool = False
    pipeline_stage: bool = True
    summary_keys: tuple[str, ...] = ()
    report_sections: tuple[str, ...] = ()
    loads_models: bool = True

    def load(self) -> Callable[..., dict[str, Any]]:
        """Import the entry point (lazily: keeps ``lmforge --help`` fast)."""
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)

    def load_report_sections(self) -> list[Callable[..., list[Any]]]:
        """Import the report section makers (lazily, like the entry point)."""
        return [getattr(importlib.import_module(path.split(":")[0]), path.split(":")[1])
                for path in self.report_sections]


COMMANDS: dict[str, Command] = {
    "tokenizer train": Command(TokenizerTrainJob,
                               "lmforge.commands.tokenizer_train:run_tokenizer_train",
                               "train a WordPiece / byte-level BPE / Unigram tokenizer"),
    "pretrain": Command(PretrainJob, "lmforge.commands.pretrain:run_pretrain",
                        "self-supervised pretraining: mlm (+wwm, nsp, sop) or clm",
                        resumes=True, summary_keys=("final_eval",),
                        report_sections=("lmforge.pretraining.report_section:sections",)),
    "finetune": Command(FinetuneJob, "lmforge.commands.finetune:run_finetune",
                        "fine-tune a pretrained model on a labeled task (classification, "
                        "NER, extractive QA, seq2seq, chat SFT)",
                        resumes=True, summary_keys=("validation_metrics",),
                        report_sections=("lmforge.finetuning.report_section:sections",)),
    "evaluate": Command(EvaluateJob, "lmforge.commands.evaluate:run_evaluate",
                        "evaluate a run: perplexity for pretraining, full report for "
                        "fine-tuning"),
    "predict": Command(PredictJob, "lmforge.commands.predict:run_predict",
                       "predict with a fine-tuned run on a file or stdin (jsonl out)"),
    "serve": Command(ServeJob, "lmforge.commands.serve:run_serve",
                     "HTTP server for a fine-tuned run or ONNX export (dynamic batching)",
                     pipeline_stage=False),
    "export": Command(ExportJob, "lmforge.commands.export:run_export",
                      "export a fine-tuned run: merged HF folder, ONNX, int8 ONNX (checked)"),
    "attack": Command(AttackJob, "lmforge.commands.attack:run_attack",
                      "attack a fine-tuned classifier (character / synonym / Chinese) and "
                      "report its robustness",
                      report_sections=("lmforge.adversarial.report_section:sections",)),
    "prompt": Command(PromptJob, "lmforge.commands.prompt:run_prompt",
                      "zero-shot / in-context prompting with calibration, few-shot "
                      "prompt-based fine-tuning", summary_keys=("ensemble", "prompt"),
                      report_sections=("lmforge.prompting.report_section:sections",)),
    "tune": Command(TuneJob, "lmforge.commands.tune:run_tune",
                    "hyperparameter search over fine-tuning runs (Optuna: TPE, pruning, "
                    "shared studies)",
                    flags=((("-s", "--space"), "tune.space", "search space YAML file"),
                           (("--storage",), "tune.storage",
                            "study storage: an RDB URL or a journal file (shared by workers)")),
                    report_sections=("lmforge.tuning.report_section:sections",)),
    "pipeline": Command(PipelineJob, "lmforge.commands.pipeline:run_pipeline",
                        "run stages (tokenizer, pretrain, finetune, tune, evaluate, export) "
                        "with content caching and lineage",
                        flags=((("--force",), "force", "rerun these stages (comma-separated) "
                                                       "even when cached"),),
                        pipeline_stage=False),
    "runs": Command(RunsJob, "lmforge.commands.runs:run_runs",
                    "list runs with their lineage (`lmforge runs [ROOT]`) or compare two "
                    "(`lmforge runs compare A B`)", positionals=("action", "a", "b"),
                    pipeline_stage=False),
    "explain": Command(ExplainJob, "lmforge.commands.explain:run_explain",
                       "attributions (IG, gradient x input, rollout, occlusion, LIME, SHAP) "
                       "as jsonl / HTML / PNG; evaluate=true: their faithfulness",
                       report_sections=("lmforge.explaining.report_section:sections",)),
    "continual": Command(ContinualJob, "lmforge.commands.continual:run_continual",
                         "learn a stream of experiences in order (naive, joint, replay, ewc, "
                         "lwf, agem, lora per experience); accuracy matrix, BWT, FWT",
                         resumes=True,
                         report_sections=("lmforge.continual.report_section:sections",)),
    "report": Command(ReportJob, "lmforge.commands.report:run_report",
                      "one self-contained HTML report of a run, or of several side by side "
                      "(curves, metrics, task pictures, lineage, config differences)",
                      positionals=("runs*",), pipeline_stage=False, loads_models=False),
    "convert": Command(ConvertJob, "lmforge.commands.convert:run_convert",
                       "a GGUF model (file or builtin name) as a trainable Hugging Face folder "
                       "(de-quantised, safetensors, with its tokenizer)",
                       positionals=("source",), pipeline_stage=False),
    "ui": Command(UiJob, "lmforge.commands.ui:run_ui",
                  "local web app: runs table and curves, a training form, a playground "
                  "(`lmforge ui [--root runs/]`)", positionals=("root",), pipeline_stage=False,
                  flags=((("--root",), "root", "folder of runs (default runs/)"),)),
}


def get_command(name: str) -> Command:
    """The registered command ``name``.

    Raises:
        ConfigError: No command has that name.
    """
    if name not in COMMANDS:
        raise ConfigError(f"unknown command {name!r}; choose one of {sorted(COMMANDS)}")
    return COMMANDS[name]


def pipeline_commands() -> dict[str, Command]:
    """The commands that can be stages of ``lmforge pipeline``."""
    return {name: command for name, command in COMMANDS.items() if command.pipeline_stage}


def _numbers(values: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool)}


def headline_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The metrics a user asks for first, from a command's summary.

    The summary's ``command`` names the registry entry whose
    :attr:`~lmforge.commands.registry.Command.summary_keys` hold the headline; a command that
    declares none (or a summary without a known command) is read with the keys every
    registered command declares, in registry order.

    Returns:
        The numbers of the first of those keys present, else the summary's top-level numbers.
    """
    command = COMMANDS.get(str(summary.get("command")))
    keys = (command.summary_keys if command else ()) or \
        [key for spec in COMMANDS.values() for key in spec.summary_keys]
    for key in keys:
        if isinstance(summary.get(key), Mapping):
            return _numbers(summary[key])
    return _numbers({k: v for k, v in summary.items() if k not in ("examples", "inputs")})
