"""Token policy, route classes, the token bucket and the binding rule, without I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from kkt_adapter.api.guard import (
    MISSING_TOKEN,
    NEEDS_ADMIN,
    UNKNOWN_TOKEN,
    Access,
    RateLimiter,
    TokenPolicy,
    access_for,
    binding_problem,
)
from kkt_adapter.settings import Settings

POS = "pos-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"


def auth(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


@pytest.mark.parametrize(
    ("pos", "admin", "headers", "access", "expected"),
    [
        (None, None, [], Access.ADMIN, None),  # no tokens: open
        (POS, ADMIN, [], Access.OPEN, None),
        (POS, ADMIN, [], Access.POS, MISSING_TOKEN),
        (POS, ADMIN, auth("nope-nope-nope-nope"), Access.POS, UNKNOWN_TOKEN),
        (POS, ADMIN, auth(POS), Access.POS, None),
        (POS, ADMIN, auth(ADMIN), Access.POS, None),
        (POS, ADMIN, auth(POS), Access.ADMIN, NEEDS_ADMIN),
        (POS, ADMIN, auth(ADMIN), Access.ADMIN, None),
        (POS, None, auth(POS), Access.ADMIN, None),  # one token guards everything
        (POS, None, [], Access.ADMIN, MISSING_TOKEN),
        (None, ADMIN, [], Access.POS, MISSING_TOKEN),
        (None, ADMIN, auth(ADMIN), Access.POS, None),
        (POS, ADMIN, [(b"authorization", f"Basic {POS}".encode())], Access.POS, UNKNOWN_TOKEN),
        (POS, ADMIN, [(b"authorization", f"BEARER {POS}".encode())], Access.POS, None),
    ],
)
def test_token_policy(
    pos: str | None,
    admin: str | None,
    headers: list[tuple[bytes, bytes]],
    access: Access,
    expected: object,
) -> None:
    assert TokenPolicy(pos, admin).check(headers, access) is expected


def test_refusals_carry_the_bearer_challenge() -> None:
    assert MISSING_TOKEN.status == 401 and MISSING_TOKEN.code == "unauthorized"
    assert dict(MISSING_TOKEN.headers)[b"www-authenticate"].startswith(b"Bearer")
    assert NEEDS_ADMIN.status == 403 and NEEDS_ADMIN.code == "forbidden"


@pytest.mark.parametrize(
    ("method", "path", "access"),
    [
        ("GET", "/v1/health", Access.OPEN),
        ("GET", "/metrics", Access.OPEN),
        ("GET", "/openapi.json", Access.OPEN),
        ("POST", "/v1/kkt/receipt", Access.POS),
        ("GET", "/v1/kkt/dlq", Access.POS),
        ("POST", "/v1/kkt/dlq/01JDQ3V7C8X2K9PA/requeue", Access.ADMIN),
        ("POST", "/v1/kkt/buffer/sync", Access.ADMIN),
        ("POST", "/v1/kkt/shift/close", Access.ADMIN),
        ("GET", "/ofd-emulator/_control/stats", Access.ADMIN),
        ("GET", "/v1/something/new", Access.POS),  # unlisted: never open by accident
    ],
)
def test_access_for(method: str, path: str, access: Access) -> None:
    assert access_for(method, path) is access


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(2.0, 3, clock=lambda: now[0])
    assert [limiter.wait_seconds("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait_seconds("a") == pytest.approx(0.5)  # empty: one token in 1/2 s
    assert limiter.wait_seconds("b") == 0.0  # another client has its own bucket
    now[0] += 0.5
    assert limiter.wait_seconds("a") == 0.0
    assert limiter.wait_seconds("a") == pytest.approx(0.5)  # that token is spent again
    now[0] += 60
    # a minute refills 120 tokens, but the bucket holds 3: the 4th request waits
    waits = [limiter.wait_seconds("a") for _ in range(4)]
    assert waits == [0.0, 0.0, 0.0, pytest.approx(0.5)]


def test_token_bucket_memory_is_bounded() -> None:
    now = [0.0]
    limiter = RateLimiter(1.0, 2, clock=lambda: now[0], max_clients=10)
    for n in range(10):
        limiter.wait_seconds(f"10.0.0.{n}")
    now[0] += 5  # all refilled: forgetting them changes nothing
    limiter.wait_seconds("10.0.1.1")
    assert len(limiter._buckets) == 1


def test_binding_without_tokens_is_loopback_only(tmp_path: Path) -> None:
    def settings(**kw: object) -> Settings:
        return Settings(data_dir=tmp_path, **kw)  # type: ignore[arg-type]

    assert binding_problem(settings(host="127.0.0.1")) is None
    assert binding_problem(settings(host="::1")) is None
    problem = binding_problem(settings(host="0.0.0.0"))
    assert problem is not None and "--insecure" in problem and "\n" not in problem
    assert binding_problem(settings(host="0.0.0.0", insecure=True)) is None
    assert binding_problem(settings(host="0.0.0.0", api_token=POS)) is None
    assert binding_problem(settings(host="10.1.2.3", admin_token=ADMIN)) is None
