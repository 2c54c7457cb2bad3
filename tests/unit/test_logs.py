"""JSON log lines, the request id in them, and masking of customer contacts."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from kkt_adapter.logs import REQUEST_ID, JsonFormatter, TextFormatter, mask_contacts


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("buyer@example.com", "b***@example.com"),
        ("sent to ivan.petrov+shop@mail.example.ru.", "sent to i***@mail.example.ru."),
        ("иван@почта.рф", "и***@почта.рф"),
        ("to Иван.Петров@example.com, then", "to И***@example.com, then"),
        ("{'email': 'ivan@пример.испытание'}", "{'email': 'i***@пример.испытание'}"),
        ("kunde.müller@bücher.de", "k***@bücher.de"),
        ("+79161234567", "+*********67"),
        ("call +7 (916) 123-45-67 now", "call +* (***) ***-**-67 now"),
        ("89161234567", "*********67"),
        ("{'phone': '9161234567'}", "{'phone': '********67'}"),
        ('{"1008": "9161234567"}', '{"1008": "********67"}'),
    ],
)
def test_contacts_are_masked(text: str, masked: str) -> None:
    assert mask_contacts(text) == masked


def test_fiscal_numbers_and_ids_are_left_alone() -> None:
    text = "FN 9999078900001234 FD 42 FP 2740183641 id 01JDQ3V7C8X2K9PA at 1764000000000"
    assert mask_contacts(text) == text


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("kkt_adapter.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream, handler
    logger.removeHandler(handler)


def test_json_lines_have_the_fields_and_mask_contacts(
    captured: tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]],
) -> None:
    logger, stream, handler = captured
    handler.setFormatter(JsonFormatter())
    logger.warning("receipt for %s / %s", "buyer@example.com", "+79161234567")
    token = REQUEST_ID.set("req-42")
    try:
        logger.info("inside a request")
    finally:
        REQUEST_ID.reset(token)
    try:
        raise ValueError("bad contact buyer@example.com")
    except ValueError:
        logger.exception("failed")
    lines = stream.getvalue().splitlines()
    first, second, third = (json.loads(line) for line in lines)
    assert first.keys() == {"ts", "level", "logger", "message"}
    assert first["level"] == "warning" and first["logger"] == "kkt_adapter.test_logs"
    assert first["message"] == "receipt for b***@example.com / +*********67"
    assert first["ts"].endswith("+00:00")
    assert second["request_id"] == "req-42"
    assert "b***@example.com" in third["exception"] and "buyer@" not in third["exception"]


def test_text_lines_are_masked_too(
    captured: tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]],
) -> None:
    logger, stream, handler = captured
    handler.setFormatter(TextFormatter())
    logger.warning("mail %s", "buyer@example.com")
    line = stream.getvalue().strip()
    assert line.endswith("WARNING kkt_adapter.test_logs: mail b***@example.com")
