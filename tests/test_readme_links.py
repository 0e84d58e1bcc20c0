"""Every relative link of README.md and docs/*.md resolves: the file is there and a
``#fragment`` into a markdown file names one of its headings. The front page links each stage
to its BENCHMARKS.md section by anchor, so a renamed heading fails here, not for a reader."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE_RE = re.compile(r"^```.*?^```", re.S | re.M)
COMMENT_RE = re.compile(r"<!--.*?-->", re.S)
CODE_RE = re.compile(r"`[^`\n]*`")
LINK_RE = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING_RE = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (CJK characters kept),
    spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a markdown page's headings; a repeated one gets -1, -2, ... as on
    GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING_RE.findall(FENCE_RE.sub("", page.read_text(encoding="utf-8"))):
        slug = anchor(heading)
        out.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return out


def links(page: Path) -> list[str]:
    """The link targets of a page outside code and comments, web addresses left out."""
    text = page.read_text(encoding="utf-8")
    for pattern in (FENCE_RE, COMMENT_RE, CODE_RE):
        text = pattern.sub("", text)
    return [t for t in LINK_RE.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_the_anchor_rule() -> None:
    assert anchor("Continual: SST-2 → AG News (issue 23)") == "continual-sst-2--ag-news-issue-23"
    assert anchor("`lmforge ui`: first paint") == "lmforge-ui-first-paint"
    assert anchor("跟踪、报告与网页界面") == "跟踪报告与网页界面"


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.name}")
    assert not broken, broken


def test_the_front_page_links_every_docs_page_and_the_screenshot() -> None:
    readme = set(links(ROOT / "README.md"))
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages <= {t.partition("#")[0] for t in readme}, pages - readme
    assert "docs/images/ui-runs.png" in readme
