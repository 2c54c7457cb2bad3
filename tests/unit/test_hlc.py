import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kkt_adapter.hlc import HlcStamp, HybridClock


class FakeWall:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_now_follows_the_wall_clock_when_it_advances() -> None:
    wall = FakeWall(1_000)
    clock = HybridClock("a", wall=wall)
    first = clock.now()
    wall.ms = 2_000
    second = clock.now()
    assert (first.wall_ms, first.counter) == (1_000, 0)
    assert (second.wall_ms, second.counter) == (2_000, 0)


def test_now_is_monotonic_when_the_wall_clock_steps_back() -> None:
    wall = FakeWall(10_000)
    clock = HybridClock("a", wall=wall)
    before = clock.now()
    wall.ms = 5_000  # NTP stepped the clock back five seconds
    after = [clock.now() for _ in range(3)]
    assert all(stamp > before for stamp in after)
    assert [s.wall_ms for s in after] == [10_000] * 3
    assert [s.counter for s in after] == [1, 2, 3]


def test_a_restored_clock_never_goes_below_its_persisted_stamp() -> None:
    persisted = HlcStamp(50_000, 7, "a")
    clock = HybridClock("a", last=persisted, wall=FakeWall(1_000))
    # the wall clock reads far below the persisted stamp: keep its wall time, count on from it
    assert clock.now() == HlcStamp(50_000, 8, "a")


def test_merge_takes_a_remote_stamp_from_the_future() -> None:
    clock = HybridClock("a", wall=FakeWall(1_000))
    merged = clock.merge(HlcStamp(9_000, 4, "ofd"))
    assert (merged.wall_ms, merged.counter) == (9_000, 5)
    assert clock.now() == HlcStamp(9_000, 6, "a")  # the local wall (1 s) is still behind it


def test_stamp_text_round_trip() -> None:
    stamp = HlcStamp(1_732_450_000_000, 12, "n0a1b2c3")
    assert HlcStamp.parse(str(stamp)) == stamp


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 10**6), st.integers(0, 50)), max_size=60))
def test_every_stamp_is_greater_than_the_one_before(steps: list[tuple[bool, int, int]]) -> None:
    wall = FakeWall(0)
    clock = HybridClock("a", wall=wall)
    previous = clock.now()
    for is_merge, wall_ms, counter in steps:
        wall.ms = wall_ms
        stamp = clock.merge(HlcStamp(wall_ms, counter, "b")) if is_merge else clock.now()
        assert stamp > previous
        previous = stamp


def test_a_remote_stamp_beyond_the_maximum_offset_is_refused_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = HybridClock("a", wall=FakeWall(1_000_000))
    before = clock.now()
    year_2286 = HlcStamp(9_999_999_999_999, 0, "ofd")
    with caplog.at_level(logging.WARNING, logger="kkt_adapter.hlc"):
        assert clock.merge_remote(year_2286, max_offset_ms=300_000) is None
    assert clock.now() == HlcStamp(1_000_000, before.counter + 1, "a")  # not adopted
    assert any("not adopted" in r.getMessage() for r in caplog.records)


def test_a_remote_stamp_within_the_maximum_offset_is_merged() -> None:
    clock = HybridClock("a", wall=FakeWall(1_000_000))
    merged = clock.merge_remote(HlcStamp(1_300_000, 4, "ofd"), max_offset_ms=300_000)
    assert merged == HlcStamp(1_300_000, 5, "a")
    assert clock.merge_remote(HlcStamp(1_300_001, 0, "ofd"), max_offset_ms=300_000) is None


def test_a_stamp_between_two_neighbours() -> None:
    from kkt_adapter.hlc import stamp_between

    a, b = HlcStamp(1000, 3, "n1"), HlcStamp(2000, 0, "n1")
    assert stamp_between(a, b, "n1") == HlcStamp(1000, 4, "n1")
    tight = HlcStamp(1000, 4, "n1")
    assert stamp_between(HlcStamp(1000, 4, "m"), HlcStamp(1000, 4, "n1"), "n1") == HlcStamp(
        1000, 4, "m~"
    )
    assert stamp_between(tight, HlcStamp(1000, 4, "n1~"), "n1") is None  # nothing fits
    assert stamp_between(None, b, "n1") == HlcStamp(1999, 0, "n1")
    for low, high in ((a, b), (None, b), (HlcStamp(1000, 4, "m"), tight)):
        middle = stamp_between(low, high, "n1")
        assert middle is not None and (low is None or low < middle) and middle < high
