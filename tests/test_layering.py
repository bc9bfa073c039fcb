"""The packages' dependency direction (docs/architecture.md), checked on the source.

`primitives` <- `evonorm_search` <- `workers`; `db` depends on nothing of ours (nor on
torch); workers never import `db`; outside `evonorm_search/cli/` (which composes
everything), evonorm_search imports `workers` only where it cannot run at import time:
inside a function (e.g. `rerank.evaluate_on_test`) or under `if TYPE_CHECKING:`.
Every module is parsed with `ast`, so an import hidden in a function counts too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = ("primitives", "evonorm_search", "workers", "db", "tests", "benchmarks")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted and absolute
    line: int
    runs_on_import: bool  # False inside a function or under `if TYPE_CHECKING:`

    def __str__(self) -> str:
        where = "" if self.runs_on_import else " (deferred)"
        return f"{self.module}:{self.line} imports {self.target}{where}"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(package: str) -> dict[str, Path]:
    paths = sorted(p for p in (REPO / package).rglob("*.py") if "__pycache__" not in p.parts)
    return {module_name(path): path for path in paths}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_module(dotted: str) -> bool:
    path = REPO.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path, module: str | None = None) -> list[Import]:
    """Every import statement of the file at `path` (module `module`, by default the one
    that path is in this repository), with relative imports made absolute."""
    module = module or module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, runs: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            runs = False
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, runs)
            return
        if isinstance(node, ast.Import):
            found.extend(Import(module, alias.name, node.lineno, runs) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(Import(module, target, node.lineno, runs))
            # `from db import store` imports the module db.store
            found.extend(
                Import(module, f"{target}.{alias.name}", node.lineno, runs)
                for alias in node.names
                if _is_module(f"{target}.{alias.name}")
            )
        for child in ast.iter_child_nodes(node):
            visit(child, runs)

    visit(ast.parse(path.read_text(), str(path)), True)
    return found


def top(target: str) -> str:
    return target.split(".")[0]


# (package checked, subpackage exempt, packages it must not import, only imports that run on import?)
RULES = [
    ("db", None, {"evonorm_search", "workers", "primitives", "tests", "benchmarks", "torch"}, False),
    ("primitives", None, {"evonorm_search", "workers", "db", "tests", "benchmarks"}, False),
    ("workers", None, {"db", "tests", "benchmarks"}, False),
    ("evonorm_search", "evonorm_search.cli", {"workers"}, True),
    ("evonorm_search", None, {"tests", "benchmarks"}, False),
]


@pytest.mark.parametrize(("package", "exempt", "forbidden", "on_import_only"), RULES,
                         ids=[f"{r[0]}-not-{'-'.join(sorted(r[2]))}" for r in RULES])
def test_dependencies_point_one_way(
    package: str, exempt: str | None, forbidden: set[str], on_import_only: bool
) -> None:
    modules = package_modules(package)
    assert modules, f"no modules found under {package}/"
    violations = [
        str(found)
        for name, path in modules.items()
        if exempt is None or not (name == exempt or name.startswith(exempt + "."))
        for found in imports_of(path)
        if top(found.target) in forbidden and (found.runs_on_import or not on_import_only)
    ]
    assert not violations, "\n".join(violations)


def test_db_modules_import_each_other_without_a_cycle() -> None:
    """store, engine, migrations, rerank, ...: a tree of imports, TYPE_CHECKING ones included."""
    modules = package_modules("db")
    graph = {
        name: sorted({i.target for i in imports_of(path) if i.target in modules and i.target != name})
        for name, path in modules.items()
    }
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in graph[name]:
            assert state.get(target) != "open", "import cycle: " + " -> ".join([*trail, name, target])
            if target not in state:
                visit(target, [*trail, name])
        state[name] = "done"

    for name in graph:
        if name not in state:
            visit(name, [])


def test_importing_db_loads_nothing_else_of_ours() -> None:
    """The same, at run time: a fresh interpreter that imports every db module."""
    names = sorted(package_modules("db"))
    script = (
        f"import sys\nfor name in {names!r}: __import__(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {OURS + ('torch',)!r} "
        "and m.split('.')[0] != 'db'))"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_the_checker_sees_deferred_and_relative_imports(tmp_path: Path) -> None:
    """The parser itself: function-level and TYPE_CHECKING imports are deferred, relative
    ones resolve against the package."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import store\n"
        "from .models import Base\n"
        "if TYPE_CHECKING:\n    import workers.evaluate\n"
        "def f():\n    from evonorm_search.task import EvalResult\n"
    )
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    found = {(i.target, i.runs_on_import) for i in imports_of(probe, "db.probe")}
    assert ("db.store", True) in found and ("db.models", True) in found
    assert ("workers.evaluate", False) in found and ("evonorm_search.task", False) in found
