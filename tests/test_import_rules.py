"""Imports point one way: scheduler_boot → cronwork; jobs → app, cronwork; app → cronwork."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Package → the first-party packages it must never import (at module level or inside a function).
FORBIDDEN = {
    "cronwork": {"app", "jobs", "scheduler_boot"},
    "app": {"jobs", "scheduler_boot"},
    "jobs": {"scheduler_boot"},
    "scheduler_boot": {"app", "jobs"},  # the scheduler needs Redis only (issue 10)
}


def imported_packages(path: Path) -> set[tuple[int, str]]:
    """(line, top-level package) of every import statement in one module."""
    found: set[tuple[int, str]] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.lineno, node.module.split(".")[0]))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_one_way(package: str) -> None:
    violations = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, target in sorted(imported_packages(path))
        if target in FORBIDDEN[package]
    ]
    assert not violations, "\n".join(violations)


def test_the_rules_see_real_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom app.extensions import db\ndef f():\n    import jobs.worker\n")
    assert imported_packages(module) == {(1, "os"), (2, "app"), (4, "jobs")}
