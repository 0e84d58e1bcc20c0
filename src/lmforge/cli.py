"""The ``lmforge`` command line.

The parser and the ``--help`` text are generated from the command registry
(:mod:`lmforge.commands.registry`: each command's root config dataclass, its field docs and
defaults), so a new command is its module plus one registry line, and nothing here.

Usage::

    lmforge pretrain -c configs/pretrain-mlm.yaml train.lr=3e-4 data.max_length=128
    lmforge pretrain --resume output_dir=runs/my-run
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, TextIO

from lmforge.commands.registry import COMMANDS, Command
from lmforge.commands.runner import drop_load_report, quiet_libraries, run_command
from lmforge.config import build_config, iter_options, load_yaml
from lmforge.errors import ConfigError, LmforgeError
from lmforge.version import __version__

__all__ = ["COMMANDS", "Command", "build_parser", "drop_load_report", "main", "options_help",
           "quiet_libraries"]


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
    if positionals and positionals[-1].endswith("*"):
        # The last field takes the remaining words as a list (`lmforge report RUN [RUN...]`);
        # JSON quoting keeps paths with commas, colons or spaces whole.
        *fixed, rest = positionals
        head = [f"{name}={word}" for name, word in zip(fixed, bare, strict=False)]
        tail = bare[len(fixed):]
        keyed = [o for o in overrides if "=" in o]
        return head + ([f"{rest[:-1]}={json.dumps(tail)}"] if tail else []) + keyed
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
    if args.command.loads_models:  # imports datasets / transformers: only where they are used
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
