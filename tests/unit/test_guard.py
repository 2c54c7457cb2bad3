"""Token policy, route classes, the token bucket and the binding rule, without I/O."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kkt_adapter.api.guard import (
    MISSING_TOKEN,
    NEEDS_ADMIN,
    UNKNOWN_TOKEN,
    Access,
    Gate,
    HostPolicy,
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
        ("POST", "/v1/kkt/shift/close", Access.POS),  # the cashier's act
        ("POST", "/v1/kkt/print_failed/clear", Access.ADMIN),
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


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        (b"localhost", True),
        (b"localhost:8000", True),
        (b"LOCALHOST.:8000", True),  # case and the root dot do not matter
        (b"127.0.0.1:8000", True),
        (b"127.0.0.1", True),
        (b"[::1]:8000", True),
        (b"[::1]", True),
        (b"till-7.shop.local:8000", True),  # configured
        (b"evil.example:8000", False),  # a rebinding page's own name
        (b"evil.example", False),
        (b"localhost.evil.example", False),
        (b"127.0.0.1.nip.io:8000", False),
        (b"10.0.0.5:8000", False),
        (b"[::1", False),  # malformed
        (b"", False),
    ],
)
def test_host_policy_accepts_loopback_names_and_configured_ones(host: bytes, allowed: bool) -> None:
    policy = HostPolicy.allowing(["till-7.shop.local"])
    refusal = policy.check([(b"host", host)])
    assert (refusal is None) is allowed
    if refusal is not None:
        assert (refusal.status, refusal.code) == (421, "host_not_allowed")
        assert "KKT_ALLOWED_HOSTS" in refusal.message


def test_a_request_without_a_host_header_is_not_a_browsers() -> None:
    assert HostPolicy.allowing([]).check([]) is None


@pytest.mark.parametrize(
    ("settings", "checked"),
    [
        ({}, True),  # an open API on loopback: the DNS rebinding case
        ({"host": "0.0.0.0", "insecure": True}, True),  # open on the network: still checked
        ({"api_token": POS}, False),  # a rebinding page cannot present the token
        ({"api_token": POS, "allowed_hosts": "till-7.shop.local"}, True),  # asked for
    ],
)
def test_the_host_check_applies_to_an_open_api_or_when_configured(
    tmp_path: Path, settings: dict[str, Any], checked: bool
) -> None:
    gate = Gate.from_settings(Settings(data_dir=tmp_path, **settings))
    scope = {"headers": [(b"host", b"evil.example:8000")], "client": ("127.0.0.1", 1)}
    refusal = gate.refuse({**scope, "method": "GET", "path": "/v1/health"}, None)
    assert (refusal is not None and refusal.code == "host_not_allowed") is checked


def test_the_bound_address_is_an_allowed_host(tmp_path: Path) -> None:
    gate = Gate.from_settings(Settings(data_dir=tmp_path, host="192.168.1.20", insecure=True))
    scope = {"headers": [(b"host", b"192.168.1.20:8000")], "client": ("192.168.1.9", 1)}
    assert gate.refuse({**scope, "method": "GET", "path": "/v1/health"}, None) is None
