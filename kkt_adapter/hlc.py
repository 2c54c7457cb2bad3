"""Hybrid logical clock (Kulkarni et al., 2014).

A stamp is (wall milliseconds, logical counter, node id). ``now`` never returns a stamp lower
than one it returned before or merged in, even when the wall clock steps back; the buffer
persists the last stamp so this also holds across restarts (promise I5).

A stamp from another node is merged only within a maximum offset ahead of the local wall
clock (``merge_remote``): one OFD answer stamped in the year 2286 would otherwise carry this
clock there for good, since it never goes back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

WallClock = Callable[[], int]
"""Returns the wall clock in milliseconds since the epoch."""


def system_wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, order=True)
class HlcStamp:
    """One hybrid logical clock reading; orders by (wall_ms, counter, node)."""

    wall_ms: int
    counter: int
    node: str

    def __str__(self) -> str:
        return f"{self.wall_ms:013d}.{self.counter:05d}.{self.node}"

    @classmethod
    def parse(cls, text: str) -> HlcStamp:
        """Inverse of ``str()``; raises ``ValueError`` on anything else."""
        wall, counter, node = text.split(".", 2)
        if not (wall.isdigit() and counter.isdigit() and node):
            raise ValueError(f"not an HLC stamp: {text!r}")
        return cls(int(wall), int(counter), node)

    def as_dict(self) -> dict[str, int | str]:
        return {"wall_ms": self.wall_ms, "counter": self.counter, "node": self.node}


class HybridClock:
    """A node's hybrid logical clock; safe to use from several threads."""

    def __init__(
        self, node: str, *, last: HlcStamp | None = None, wall: WallClock = system_wall_ms
    ) -> None:
        self.node = node
        self._wall = wall
        self._last_wall = last.wall_ms if last else 0
        self._last_counter = last.counter if last else 0
        self._lock = threading.Lock()

    @property
    def last(self) -> HlcStamp:
        return HlcStamp(self._last_wall, self._last_counter, self.node)

    def now(self) -> HlcStamp:
        """A stamp for a local event, greater than every stamp seen so far."""
        with self._lock:
            return self._now()

    def _now(self) -> HlcStamp:
        physical = self._wall()
        if physical > self._last_wall:
            self._last_wall, self._last_counter = physical, 0
        else:
            self._last_counter += 1
        return self.last

    def merge(self, remote: HlcStamp) -> HlcStamp:
        """Take in a stamp received from another node (e.g. the OFD's answer)."""
        with self._lock:
            return self._merge(remote)

    def merge_remote(self, remote: HlcStamp, *, max_offset_ms: int) -> HlcStamp | None:
        """``merge`` a stamp from another host, unless it is more than ``max_offset_ms`` ahead
        of the local wall clock: then it is refused (logged, not adopted) and ``None``."""
        with self._lock:
            ahead = remote.wall_ms - self._wall()
            if ahead > max_offset_ms:
                log.warning(
                    "remote clock stamp %s is %d s ahead of the local clock (at most %d s):"
                    " not adopted",
                    remote,
                    ahead // 1000,
                    max_offset_ms // 1000,
                )
                return None
            return self._merge(remote)

    def _merge(self, remote: HlcStamp) -> HlcStamp:
        physical = self._wall()
        top = max(physical, self._last_wall, remote.wall_ms)
        if top == self._last_wall == remote.wall_ms:
            counter = max(self._last_counter, remote.counter) + 1
        elif top == self._last_wall:
            counter = self._last_counter + 1
        elif top == remote.wall_ms:
            counter = remote.counter + 1
        else:
            counter = 0
        self._last_wall, self._last_counter = top, counter
        return self.last


def stamp_between(lower: HlcStamp | None, upper: HlcStamp, node: str) -> HlcStamp | None:
    """A stamp strictly between ``lower`` and ``upper`` (``None``: no lower bound), or ``None``
    if there is none to make.

    For a document recorded late (its process died between the print and the record) whose
    FD neighbours were stamped already: its stamp must fall between theirs for HLC order to
    stay FD order (I5). Tried in order: one counter step above ``lower`` (or one millisecond
    below ``upper``), then ``lower``'s node with a ``~`` appended (sorts after it).
    """
    base = lower or HlcStamp(max(upper.wall_ms - 1, 0), 0, node)
    for candidate in (
        HlcStamp(base.wall_ms, base.counter + 1, node) if lower else base,
        HlcStamp(base.wall_ms, base.counter, base.node + "~"),
    ):
        if (lower is None or lower < candidate) and candidate < upper:
            return candidate
    return None
