"""SQL lives in repository modules: only they (and ``db/``, ``migrations/``) build statements.

A module that imports SQLAlchemy's statement builders (``select``, ``update``, ``text`` …) is
writing SQL. The few others that still do are listed with the reason, and must still need it.
"""

from __future__ import annotations

import ast

import pytest

from tests.unit.test_layers import SOURCE, module_name

STATEMENT_BUILDERS = frozenset(
    {
        "select",
        "update",
        "delete",
        "insert",
        "text",
        "exists",
        "union",
        "union_all",
        "literal",
        "literal_column",
        "bindparam",
        "case",
        "func",
        "and_",
        "or_",
        "not_",
        "Select",
        "Update",
        "Delete",
        "Insert",
    }
)
SQL_HOMES = ("payops.db", "payops.migrations")
EXCEPTIONS = {
    "payops.webhooks.outbox": (
        "the outbox and merchant-settings store itself: its functions are called inside the "
        "caller's transaction and are nothing but queries"
    ),
    "payops.api.serving": (
        "reads PostgreSQL's connection limits (SHOW) to size the pools before any model is used"
    ),
}


def writers_of_sql() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        module = module_name(path)
        if module.startswith(SQL_HOMES) or path.name.endswith("repository.py"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
                names = [a.name for a in node.names if a.name in STATEMENT_BUILDERS]
                if names:
                    found.setdefault(module, []).extend(names)
    return found


def test_only_repositories_build_sql() -> None:
    outside = {
        module: names for module, names in writers_of_sql().items() if module not in EXCEPTIONS
    }
    assert outside == {}, "move these queries into the package's repository.py"


@pytest.mark.parametrize("module", sorted(EXCEPTIONS))
def test_each_exception_still_builds_sql(module: str) -> None:
    assert module in writers_of_sql(), f"{module} builds no SQL now: remove the exception"
