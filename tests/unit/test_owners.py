"""Owner liveness on a data dir: a lock held for a process's life, released by its death."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from kkt_adapter.buffer.owners import Owners


def test_an_owner_is_alive_while_its_process_holds_the_lock(tmp_path: Path) -> None:
    mine = Owners(tmp_path, "n1")
    me = mine.claim()
    other = Owners(tmp_path, "n1")
    other.claim()
    assert other.alive(me) and mine.alive(me) and me.startswith("n1:")
    mine.release()
    assert not other.alive(me)
    here = socket.gethostname()
    assert not other.alive(f"n1:{here}:123:abcdef")  # never existed on this host
    assert other.alive("n1:another-host:123:abcdef")  # another host's: cannot tell
    assert other.alive("A") and not other.alive(None)  # no owner id: cannot tell; no owner
    other.release()


def test_an_owner_killed_with_sigkill_is_dead_at_once(tmp_path: Path) -> None:
    script = (
        "import sys, time; from pathlib import Path;"
        "from kkt_adapter.buffer.owners import Owners;"
        f"print(Owners(Path({str(tmp_path)!r}), 'n1').claim(), flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    owner = child.stdout.readline().strip()
    watcher = Owners(tmp_path, "n1")
    watcher.claim()
    try:
        assert watcher.alive(owner)
        child.kill()
        child.wait(timeout=10)
        assert not watcher.alive(owner)
    finally:
        watcher.release()
        child.kill()
