"""The package's floors: every module imports only from lower floors (or from its own subpackage).

Read bottom-up, each floor builds on the ones below it; an upward arrow (``model`` importing ``training``, ``study``
importing ``evals``) would tie a lower layer to a higher one and is refused here, naming the file and the import.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "genprune_nb"

# floor -> the top-level modules and subpackages on it (README, "Architecture")
FLOORS = {
    0: ("errors",),
    1: ("progress", "storage", "stats", "tokenizer"),
    2: ("config", "launch"),
    3: ("data",),
    4: ("model",),
    5: ("connectome",),
    6: ("training",),
    7: ("study",),
    8: ("alignment", "analysis"),
    9: ("evals",),
    10: ("report",),
    11: ("cli",),
}
FLOOR = {unit: floor for floor, units in FLOORS.items() for unit in units}


def unit_of(module: str) -> str:
    """The top-level module or subpackage of ``genprune_nb.<module>`` ("study.results" -> "study")."""
    return module.split(".")[0]


def package_modules() -> dict[str, Path]:
    """Every module of the package by dotted name below ``genprune_nb`` ("study.results", "data")."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            modules[".".join(parts)] = path
    return modules


def imports_of(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported module below ``genprune_nb``) of every package import in the file, at any depth."""
    is_package = path.name == "__init__.py"
    here = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "genprune_nb":
                target = node.module.partition(".")[2]
            else:
                continue
            if target:
                found.append((node.lineno, target))
            else:  # from genprune_nb import x / from .. import x: the names are modules
                found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.partition(".")[2]) for a in node.names
                      if a.name.split(".")[0] == "genprune_nb" and "." in a.name]
    return found


MODULES = package_modules()


def test_every_module_has_a_floor():
    homeless = sorted({unit_of(m) for m in MODULES} - set(FLOOR))
    assert not homeless, f"put {homeless} on a floor (tests/test_architecture.py FLOORS and README 'Architecture')"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_import(module):
    source = unit_of(module)
    arrows = []
    for line, target in imports_of(module, MODULES[module]):
        to = unit_of(target)
        if to != source and FLOOR.get(to, -1) >= FLOOR[source]:
            arrows.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} imports {target} "
                          f"(floor {FLOOR.get(to)}) from {source} (floor {FLOOR[source]})")
    assert not arrows, "upward or sideways imports:\n" + "\n".join(arrows)


@pytest.mark.parametrize("package", sorted(u for u in FLOOR if (PACKAGE / u / "__init__.py").exists()))
def test_subpackage_says_its_job(package):
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
    assert doc and "TODO" not in doc, f"genprune_nb/{package}/__init__.py needs a docstring saying its job"


def test_the_walker_sees_an_upward_import(tmp_path):
    bad = tmp_path / "lm.py"
    bad.write_text("def f():\n    from ..training.loop import train\n")
    assert imports_of("model.lm", bad) == [(2, "training.loop")]
