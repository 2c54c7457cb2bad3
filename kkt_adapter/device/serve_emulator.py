"""The KKT emulator as its own process: ``python -m kkt_adapter.device.serve_emulator``.

Started by ``EmulatorProcess``, which it answers over stdin/stdout (``kkt_adapter.device.wire``).
The first frame on stdin is the configuration: the fiscal sign key travels there rather than
on the command line, where any local user could read it. Log lines go to the inherited stderr.

It serves one request at a time and exits when stdin ends (the adapter closed it, exited or
was killed), after finishing the request in hand: a print whose COMMIT happened stays done.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from kkt_adapter.device.emulator import EmulatedKkt
from kkt_adapter.device.wire import error_to_wire, pack, read_frame, write_frame
from kkt_adapter.errors import KktAdapterError

log = logging.getLogger("kkt_adapter.device.emulator_process")

METHODS = frozenset(
    {
        "print_receipt",
        "find_document",
        "journal",
        "last_document",
        "status",
        "open_shift",
        "close_shift",
        "x_report",
        "cash_operation",
        "find_cash_operation",
        "confirm",
        "confirm_many",
        "set_fault",
        "repeat_prints",
    }
)


def main() -> int:
    """Serve the adapter until stdin ends or it says close; 1 if the device cannot start."""
    # Ctrl-C and a service manager's SIGTERM reach the whole process group; the adapter shuts
    # down in order and closes the link, so this process follows it rather than the signal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    requests = sys.stdin.buffer
    answers = os.fdopen(os.dup(1), "wb")
    # A stray print() must land in the log, never inside the frame stream.
    os.dup2(2, 1)
    try:
        kkt = _start(requests, answers)
    except EOFError:
        return 1
    if kkt is None:
        return 1
    try:
        _serve(kkt, requests, answers)
    finally:
        kkt.close()
    return 0


def _start(requests: IO[bytes], answers: IO[bytes]) -> EmulatedKkt | None:
    """Build the emulator from the configuration frame; answer ready (with the FN) or error."""
    config = read_frame(requests)
    try:
        kkt = EmulatedKkt(
            Path(config["data_dir"]),
            key=bytes.fromhex(config["key"]),
            fn=config["fn"],
            registration_number=config["registration_number"],
            print_delay_ms=config["print_delay_ms"],
            auto_open_shift=config["auto_open_shift"],
            shift_max_hours=config["shift_max_hours"],
            offline_limit_days=config["offline_limit_days"],
            tz=ZoneInfo(config["tz"]),
            strict=config["strict"],
        )
        fn = kkt.status().fn
    except Exception as exc:
        write_frame(answers, pack({"id": 0, "error": error_to_wire(exc)}))
        return None
    write_frame(answers, pack({"id": 0, "ready": {"fn": fn}}))
    return kkt


def _serve(kkt: EmulatedKkt, requests: IO[bytes], answers: IO[bytes]) -> None:
    while True:
        try:
            request = read_frame(requests)
        except EOFError:
            return
        if request["method"] == "close":
            return
        answer = _handle(kkt, request)
        try:
            write_frame(answers, answer)
        except BrokenPipeError:
            return  # the adapter is gone; the request itself is complete


def _handle(kkt: EmulatedKkt, request: dict[str, Any]) -> bytes:
    """Run one request; the packed answer, an error answer for any failure."""
    request_id, method = request["id"], request["method"]
    try:
        if method not in METHODS:
            raise ValueError(f"unknown KKT method {method!r}")
        return pack({"id": request_id, "ok": getattr(kkt, method)(*request["args"])})
    except (KktAdapterError, ValueError) as exc:
        # Refusals and misuse are answers, not failures of the emulator: no traceback.
        return pack({"id": request_id, "error": error_to_wire(exc)})
    except Exception as exc:  # includes an answer orjson cannot encode
        log.exception("KKT emulator failure in %s", method)
        return pack({"id": request_id, "error": error_to_wire(exc)})


if __name__ == "__main__":
    sys.exit(main())
