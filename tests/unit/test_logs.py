"""Log lines: JSON or text, one event per line, each with the current request id."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from flask import Flask

from app.logs import assign_request_id, configure_logging

pytestmark = pytest.mark.sanity

log = logging.getLogger("agented.test")


def ours(root: logging.Logger) -> list[logging.Handler]:
    return [h for h in root.handlers if getattr(h, "_agented", False)]


def test_json_line_parses_and_carries_fields_outside_a_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("json", "INFO")

    log.info("execution started", extra={"execution_id": "e1", "count": 2})

    (line,) = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert record["message"] == "execution started"
    assert record["level"] == "INFO"
    assert record["name"] == "agented.test"
    assert record["execution_id"] == "e1"
    assert record["count"] == 2
    assert record["request_id"] is None
    assert "time" in record


def test_json_line_inside_a_request_carries_its_request_id(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "INFO")

    with app.test_request_context(headers={"X-Request-ID": "req-42"}):
        assign_request_id()
        log.warning("slow client")

    record = json.loads(capsys.readouterr().err.splitlines()[-1])
    assert record["request_id"] == "req-42"
    assert record["level"] == "WARNING"


def test_app_log_of_a_request_carries_the_callers_request_id(
    app: Flask, app_config: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "INFO")
    db_path = Path(app_config["AGENTED_DB_PATH"])
    for leftover in db_path.parent.glob(db_path.name + "*"):
        leftover.unlink()

    app.test_client().get("/health/readiness", headers={"X-Request-ID": "probe-7"})

    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    (failed,) = [r for r in records if r["message"] == "readiness check failed"]
    assert failed["request_id"] == "probe-7"
    assert failed["level"] == "WARNING"
    assert "no such table" in failed["error"]


def test_text_line_is_message_then_key_value_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("text", "INFO")

    log.info("execution finished", extra={"execution_id": "e1", "exit_code": 0})

    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(
        " INFO agented.test: execution finished execution_id=e1 exit_code=0"
    )


def test_text_line_puts_the_request_id_first_among_fields(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("text", "INFO")

    with app.test_request_context(headers={"X-Request-ID": "req-9"}):
        assign_request_id()
        log.info("stream opened", extra={"execution_id": "e2"})

    line = capsys.readouterr().err.splitlines()[-1]
    assert line.endswith("stream opened request_id=req-9 execution_id=e2")


def test_configuring_twice_keeps_one_handler_and_the_last_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    others = [h for h in root.handlers if h not in ours(root)]

    configure_logging("text", "INFO")
    configure_logging("json", "DEBUG")
    log.debug("once")

    assert len(ours(root)) == 1
    assert [h for h in root.handlers if h not in ours(root)] == others
    assert root.level == logging.DEBUG
    (line,) = capsys.readouterr().err.splitlines()
    assert json.loads(line)["message"] == "once"


def test_records_below_the_level_are_dropped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("text", "WARNING")

    log.info("chatter")
    log.warning("degraded")

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "degraded" in lines[0]
