"""The import rule of ``src/payops``: packages form layers, and a package imports only from its own
layer or the layers below it, with no cycle between packages.

A "package" is the first name under ``payops``: a subpackage (``payops/operations/``) or a top-level
module (``payops/audit.py``). Every import counts: at module level, inside a function (lazy) and
under ``if TYPE_CHECKING:``. The few that break the rule are listed in ``EXCEPTIONS`` with the
reason; each must be typing-only or lazy (so no import cycle runs), and must still exist.

The same order is written down in ``docs/architecture.md`` ("Layers").
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src" / "payops"

# Lowest first. A package may import from its own layer and from every layer below it.
LAYERS: list[tuple[str, ...]] = [
    # Plain values and rules: no I/O, no database, no web.
    (
        "money",
        "domain",
        "errors",
        "masked",
        "ids",
        "exact_json",
        "config",
        "logging",
        "crashpoints",
        "background",
    ),
    # The database (models, engine, migrations) and the audit rows written into it.
    ("db", "migrations", "audit"),
    # One gateway's protocol each; never the database.
    ("connectors",),
    # Gateway configurations, their encrypted credentials and the connector built for each.
    ("gateways",),
    # Authentication and the outgoing webhooks (outbox, signing, delivery, SSRF rules).
    ("auth", "webhooks"),
    # What every request and command is handed (AppContext), stored secrets, and the HTTP
    # helpers every endpoint shares (request reading, response shapes, dependencies).
    ("context", "stored_secrets", "web"),
    # Parent transactions and payment attempts.
    ("transactions",),
    # What is done to a transaction: operations, inquiry, checkout (and payment methods).
    ("operations", "inquiry", "checkout"),
    # Incoming gateway notifications: they reconcile operations and inquire payments.
    ("notifications",),
    # The back office, then the app that assembles every router, then the command line.
    ("dashboard",),
    ("api",),
    ("cli",),
]

TYPING_ONLY = "typing-only"
LAZY = "lazy"
# (importing module, imported module) → why the rule does not hold there.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("payops.webhooks.delivery", "payops.context"): (
        "AppContext is built from webhooks.outbox (the merchant-settings cache); delivery only "
        "names its type"
    ),
    ("payops.webhooks.before_redirect", "payops.context"): (
        "AppContext is built from webhooks.outbox; the before-redirect try only names its type"
    ),
    ("payops.auth.accounts", "payops.context"): (
        "AppContext is built from auth.service (the authenticator); account changes only name "
        "its type"
    ),
}


@dataclass(frozen=True)
class Edge:
    module: str  # the importing module, e.g. payops.operations.service
    target: str  # the imported module, e.g. payops.transactions.lookup
    line: int
    kind: str  # "top", LAZY or TYPING_ONLY

    @property
    def source_package(self) -> str:
        return package_of(self.module)

    @property
    def target_package(self) -> str:
        return package_of(self.target)

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target} ({self.kind})"


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST, module: str, is_package: bool, kind: str) -> list[Edge]:
    """Every payops import under ``node``, with where it sits (top level, lazy, typing-only)."""
    found: list[Edge] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import):
            found += [
                Edge(module, alias.name, child.lineno, kind)
                for alias in child.names
                if alias.name.split(".")[0] == "payops"
            ]
        elif isinstance(child, ast.ImportFrom):
            if child.level:  # relative: resolve against this module's package
                base = module.split(".")
                base = base[: len(base) - child.level + (1 if is_package else 0)]
                target = ".".join(base + ([child.module] if child.module else []))
            else:
                target = child.module or ""
            if target.split(".")[0] != "payops":
                continue
            if target == "payops" or not child.module:  # from payops import audit / from . import x
                found += [
                    Edge(module, f"{target}.{alias.name}", child.lineno, kind)
                    for alias in child.names
                ]
            else:
                found.append(Edge(module, target, child.lineno, kind))
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                found += _imports(
                    ast.Module(body=[stmt], type_ignores=[]), module, is_package, TYPING_ONLY
                )
            for stmt in child.orelse:
                found += _imports(
                    ast.Module(body=[stmt], type_ignores=[]), module, is_package, kind
                )
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            found += _imports(child, module, is_package, LAZY if kind == "top" else kind)
        else:
            found += _imports(child, module, is_package, kind)
    return found


def all_imports() -> list[Edge]:
    edges: list[Edge] = []
    for path in sorted(SOURCE.rglob("*.py")):
        module = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges += _imports(tree, module, path.name == "__init__.py", "top")
    return edges


def packages() -> set[str]:
    names = {path.stem for path in SOURCE.glob("*.py") if path.stem != "__init__"}
    names |= {path.parent.name for path in SOURCE.glob("*/__init__.py")}
    return names


LAYER_OF = {package: index for index, layer in enumerate(LAYERS) for package in layer}


def cross_package(edges: list[Edge]) -> list[Edge]:
    return [
        e
        for e in edges
        if e.source_package != e.target_package
        and e.module != "payops"
        and (e.module, e.target) not in EXCEPTIONS
    ]


def test_every_package_has_one_layer() -> None:
    listed = [package for layer in LAYERS for package in layer]
    assert len(listed) == len(set(listed)), "a package is listed in two layers"
    assert packages() - set(listed) == set(), "add the new package to LAYERS (and the docs)"
    assert set(listed) - packages() == set(), "LAYERS names a package that no longer exists"


def test_no_package_imports_from_a_layer_above_its_own() -> None:
    upward = [
        str(e)
        for e in cross_package(all_imports())
        if LAYER_OF[e.target_package] > LAYER_OF[e.source_package]
    ]
    assert upward == []


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for edge in cross_package(all_imports()):
        graph[edge.source_package].add(edge.target_package)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(package: str, path: list[str]) -> None:
        state[package] = 1
        for target in sorted(graph[package]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[package] = 2

    for package in sorted(packages()):
        if package not in state:
            visit(package, [package])
    assert cycles == []


@pytest.mark.parametrize(("module", "target"), sorted(EXCEPTIONS))
def test_each_exception_is_still_needed_and_never_runs_at_import(module: str, target: str) -> None:
    edges = [e for e in all_imports() if (e.module, e.target) == (module, target)]
    assert edges, f"{module} no longer imports {target}: remove the exception"
    assert all(e.kind in (TYPING_ONLY, LAZY) for e in edges), [str(e) for e in edges]


def test_the_checker_sees_lazy_and_typing_only_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from payops.money import parse_amount\n"
        "if TYPE_CHECKING:\n"
        "    from payops.context import AppContext\n"
        "def f():\n"
        "    from payops.api.app import create_app\n"
        "from . import sibling\n"
    )
    edges = _imports(ast.parse(source), "payops.domain.example", False, "top")
    assert [(e.target, e.kind) for e in edges] == [
        ("payops.money", "top"),
        ("payops.context", TYPING_ONLY),
        ("payops.api.app", LAZY),
        ("payops.domain.sibling", "top"),
    ]
    upward = [
        e for e in cross_package(edges) if LAYER_OF[e.target_package] > LAYER_OF[e.source_package]
    ]
    assert [e.target for e in upward] == ["payops.context", "payops.api.app"]


def test_the_architecture_page_shows_these_layers() -> None:
    page = (SOURCE.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = page.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    documented = [tuple(cell.strip(" `") for cell in row.split("|")[2].split(",")) for row in rows]
    assert documented == LAYERS
