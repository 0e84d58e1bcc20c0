"""The report page: one self-contained HTML file for one run or several side by side.

The generic parts every run has are built here: the header, the headline and final metrics,
the training curves (inline SVG, :mod:`lmforge.reporting.charts`), lineage and config; for
several runs, overlaid curves, metrics side by side and the config keys that differ. What a
command writes beyond the run folder contract (a task's pictures, an accuracy matrix, a
study's trials) comes in as :class:`~lmforge.reporting.html.Section` objects made by that
command's own module (the registry's ``report_sections``), so nothing here knows a command
or a task.

The file has no script and loads nothing: styles are inline, pictures are data URIs, charts
are SVG. It opens from disk, as an e-mail attachment or on a machine without a network.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from lmforge.config import temporary_name
from lmforge.errors import ConfigError
from lmforge.reporting.charts import line_chart
from lmforge.reporting.html import (
    Section,
    details,
    esc,
    flatten,
    kv_table,
    note,
    pre,
    table,
)
from lmforge.reporting.rundata import RunData, final_numbers
from lmforge.version import __version__

GENERATOR = "lmforge report"
"""The page's ``<meta name="generator">``: marks a file lmforge may write over."""

IGNORED_DIFF_KEYS = ("output_dir",)
"""Config keys every run differs in by construction (not worth listing as differences)."""

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;
margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px}header p{margin:0;color:#c9cfdb}
main{padding:8px 28px 40px;max-width:1280px}
nav{margin:12px 0}nav a{margin-right:14px;color:#2a5db0;text-decoration:none}
section{background:#fff;border:1px solid #e1e4ea;border-radius:6px;padding:12px 18px;
margin:14px 0}
section h2{margin:4px 0 10px;font-size:18px}section h3{margin:14px 0 6px;font-size:15px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border:1px solid #e1e4ea;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.examples td{max-width:420px;word-break:break-word}
.charts{display:flex;flex-wrap:wrap;gap:10px}
svg.chart{background:#fff;border:1px solid #eef0f3}
svg .grid{stroke:#eceef2}svg .frame{fill:none;stroke:#c8ccd4}
svg .curve{fill:none;stroke-width:1.6}svg text{font:11px system-ui,sans-serif;fill:#3b4250}
svg .title{font-size:13px;font-weight:600}
.pictures{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0}figure img{max-width:420px;border:1px solid #eef0f3}
figcaption{font-size:12px;color:#5b6473}
pre{background:#f6f7f9;padding:8px;overflow:auto;font-size:12px;max-height:480px}
details{margin:6px 0}summary{cursor:pointer;color:#2a5db0}
.note{color:#5b6473;font-size:13px;margin:4px 0}
"""


def _section(anchor: str, title: str, body: str) -> str:
    return f"<section id=\"{esc(anchor)}\"><h2>{esc(title)}</h2>{body}</section>"


def _page(title: str, subtitle: str, parts: Sequence[tuple[str, str, str]]) -> str:
    """The whole document: ``parts`` are (anchor, title, body HTML) in page order."""
    nav = "".join(f"<a href=\"#{esc(a)}\">{esc(t)}</a>" for a, t, _ in parts)
    sections = "".join(_section(a, t, b) for a, t, b in parts)
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"generator\" content=\"{GENERATOR}\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            # No network, no script: a report opened from an e-mail can fetch and run nothing.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
            f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
            f"<main><nav>{nav}</nav>{sections}</main></body></html>")


def _curves_html(series_by_chart: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]],
                 max_points: int) -> str:
    charts = [line_chart(title, series, max_points=max_points)
              for title, series in series_by_chart.items()]
    charts = [c for c in charts if c]
    if not charts:
        return note("No metrics were logged against steps (no metrics.jsonl).")
    return f"<div class=\"charts\">{''.join(charts)}</div>"


def _single_run_charts(run: RunData) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """One chart for all losses (train and eval share an axis), one per other number."""
    charts: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for key, points in run.curves().items():
        title = "loss" if key.endswith("loss") else key
        charts.setdefault(title, {})[key] = points
    return charts


def _lineage_html(run: RunData) -> str:
    lineage = run.lineage
    if not lineage:
        return note("No lineage.json in this run folder.")
    parts = [kv_table({k: lineage.get(k) for k in ("run_id", "command", "config_hash",
                                                  "started", "finished", "seconds", "host")
                       if k in lineage})]
    parents = lineage.get("parents") or []
    parts.append("<h3>Parents</h3>")
    parts.append(table(("config key", "path", "command", "run id"),
                       [(p.get("key"), p.get("path"), p.get("command"), p.get("run_id"))
                        for p in parents]) if parents
                 else note("No parent run (trained from a base model or from scratch)."))
    data = lineage.get("data") or {}
    parts.append("<h3>Data fingerprints</h3>")
    parts.append(table(("config key", "sha256"), data.items()) if data
                 else note("No data file fingerprinted."))
    code = {**(lineage.get("code") or {}), **(lineage.get("packages") or {})}
    if code:
        parts.append(details("Code and package versions", kv_table(code)))
    return "".join(parts)


def _config_html(run: RunData) -> str:
    if not run.config:
        return note("No config.yaml in this run folder.")
    text = yaml.safe_dump(run.config, sort_keys=False, allow_unicode=True)
    return details("config.yaml", pre(text), open_=False)


def _stage_html(sections: Sequence[Section]) -> str:
    return "".join(f"<h3>{esc(s.title)}</h3>{s.body}" for s in sections)


def single_run_page(run: RunData, headline: Mapping[str, float],
                    sections: Sequence[Section], max_points: int = 600) -> str:
    """The report of one run.

    Args:
        run: The run folder, read.
        headline: Its headline metrics (the registry's ``summary_keys``).
        sections: What the command's own report modules add.
        max_points: Points kept per curve (:func:`~lmforge.reporting.charts.downsample`).
    """
    numbers = final_numbers({k: v for k, v in run.summary.items()
                             if k not in ("command", "run_dir")})
    final = (table(("metric", "value"), headline.items()) if headline
             else note("No headline metrics in summary.json."))
    if numbers:
        final += details(f"All {len(numbers)} numbers in summary.json",
                         table(("key", "value"), numbers.items()))
    parts = [("metrics", "Final metrics", final),
             ("curves", "Training curves", _curves_html(_single_run_charts(run), max_points))]
    if sections:
        parts.append(("stage", f"{run.command or 'Run'} results", _stage_html(sections)))
    parts += [("lineage", "Lineage", _lineage_html(run)), ("config", "Config", _config_html(run))]
    subtitle = (f"{run.command or 'run'} · {run.folder} · "
                f"{run.lineage.get('finished') or 'unfinished'} · made by lmforge {__version__} "
                f"on {time.strftime('%Y-%m-%d %H:%M')}")
    return _page(f"lmforge report: {run.name}", subtitle, parts)


def config_differences(runs: Sequence[RunData]) -> list[tuple[str, list[Any]]]:
    """The config keys (dotted) whose values differ between runs, with each run's value."""
    flat = [flatten(r.config) for r in runs]
    keys: list[str] = []
    for values in flat:
        keys.extend(k for k in values if k not in keys)
    missing = object()
    out = []
    for key in keys:
        if key.split(".")[-1] in IGNORED_DIFF_KEYS:
            continue
        values = [f.get(key, missing) for f in flat]
        if any(v != values[0] for v in values[1:]):
            out.append((key, ["—" if v is missing else v for v in values]))
    return out


def comparison_page(runs: Sequence[RunData], headlines: Sequence[Mapping[str, float]],
                    sections: Sequence[Sequence[Section]], max_points: int = 600) -> str:
    """The report of several runs: metrics side by side, overlaid curves, config diffs.

    Args:
        runs: The run folders, read, in the order given.
        headlines: Each run's headline metrics.
        sections: Each run's own report sections.
        max_points: Points kept per curve and run.
    """
    names = [r.name for r in runs]
    overview = table(("run", "command", "folder", "finished"),
                     [(r.name, r.command, str(r.folder), r.lineage.get("finished", ""))
                      for r in runs])
    keys: list[str] = []
    for headline in headlines:
        keys.extend(k for k in headline if k not in keys)
    metrics = table(("metric", *names), [(k, *[h.get(k, "") for h in headlines]) for k in keys]) \
        if keys else note("No headline metrics in these runs' summaries.")
    all_numbers = [final_numbers({k: v for k, v in r.summary.items() if k != "run_dir"})
                   for r in runs]
    number_keys: list[str] = []
    for values in all_numbers:
        number_keys.extend(k for k in values if k not in number_keys)
    if number_keys:
        metrics += details("All numbers in the summaries",
                           table(("key", *names), [(k, *[v.get(k, "") for v in all_numbers])
                                                   for k in number_keys]))
    charts: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for run in runs:
        for key, points in run.curves().items():
            charts.setdefault(key, {})[run.name] = points
    diffs = config_differences(runs)
    diff_html = table(("config key", *names), [(k, *v) for k, v in diffs]) if diffs \
        else note("The configs are the same (apart from output folders).")
    parts = [("runs", "Runs", overview), ("metrics", "Metrics side by side", metrics),
             ("curves", "Training curves (overlaid)", _curves_html(charts, max_points)),
             ("config-diff", "Config differences", diff_html)]
    for i, (run, own) in enumerate(zip(runs, sections, strict=True)):
        body = (_stage_html(own) + details("Lineage", _lineage_html(run))
                + _config_html(run))
        parts.append((f"run-{i + 1}", run.name, body))
    subtitle = (f"{len(runs)} runs · made by lmforge {__version__} on "
                f"{time.strftime('%Y-%m-%d %H:%M')}")
    return _page(f"lmforge report: {' vs '.join(names)}"[:200], subtitle, parts)


def is_report(path: Path) -> bool:
    """Whether ``path`` is a report lmforge wrote (so it may be written over)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(1024)
    except OSError:
        return False
    return f"content=\"{GENERATOR}\"" in head


def write_report(path: Path, page: str) -> Path:
    """Write the page atomically; never over a file that is not an lmforge report.

    Raises:
        ConfigError: ``path`` exists and is another file (e.g. ``lmforge attack``'s own
            ``report.html``).
    """
    if path.exists() and not is_report(path):
        raise ConfigError(f"{path} exists and is not an lmforge report; pass output=FILE")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path

