"""payops.logging: one JSON object a line, with the request id, every ``extra=`` field kept, and
``Masked`` secrets written as their mask wherever they stand."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from payops import logging as payops_logging
from payops.masked import MASK, Credentials, Masked


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(payops_logging.JsonFormatter())
    logger = logging.getLogger("payops.test_log_format")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def entries(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_extra_fields_are_kept_beside_the_standard_ones(lines: io.StringIO) -> None:
    log = logging.getLogger("payops.test_log_format")
    log.info(
        "refund %s of %s",
        "R-1",
        "ORD-7",
        extra={
            "operation": "refund",
            "amount": Decimal("5.000"),
            "attempt": 2,
            "refs": {"id": "P1"},
        },
    )
    token = payops_logging.request_id.set("abc123")
    try:
        log.warning("inside a request")
    finally:
        payops_logging.request_id.reset(token)
    first, second = entries(lines)
    assert first["message"] == "refund R-1 of ORD-7" and first["level"] == "INFO"
    assert first["logger"] == "payops.test_log_format" and first["request_id"] == "-"
    assert (first["operation"], first["amount"], first["attempt"], first["refs"]) == (
        "refund",
        "5.000",
        2,
        {"id": "P1"},
    )
    assert "T" in first["ts"] and first["ts"].endswith("+00:00")
    assert second["request_id"] == "abc123" and "operation" not in second
    # Nothing of LogRecord's own bookkeeping leaks in as a field.
    assert not {"args", "msg", "levelno", "pathname", "lineno", "thread"} & set(first)


def test_masked_values_are_masked_in_the_message_and_the_extra_fields(
    lines: io.StringIO,
) -> None:
    secret = "sk_live_0123456789"
    log = logging.getLogger("payops.test_log_format")
    log.error(
        "gateway said no with key %s",
        Masked(secret),
        extra={
            "api_key": Masked(secret),
            "credentials": Credentials({"secret_key": secret}),
            "nested": [{"token": Masked(secret)}],
        },
    )
    log.info("by name %(key)s", {"key": Masked(secret)})
    text = lines.getvalue()
    assert secret not in text
    first, second = entries(lines)
    assert first["message"] == f"gateway said no with key {MASK}"
    assert first["api_key"] == MASK and first["credentials"] == {"secret_key": MASK}
    assert first["nested"] == [{"token": MASK}]
    assert second["message"] == f"by name {MASK}"


def test_a_traceback_stays_inside_its_one_line(lines: io.StringIO) -> None:
    log = logging.getLogger("payops.test_log_format")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    [entry] = entries(lines)
    assert "RuntimeError: boom" in entry["exc"] and entry["message"] == "failed"


def test_uvicorn_loggers_reach_the_one_json_handler() -> None:
    config = payops_logging.uvicorn_log_config("DEBUG")
    assert config["root"]["handlers"] == [payops_logging.HANDLER]
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        assert config["loggers"][name] == {"handlers": [], "propagate": True}
    assert config["loggers"]["payops"]["level"] == "DEBUG"
    formatter = config["formatters"]["json"]["()"]
    module, _, name = formatter.rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name) is payops_logging.JsonFormatter
