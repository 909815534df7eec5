"""Imports point one way: scheduler_boot → cronwork; jobs → app, cronwork; app → cronwork."""

from __future__ import annotations

import ast
import subprocess
import sys
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


# --- The vision libraries (issue 15) ----------------------------------------------------------
# Only the heavy worker imports them: the CLIP job imports these two modules when it runs, and
# jobs.clip_worker before its first fork. The demo seed draws with Pillow inside a function.
VISION_LIBRARIES = {"onnxruntime", "onnx", "numpy", "PIL", "tokenizers"}
VISION_MODULES = {"app/services/clip_model.py", "app/services/clip_inference.py"}
VISION_IN_FUNCTIONS_ONLY = {"app/demo/images.py"}


def module_level_packages(path: Path) -> set[tuple[int, str]]:
    """(line, top-level package) of the imports that run when the module is imported: every
    import not inside a function (a class body, an `if` or a `try` at module level counts)."""
    tree = ast.parse(path.read_text(), str(path))
    inside_functions = {
        id(node)
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(function)
    }
    found: set[tuple[int, str]] = set()
    for node in ast.walk(tree):
        if id(node) in inside_functions:
            continue
        if isinstance(node, ast.Import):
            found.update((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.lineno, node.module.split(".")[0]))
    return found


def test_only_the_vision_modules_import_the_vision_libraries() -> None:
    violations = []
    for package in ("app", "cronwork", "jobs", "scheduler_boot"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = str(path.relative_to(ROOT))
            if relative in VISION_MODULES:
                continue
            imports = module_level_packages(path) if relative in VISION_IN_FUNCTIONS_ONLY else imported_packages(path)
            violations += [f"{relative}:{line} imports {target}" for line, target in sorted(imports) if target in VISION_LIBRARIES]
    assert not violations, "\n".join(violations)


def test_module_level_imports_skip_function_bodies(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\ntry:\n    import numpy\nexcept ImportError:\n    pass\ndef f():\n    import PIL\n")
    assert module_level_packages(module) == {(1, "os"), (3, "numpy")}



# Each step, then the vision libraries it left in sys.modules (none, for every one of them).
NOTHING_HEAVY = """
import sys
VISION = sys.argv[1:]
def heavy(step):
    print(step, sorted(m for m in VISION if m in sys.modules))

import scheduler_boot.scheduler, scheduler_boot.sync
heavy("scheduler")
from app import create_app
from app.ops.health import _clip_model
app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
with app.app_context():
    _clip_model()  # what /healthz runs when the CLIP job is registered
app.test_client().get("/healthz")
heavy("web")
from jobs.worker import preload_jobs
preload_jobs()
heavy("default worker")
"""


def test_the_web_the_scheduler_and_other_workers_never_load_the_vision_libraries() -> None:
    done = subprocess.run(
        [sys.executable, "-c", NOTHING_HEAVY, *sorted(VISION_LIBRARIES)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["scheduler []", "web []", "default worker []"], done.stdout
