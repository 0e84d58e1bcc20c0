"""Pictures of explanations: a self-contained HTML page and a PNG of one example.

Colours: green = the word raises the explained output, red = it lowers it; the strength is
the word's score divided by the largest absolute word score of that method on that example,
so methods on different scales (probabilities, gradients, attention flow) sit side by side.
The HTML page has no external resource (no CDN, fonts or scripts): it opens offline.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

from lmforge.explaining.words import has_cjk

log = logging.getLogger(__name__)

CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Micro Hei",
             "WenQuanYi Zen Hei", "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC",
             "AR PL UMing CN", "Droid Sans Fallback")

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans","PingFang SC",
"Microsoft YaHei",sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:20px} .ex{border:1px solid #ddd;border-radius:6px;padding:12px;margin:16px 0}
.head{margin-bottom:8px} .pred{font-weight:600}
table{border-collapse:collapse;width:100%} td{padding:4px 6px;vertical-align:top;
border-top:1px solid #eee} td.m{width:110px;font-family:monospace;color:#555}
span.w{padding:1px 3px;margin:1px;border-radius:3px;display:inline-block;line-height:1.6}
span.sep{color:#999;margin:0 6px} .legend span{padding:2px 6px;border-radius:3px}
.note{color:#666;font-size:13px}
"""


def colour(score: float, scale: float) -> str:
    """CSS rgba background for a score (green positive, red negative)."""
    alpha = 0.0 if scale <= 0 else min(1.0, abs(score) / scale)
    rgb = "40,160,70" if score >= 0 else "220,50,50"
    return f"rgba({rgb},{alpha * 0.85:.3f})"


def describe(prediction: dict[str, Any]) -> str:
    """One line: what was predicted and which output is explained."""
    if "label" in prediction:
        text = f"predicted {prediction['label']} (p = {prediction['score']:.3f})"
        if prediction.get("target") != prediction["label"]:
            text += f"; explaining {prediction['target']} (p = {prediction['target_score']:.3f})"
        return text
    if "entity" in prediction:
        return (f"entity {prediction['entity']!r} ({prediction['type']}, "
                f"p = {prediction['score']:.3f})")
    return f"answer {prediction.get('answer', '')!r} (p = {prediction.get('score', 0.0):.3f})"


def _words_html(row: dict[str, Any], scores: list[float]) -> str:
    scale = max((abs(s) for s in scores), default=0.0)
    parts, last = [], None
    for word, seg, score in zip(row["words"], row["word_segments"], scores, strict=True):
        if last is not None and seg != last:
            parts.append('<span class="sep">‖</span>')
        last = seg
        parts.append(f'<span class="w" style="background:{colour(score, scale)}" '
                     f'title="{score:+.4f}">{html.escape(word)}</span>')
    return " ".join(parts)


def html_page(rows: list[dict[str, Any]], title: str, note: str = "") -> str:
    """The whole page: one block per example, one row per method."""
    blocks = []
    for k, row in enumerate(rows):
        lines = [f'<tr><td class="m">{html.escape(name)}</td><td>'
                 f'{_words_html(row, entry["word_scores"])}</td></tr>'
                 for name, entry in row["methods"].items()]
        blocks.append(f'<div class="ex"><div class="head">#{k} <span class="pred">'
                      f'{html.escape(describe(row["prediction"]))}</span></div>'
                      f'<table>{"".join(lines)}</table></div>')
    legend = ('<p class="legend"><span style="background:rgba(40,160,70,.7)">raises the '
              'explained output</span> <span style="background:rgba(220,50,50,.7)">lowers '
              'it</span> <span class="note">strength relative to the largest word score of '
              'each method; hover a word for its score</span></p>')
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}'
            f'</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>'
            f'{legend}<p class="note">{html.escape(note)}</p>{"".join(blocks)}</body></html>')


def write_html(rows: list[dict[str, Any]], path: Path, title: str, note: str = "") -> Path:
    """Write :func:`html_page` to ``path``."""
    path.write_text(html_page(rows, title, note), encoding="utf-8")
    return path


def cjk_font() -> str | None:
    """The name of an installed font with Chinese glyphs, or None."""
    from matplotlib import font_manager

    manager = font_manager.fontManager
    found = next((n for n in CJK_FONTS if n in {f.name for f in manager.ttflist}), None)
    if found is None:  # installed after matplotlib cached its font list: add the files
        for path in font_manager.findSystemFonts():
            if any(k in Path(path).name.lower() for k in ("wqy", "cjk", "droidsansfallback",
                                                          "simhei", "sourcehan")):
                manager.addfont(path)
        found = next((n for n in CJK_FONTS if n in {f.name for f in manager.ttflist}), None)
    return found


def write_png(row: dict[str, Any], path: Path, title: str = "", width_in: float = 10.0) -> Path:
    """One example as a PNG: coloured words per method, wrapped (for papers and READMEs)."""
    from matplotlib.figure import Figure
    from matplotlib.textpath import TextPath

    family = ["DejaVu Sans"]
    if any(has_cjk(w) for w in row["words"]):
        font = cjk_font()
        if font is None:
            log.warning("no Chinese font found (install fonts-noto-cjk or "
                        "fonts-wqy-microhei); the PNG will show boxes for Chinese words")
        else:
            family = [font, "DejaVu Sans"]
    from matplotlib.font_manager import FontProperties

    prop = FontProperties(family=family, size=9)
    # Word widths in inches (TextPath measures in points at the font size), plus box padding.
    widths = [TextPath((0, 0), w, prop=prop).get_extents().width / 72 + 0.12
              for w in row["words"]]
    left, usable, line_h = 1.3, width_in - 1.5, 0.28
    layout = []  # per method: [(word index, x inches, line)]
    for _name, _entry in row["methods"].items():
        x, line, places = 0.0, 0, []
        for i, w in enumerate(widths):
            if x + w > usable and x > 0:
                x, line = 0.0, line + 1
            places.append((i, x, line))
            x += w + 0.05
        layout.append(places)
    lines = [max((p[2] for p in places), default=0) + 1 for places in layout]
    height = 0.6 + sum(n * line_h + 0.12 for n in lines)
    fig = Figure(figsize=(width_in, height), dpi=150)
    fig.text(0.1 / width_in, 1 - 0.1 / height, title or describe(row["prediction"]),
             va="top", fontsize=10, fontweight="bold", family=family)
    top = 0.55
    for (name, entry), places, n in zip(row["methods"].items(), layout, lines, strict=True):
        scores = entry["word_scores"]
        scale = max((abs(s) for s in scores), default=0.0)
        y0 = top + line_h / 2
        fig.text(0.1 / width_in, 1 - y0 / height, name, va="center", fontsize=9,
                 family="monospace", color="#555")
        for i, x, line in places:
            r, g, b, a = _rgba(colour(scores[i], scale))
            fig.text((left + x) / width_in, 1 - (y0 + line * line_h) / height,
                     row["words"][i], va="center", fontsize=9, family=family,
                     bbox={"boxstyle": "round,pad=0.2", "facecolor": (r, g, b, a),
                           "edgecolor": "none"})
        top += n * line_h + 0.12
    fig.savefig(path)
    return path


def _rgba(css: str) -> tuple[float, float, float, float]:
    r, g, b, a = (float(v) for v in css[css.index("(") + 1:-1].split(","))
    return r / 255, g / 255, b / 255, a
