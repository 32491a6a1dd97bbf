"""Per-request HTTP logs are DEBUG: absent at the operator's INFO, present at DEBUG.

httpx writes one INFO record per request ("HTTP Request: GET ... 200 OK"); at 100 objects that
was 24.6 KB/s of operator log (about 2 GB a day). ``configure_logging`` demotes them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from tensorgate.app import configure_logging
from tensorgate.settings import Settings


@pytest.fixture(autouse=True)
def _restore_levels() -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in ("", "httpx", "httpcore")]
    saved = [(lg, lg.level, list(lg.filters)) for lg in loggers]
    yield
    for lg, level, filters in saved:
        lg.setLevel(level)
        lg.filters[:] = filters


def _one_request() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="ok"))
    with httpx.Client(transport=transport) as client:
        assert client.get("http://127.0.0.1:9/apis").status_code == 200


def _request_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "httpx" and "HTTP Request" in r.getMessage()]


def test_request_lines_are_not_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    configure_logging(Settings(log_level="INFO"))
    caplog.set_level(logging.DEBUG)  # the capture handler takes anything the loggers let out
    _one_request()
    assert _request_records(caplog) == []


def test_request_lines_are_debug_records_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    configure_logging(Settings(log_level="DEBUG"))
    caplog.set_level(logging.DEBUG)
    _one_request()
    records = _request_records(caplog)
    assert len(records) == 1
    assert records[0].levelno == logging.DEBUG and records[0].levelname == "DEBUG"


def test_configuring_twice_adds_one_filter() -> None:
    configure_logging(Settings(log_level="DEBUG"))
    configure_logging(Settings(log_level="INFO"))
    kinds = [type(f).__name__ for f in logging.getLogger("httpx").filters]
    assert kinds.count("_RequestLinesAreDebug") == 1, kinds
