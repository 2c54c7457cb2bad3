"""The ATOL driver library as a transport for JSON tasks (``KKT_DEVICE=atol-lib``).

The vendor's Python binding (``libfptr10.py``, shipped with driver v10, not on PyPI) runs one
task per synchronous ``processJson()`` call on the handle: ``setParam(LIBFPTR_PARAM_JSON_DATA,
task)``, ``processJson()`` (0, or -1 with ``errorCode()``/``errorDescription()``), then the
result from ``getParamString(LIBFPTR_PARAM_JSON_DATA)``. There is no queue and no uuid: the
transport keeps each task's outcome by the caller's uuid for the life of the process, so the
device's logic is the same as over the web server, and after a restart it finds receipts in
the FN's archive instead. The tasks the mapping names ``checkDocumentClosed`` and
``cancelReceipt`` are the library's methods of those names, not JSON tasks.

Only the binding's calls named here are used, through the ``Binding`` protocol; tests run them
against a fake that executes the tasks on the KKT emulator's core, because the vendor library
cannot be installed here (docs/atol.md).
"""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol

from kkt_adapter.device.atol.mapping import device_error
from kkt_adapter.device.atol.web import OutcomeUnknown, TaskState

JSON_DATA = "LIBFPTR_PARAM_JSON_DATA"
DOCUMENT_CLOSED = "LIBFPTR_PARAM_DOCUMENT_CLOSED"
DOCUMENT_PRINTED = "LIBFPTR_PARAM_DOCUMENT_PRINTED"


class Binding(Protocol):
    """The calls of the vendor's ``IFptr`` handle this transport makes."""

    def setParam(self, param: int, value: str) -> None: ...

    def processJson(self) -> int: ...

    def getParamString(self, param: int) -> str: ...

    def getParamBool(self, param: int) -> bool: ...

    def checkDocumentClosed(self) -> int: ...

    def cancelReceipt(self) -> int: ...

    def errorCode(self) -> int: ...

    def errorDescription(self) -> str: ...

    def close(self) -> int: ...


class AtolLibTransport:
    """JSON tasks through the driver library's ``processJson`` (see the module docstring)."""

    settles_open_documents = True
    """The device checks for a document a power loss left open when it starts (the web server
    does that itself)."""

    def __init__(self, fptr: Binding, constants: Any) -> None:
        self._fptr = fptr
        self._constants = constants  # the binding's IFptr class: its LIBFPTR_* numbers
        self._lock = threading.Lock()  # one handle: one call at a time
        self._done: dict[str, TaskState] = {}

    def submit(self, uuid: str, task: dict[str, Any]) -> bool:
        """Run ``task`` now (the library has no queue); False if ``uuid`` ran already."""
        if uuid in self._done:
            return False
        with self._lock:
            self._done[uuid] = self._process(task)
        return True

    def state(self, uuid: str) -> TaskState | None:
        return self._done.get(uuid)

    def wait(self, uuid: str) -> dict[str, Any]:
        state = self._done.get(uuid)
        if state is None:
            raise OutcomeUnknown(f"no task {uuid} ran in this process")
        if state.status == "ready":
            return state.result or {}
        raise device_error({"code": state.error_code or 0, "description": state.error_text})

    def close(self) -> None:
        with self._lock:
            self._fptr.close()

    def _process(self, task: dict[str, Any]) -> TaskState:
        kind = task.get("type")
        if kind == "checkDocumentClosed":
            return self._check_document_closed()
        if kind == "cancelReceipt":
            return self._call(self._fptr.cancelReceipt, {})
        self._fptr.setParam(self._param(JSON_DATA), json.dumps(task, ensure_ascii=False))
        if self._fptr.processJson() < 0:
            return self._failed()
        text = self._fptr.getParamString(self._param(JSON_DATA))
        try:
            result = json.loads(text) if text else {}
        except ValueError as exc:
            raise OutcomeUnknown(f"the driver's answer is not JSON: {text[:200]!r}") from exc
        return TaskState("ready", result if isinstance(result, dict) else {}, None, "")

    def _check_document_closed(self) -> TaskState:
        if self._fptr.checkDocumentClosed() < 0:
            return self._failed()
        closed = self._fptr.getParamBool(self._param(DOCUMENT_CLOSED))
        printed = self._fptr.getParamBool(self._param(DOCUMENT_PRINTED))
        return TaskState("ready", {"documentClosed": closed, "documentPrinted": printed}, None, "")

    def _call(self, method: Any, result: dict[str, Any]) -> TaskState:
        if method() < 0:
            return self._failed()
        return TaskState("ready", result, None, "")

    def _failed(self) -> TaskState:
        return TaskState("error", None, self._fptr.errorCode(), self._fptr.errorDescription())

    def _param(self, name: str) -> int:
        value: int = getattr(self._constants, name)
        return value
