"""The KKT emulator in its own process answers exactly as the in-process emulator does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kkt_adapter.device import EmulatedKkt, KktDevice
from kkt_adapter.device.emulator_process import CHILD_MODULE, EmulatorProcess
from kkt_adapter.device.wire import pack, read_frame, write_frame
from kkt_adapter.domain.money import Kopecks
from kkt_adapter.domain.shift_totals import CashKind
from kkt_adapter.errors import ConfigError, DeviceError, InsufficientCash, ShiftError

KEY = b"emulator-test-key"
EXIT_DEADLINE_S = 10.0


def receipt(receipt_id: str, total: int = 799000, type_code: int = 1) -> dict[str, Any]:
    return {
        "1054": type_code,
        "1020": total,
        "1192": receipt_id,
        "1059": [{"1030": "Оправа", "1079": total, "1023": 1, "1043": total, "1199": 11}],
        "1081": total,
    }


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has finished running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def wait_gone(pid: int, timeout: float = EXIT_DEADLINE_S) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def device(tmp_path: Path) -> Iterator[EmulatorProcess]:
    process = EmulatorProcess(tmp_path, key=KEY)
    yield process
    process.close()


@pytest.fixture
def local(tmp_path: Path, device: EmulatorProcess) -> Iterator[EmulatedKkt]:
    """The in-process emulator on the same device file, to compare answers with."""
    kkt = EmulatedKkt(tmp_path, key=KEY)
    yield kkt
    kkt.close()


def test_implements_the_device_protocol_in_a_running_child(tmp_path: Path) -> None:
    # How fast the child starts is measured by a benchmark, not asserted here.
    process = EmulatorProcess(tmp_path, key=KEY)
    try:
        typed: KktDevice = process
        assert typed.status().emulator is True
        assert process.fn == typed.status().fn and alive(process.pid)
    finally:
        process.close()


def test_results_equal_the_in_process_emulators(
    device: EmulatorProcess, local: EmulatedKkt
) -> None:
    printed = device.print_receipt("r1", receipt("r1"))
    assert printed.fd == 2 and printed.number_in_shift == 1  # FD 1 opened the shift
    assert local.find_document("r1") == printed == device.find_document("r1")
    assert local.print_receipt("r1", receipt("r1")) == printed  # fiscalized once
    second = local.print_receipt("r2", receipt("r2", 1050, 2))
    assert device.last_document() == second == local.last_document()
    assert device.find_document("missing") is None
    assert device.status() == local.status()
    assert device.x_report() == local.x_report()


def test_shift_reports_and_shift_errors(device: EmulatorProcess, local: EmulatedKkt) -> None:
    with pytest.raises(ShiftError) as err:
        device.x_report()
    assert err.value.details == {"reason": "shift_not_open"}
    assert err.value.code == "shift_state_conflict"
    opened = device.open_shift("Ivanova A.")
    assert (opened.kind, opened.shift, opened.fd, opened.closed_at) == ("open", 1, 1, None)
    assert opened.opened_at is not None and opened.opened_at.utcoffset() is not None
    with pytest.raises(ShiftError) as again:
        device.open_shift()
    assert again.value.details == {"reason": "shift_already_open", "shift": 1}
    device.print_receipt("s1", receipt("s1", 500))
    z = device.close_shift()
    assert (z.kind, z.shift, z.fd, z.receipts, z.totals["sale"]) == ("z", 1, 3, 1, 500)
    assert z.opened_at == opened.opened_at and z.closed_at is not None
    assert local.status().shift_open is False


def test_cash_operations_and_report_figures_cross_the_pipe(
    device: EmulatorProcess, local: EmulatedKkt
) -> None:
    done = device.cash_operation("OP1", CashKind.CASH_IN, Kopecks(1_000), "Ivanova A.")
    assert done == local.find_cash_operation("OP1") == device.find_cash_operation("OP1")
    assert device.find_cash_operation("OP2") is None
    with pytest.raises(InsufficientCash) as refused:
        device.cash_operation("OP2", CashKind.CASH_OUT, Kopecks(1_001), None)
    assert refused.value.details == {"drawer_cash": "10.00", "requested": "10.01"}
    assert device.x_report() == local.x_report()
    z = device.close_shift()
    assert z.summary is not None and z.summary.cash_in.amount == z.summary.drawer_cash == 1_000


@pytest.mark.parametrize(("fault", "flag"), [("out_of_paper", "paper"), ("offline", "online")])
def test_faults_refuse_with_the_same_reason(
    device: EmulatorProcess, local: EmulatedKkt, fault: str, flag: str
) -> None:
    device.set_fault(fault)
    with pytest.raises(DeviceError) as remote:
        device.print_receipt("f1", receipt("f1"))
    with pytest.raises(DeviceError) as here:
        local.print_receipt("f1", receipt("f1"))
    assert (remote.value.reason, remote.value.message) == (fault, here.value.message)
    assert remote.value.retry_after == here.value.retry_after == 5
    assert getattr(device.status(), flag) is False
    device.set_fault(None)
    assert device.print_receipt("f1", receipt("f1")).fd == 2


def test_refusals_and_misuse_keep_their_types(device: EmulatorProcess) -> None:
    with pytest.raises(DeviceError) as refused:
        device.print_receipt("x", receipt("other-id"))
    assert refused.value.reason == "invalid_document" and refused.value.retry_after is None
    with pytest.raises(ValueError, match="on_fire"):
        device.set_fault("on_fire")
    with pytest.raises(TypeError):  # not JSON: refused before it is sent
        device.print_receipt("y", {**receipt("y"), "1008": object()})
    assert device.print_receipt("y", receipt("y")).fd == 2  # the link is still in step


def test_confirm_many_and_confirm(device: EmulatorProcess) -> None:
    fds = [device.print_receipt(f"c{n}", receipt(f"c{n}")).fd for n in range(4)]
    assert device.status().unconfirmed_count == 4
    fn = device.status().fn
    device.confirm_many(fn, fds[:3])
    device.confirm_many(fn, [])
    device.confirm_many(fn, [999])  # unknown fds are ignored
    [entry] = device.journal(fds[2], 10)  # the journal travels over the link
    assert (entry.result, entry.confirmed) == (device.find_document("c3"), False)
    assert device.status().unconfirmed_count == 1
    device.confirm(fds[3])
    status = device.status()
    assert status.unconfirmed_count == 0 and status.oldest_unconfirmed_at is None


def test_concurrent_callers_are_served_one_at_a_time(device: EmulatorProcess) -> None:
    fds: list[int] = []
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for n in range(10):
                fds.append(device.print_receipt(f"t{worker}-{n}", receipt(f"t{worker}-{n}")).fd)
                device.status()
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "a caller hangs"
    assert errors == []
    assert sorted(fds) == list(range(2, 42))


def test_configuration_errors_surface_as_config_error(tmp_path: Path) -> None:
    first = EmulatorProcess(tmp_path, key=KEY, fn="9999078900001234")
    first.close()
    with pytest.raises(ConfigError) as mismatch:
        EmulatorProcess(tmp_path, key=KEY, fn="9999000000000009")
    assert "FN 9999078900001234, not 9999000000000009" in mismatch.value.message
    with pytest.raises(ConfigError, match="16 digits"):
        EmulatorProcess(tmp_path / "other", key=KEY, fn="12345")
    with pytest.raises(ConfigError, match="must not be empty"):
        EmulatorProcess(tmp_path / "other", key=b"")
    with pytest.raises(ConfigError, match="could not start"):
        EmulatorProcess(tmp_path / "other", key=KEY, tz="Mars/Olympus_Mons")


def test_a_child_that_cannot_start_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exited during start-up"):
        EmulatorProcess(tmp_path, key=KEY, python="/bin/false")
    with pytest.raises(ConfigError, match="cannot start"):
        EmulatorProcess(tmp_path, key=KEY, python=str(tmp_path / "no-such-python"))
    silent = tmp_path / "silent-python"
    silent.write_text("#!/bin/sh\nexec sleep 30\n")
    silent.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="did not start"):
        EmulatorProcess(tmp_path, key=KEY, python=str(silent), startup_timeout=0.3)
    assert time.monotonic() - started < 5


def test_a_killed_child_makes_every_call_offline(device: EmulatorProcess) -> None:
    device.print_receipt("k1", receipt("k1"))
    os.kill(device.pid, signal.SIGKILL)
    calls = [
        lambda: device.print_receipt("k2", receipt("k2")),
        lambda: device.find_document("k1"),
        device.last_document,
        device.status,
        device.open_shift,
        device.close_shift,
        device.x_report,
        lambda: device.confirm(1),
        lambda: device.confirm_many("1", [1]),
        lambda: device.journal(0, 1),
        lambda: device.set_fault(None),
    ]
    for call in calls:
        with pytest.raises(DeviceError) as err:
            call()
        assert err.value.reason == "offline"
        assert "emulator process exited" in err.value.message
    device.close()  # no error: the child is gone already
    assert not alive(device.pid)


def test_close_leaves_no_child_process(tmp_path: Path) -> None:
    process = EmulatorProcess(tmp_path, key=KEY)
    pid = process.pid
    process.print_receipt("c1", receipt("c1"))
    process.close()
    process.close()  # idempotent
    assert not alive(pid)
    with pytest.raises(DeviceError) as err:
        process.status()
    assert err.value.reason == "offline"


def ignored_signals(pid: int) -> int:
    """The mask of signals ``pid`` ignores (bit ``1 << (n - 1)`` is signal ``n``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no SigIgn line for process {pid}")


def test_the_child_ignores_terminal_and_service_signals(device: EmulatorProcess) -> None:
    # SIGINT/SIGTERM to the process group must not take the device away mid-shutdown.
    mask = ignored_signals(device.pid)
    assert mask & (1 << (signal.SIGINT - 1)), "SIGINT is not ignored"
    assert mask & (1 << (signal.SIGTERM - 1)), "SIGTERM is not ignored"
    os.kill(device.pid, signal.SIGTERM)
    os.kill(device.pid, signal.SIGINT)
    # The child has to run to answer, so a fatal signal would have ended it by then.
    assert device.status().emulator and alive(device.pid)


def test_the_child_finishes_the_request_in_hand_then_exits_at_end_of_input(
    tmp_path: Path,
) -> None:
    config = {
        "data_dir": str(tmp_path),
        "key": KEY.hex(),
        "fn": None,
        "registration_number": None,
        "print_delay_ms": 200,
        "auto_open_shift": True,
        "shift_max_hours": 24,
        "offline_limit_days": 30,
        "tz": "Europe/Moscow",
        "strict": True,
    }
    child = subprocess.Popen(
        [sys.executable, "-m", CHILD_MODULE], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert child.stdin is not None and child.stdout is not None
    write_frame(child.stdin, pack(config))
    assert "fn" in read_frame(child.stdout)["ready"]
    write_frame(
        child.stdin, pack({"id": 1, "method": "print_receipt", "args": ["e1", receipt("e1")]})
    )
    child.stdin.close()  # the adapter is gone while the print is in hand
    assert child.wait(timeout=EXIT_DEADLINE_S) == 0
    assert read_frame(child.stdout)["ok"]["fd"] == 2
    child.stdout.close()
    kkt = EmulatedKkt(tmp_path, key=KEY)
    found = kkt.find_document("e1")
    assert found is not None and found.fd == 2  # the print it answered is in the state file
    kkt.close()


def test_the_child_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from kkt_adapter.device.emulator_process import EmulatorProcess\n"
        f"device = EmulatorProcess({str(tmp_path)!r}, key=b'k')\n"
        "print(device.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    assert alive(child_pid)
    parent.kill()
    parent.wait(timeout=EXIT_DEADLINE_S)
    parent.stdout.close()
    assert wait_gone(child_pid), "the emulator outlived the adapter"
