"""The floors of docs/architecture.md hold in the code: no import climbs, no package cycle.

The check reads the documented floors and builds the import graph with ``ast``
(``scripts/architecture.py``), so the document and the code cannot drift apart.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _architecture() -> ModuleType:
    spec = importlib.util.spec_from_file_location("architecture", ROOT / "scripts" /
                                                  "architecture.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("architecture", module)
    spec.loader.exec_module(module)
    return module


ARCH = _architecture()


def test_no_import_climbs_a_documented_floor() -> None:
    assert ARCH.against_floors(ARCH.imports(), ARCH.read_floors()) == []


def test_no_cycle_between_top_level_packages() -> None:
    assert ARCH.cycles(ARCH.imports()) == []


def test_every_top_level_unit_is_on_a_floor() -> None:
    named = {name for floor in ARCH.read_floors() for name in floor}
    units = {p.stem if p.is_file() else p.name for p in ARCH.PACKAGE.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").is_file())}
    assert units <= named, sorted(units - named)


def test_function_level_imports_of_lmforge_are_only_the_documented_one() -> None:
    # Hidden imports dodge cycles; the one kept makes `lmforge.load` import torch only when
    # called (docs/architecture.md, "Function-level imports").
    inside = {(i.path, i.target) for i in ARCH.imports() if i.in_function and i.internal}
    assert inside == {("api.py", "lmforge.predictor")}


def test_the_doc_picture_is_generated_from_the_code() -> None:
    text = ARCH.DOC.read_text(encoding="utf-8")
    assert ARCH.render(ARCH.imports(), ARCH.read_floors()) in text, \
        "run: python scripts/architecture.py --write"


def test_the_check_catches_a_climbing_import_and_a_cycle(tmp_path: Path) -> None:
    package = tmp_path / "lmforge"
    for name, body in {"__init__.py": "", "errors.py": "from lmforge.engine import loop\n",
                       "engine/__init__.py": "", "engine/loop.py":
                       "def f():\n    from lmforge import errors\n"}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(body)
    found = ARCH.imports(package)
    floors = [["errors"], ["engine"], ["__init__"]]
    problems = ARCH.against_floors(found, floors)
    assert problems == ["errors.py:1 imports lmforge.engine: engine is above errors"]
    assert ARCH.cycles(found) == [["engine", "errors"]]
