"""The places a new gateway must appear follow the registry: the CLI help lists every connector,
and the README's and docs/gateways.md's gateway tables have one row per connector whose
columns match what the connector declares."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from payops.cli.main import app
from payops.connectors.base import Connector
from payops.connectors.registry import CONNECTORS, connector_class

ROOT = Path(__file__).resolve().parent.parent


def table_rows(markdown: str, heading: str) -> dict[str, list[str]]:
    """``{connector: [cells after the first]}`` of the first table under ``heading``."""
    section = markdown.split(heading, 1)[1]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        name = re.match(r"`([a-z0-9_]+)`", cells[0])
        if name:
            rows[name.group(1)] = cells[1:]
    return rows


def answers(cell: str) -> bool:
    return not (cell.startswith("—") or cell.startswith("no"))


def test_cli_help_names_every_registered_connector() -> None:
    result = CliRunner().invoke(app, ["gateway", "add", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    for name in CONNECTORS:
        assert name in result.output


def test_readme_gateway_table_matches_the_registry() -> None:
    rows = table_rows((ROOT / "README.md").read_text(), "## Gateways")
    assert list(rows) == list(CONNECTORS)
    for name, (payments, capture, refund, void, inquiry, notifications) in rows.items():
        cls = connector_class(name)
        assert answers(payments) is cls.takes_payments, name
        for operation, cell in (
            ("capture", capture),
            ("refund", refund),
            ("void", void),
            ("inquiry", inquiry),
        ):
            assert answers(cell) is (operation in cls.capabilities), (name, operation)
        notifies = cls.parse_notification is not Connector.parse_notification
        assert answers(notifications) is notifies, name


def test_gateways_doc_support_table_matches_the_registry() -> None:
    rows = table_rows((ROOT / "docs" / "gateways.md").read_text(), "## Support")
    assert list(rows) == list(CONNECTORS)
    for name, cells in rows.items():
        cls = connector_class(name)
        capture, refund, void, inquiry, _notifications, credentials = cells[:6]
        for operation, cell in (
            ("capture", capture),
            ("refund", refund),
            ("void", void),
            ("inquiry", inquiry),
        ):
            assert answers(cell) is (operation in cls.capabilities), (name, operation)
        for key in cls.required_credentials:
            assert f"`{key}`" in credentials, (name, key)
