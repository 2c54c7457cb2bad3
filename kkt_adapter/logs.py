"""Log lines on stderr: one JSON object a line (or plain text), customer contacts masked.

Every line carries ``ts``, ``level``, ``logger``, ``message`` and, inside a request, the
``request_id`` the API answered with (``REQUEST_ID``, set by the request middleware). A
customer's e-mail or phone number must not reach a log file, whatever logged it: the formatter
masks them in the whole rendered line, exception text included.
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

# Letters of any script (\w is Unicode here): internationalized addresses (RFC 6531), such as
# иван@почта.рф, are customer contacts as much as ASCII ones.
_EMAIL = re.compile(r"([\w.%+\-])[\w.%+\-]*@([\w\-]+(?:\.[\w\-]+)+)")
# International form (+, 10-15 digits, separators allowed); the Russian national form (11
# digits from 7 or 8); any number after a key naming a phone (FFD tag 1008 holds the contact).
# A bare 10-digit number is left alone: it cannot be told from a fiscal sign or an INN.
_PHONE = re.compile(
    r"(?<![\w+])\+\d(?:[\s\-()]*\d){9,14}(?!\w)"
    r"|(?<![\w.])[78]\d{10}(?![\w.])"
    r"|(?<=phone)[\"']?\s*[:=]\s*[\"']?\+?\d(?:[\s\-()]*\d){5,14}"
    r"|(?<=1008)[\"']?\s*[:=]\s*[\"']?\+?\d(?:[\s\-()]*\d){5,14}",
    re.IGNORECASE,
)
_DIGIT = re.compile(r"\d")


def mask_contacts(text: str) -> str:
    """Mask e-mail addresses (``b***@example.com``) and phone numbers (all digits but the last
    two become ``*``) wherever they appear in ``text``."""
    if "@" in text:
        text = _EMAIL.sub(r"\1***@\2", text)
    return _PHONE.sub(_mask_phone, text)


def _mask_phone(match: re.Match[str]) -> str:
    found = match.group(0)
    digits = sum(c.isdigit() for c in found)
    seen = 0

    def star(digit: re.Match[str]) -> str:
        nonlocal seen
        seen += 1
        return digit.group(0) if seen > digits - 2 else "*"

    return _DIGIT.sub(star, found)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, message, request_id (in a request)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_contacts(record.getMessage()),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = mask_contacts(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


class TextFormatter(logging.Formatter):
    """The plain ``time level logger: message`` line, contacts masked."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = REQUEST_ID.get()
        if request_id is not None:
            line += f" [request_id={request_id}]"
        return mask_contacts(line)


def configure_logging(level: str, fmt: str = "json") -> None:
    """Send every logger (uvicorn's included) to stderr in ``fmt`` (``json`` or ``text``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
