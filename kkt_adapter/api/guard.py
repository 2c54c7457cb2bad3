"""Who may call what, and how often: bearer tokens, the per-client rate limit, the binding rule.

Every request passes ``Gate.refuse`` in the request middleware, before any handler, the intake
fast path included. The access class of a route is decided here, in one table (``access_for``):
a path not listed needs the POS token, so a new route is never open by accident.

Tokens (``KKT_API_TOKEN`` for the POS: sales, reads and the cashier's acts, opening and closing
the shift and the X report; ``KKT_ADMIN_TOKEN`` for sync, DLQ requeue, clearing failed prints and
the embedded OFD emulator): a route class is open only while its token and every stronger
one are unset. So with no token everything is open (and ``serve`` binds to loopback only); with
only the POS token set it guards every route, admin ones included; with only the admin token
set every route needs it. The admin token is accepted wherever the POS token is.
"""

from __future__ import annotations

import enum
import hmac
import ipaddress
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from starlette.types import Scope

from kkt_adapter.http_errors import ERROR_SCHEMA, ErrorAnswer
from kkt_adapter.settings import Settings


class Access(enum.Enum):
    """The class of a route: who may call it."""

    OPEN = "open"
    POS = "pos"
    ADMIN = "admin"


OPEN_PATHS = frozenset(
    {"/v1/health", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/ui"}
)
# Opening and closing the shift and the X report are the cashier's acts, so they are POS
# routes: with them behind the admin token a till either holds that token or stops selling
# when the shift passes 24 h (the KKT refuses receipts until the Z report).
ADMIN_POSTS = frozenset({"/v1/kkt/buffer/sync", "/v1/kkt/print_failed/clear"})
EMULATOR_PREFIX = "/ofd-emulator"
DOCS_ASSETS_PREFIX = "/docs/assets/"
"""The scripts and styles of ``/docs`` and ``/redoc``: open, as the pages."""


def access_for(method: str, path: str) -> Access:
    """The access class of a request. Health, metrics and the documentation stay open
    (supervisors and scrapers poll them; they hold no customer data)."""
    if path in OPEN_PATHS or path.startswith(DOCS_ASSETS_PREFIX):
        return Access.OPEN
    if path.startswith(EMULATOR_PREFIX):
        return Access.ADMIN
    if method == "POST" and (
        path in ADMIN_POSTS or (path.startswith("/v1/kkt/dlq/") and path.endswith("/requeue"))
    ):
        return Access.ADMIN
    return Access.POS


Refusal = ErrorAnswer
"""An answer given instead of running the handler."""


MISSING_TOKEN = Refusal(
    401,
    "unauthorized",
    "this API needs 'Authorization: Bearer <token>'",
    ((b"www-authenticate", b'Bearer realm="kkt-adapter"'),),
)
UNKNOWN_TOKEN = Refusal(
    401,
    "unauthorized",
    "the bearer token is not valid",
    ((b"www-authenticate", b'Bearer realm="kkt-adapter", error="invalid_token"'),),
)
NEEDS_ADMIN = Refusal(403, "forbidden", "this action needs the admin token")


class TokenPolicy:
    """Checks the ``Authorization`` header against the configured tokens in constant time."""

    def __init__(self, pos_token: str | None, admin_token: str | None) -> None:
        self._pos = _expected_header(pos_token)
        self._admin = _expected_header(admin_token)
        self.enabled = self._pos is not None or self._admin is not None

    def check(self, headers: Iterable[tuple[bytes, bytes]], access: Access) -> Refusal | None:
        """``None`` when the request may go on, else why not."""
        if access is Access.OPEN or not self.enabled:
            return None
        value = _authorization(headers)
        if value is None:
            return MISSING_TOKEN
        is_admin, is_pos = self._matches(value)
        if not (is_admin or is_pos):
            return UNKNOWN_TOKEN
        if access is Access.ADMIN and not is_admin and self._admin is not None:
            return NEEDS_ADMIN
        return None

    def _matches(self, value: bytes) -> tuple[bool, bool]:
        # Both comparisons always run, so the time taken does not say which token is near.
        is_admin = self._admin is not None and hmac.compare_digest(value, self._admin)
        is_pos = self._pos is not None and hmac.compare_digest(value, self._pos)
        if not (is_admin or is_pos) and value[:7].lower() == b"bearer " and value[:7] != BEARER:
            return self._matches(BEARER + value[7:])  # the scheme is case-insensitive
        return is_admin, is_pos


BEARER = b"Bearer "


def _expected_header(token: str | None) -> bytes | None:
    return None if token is None else BEARER + token.encode("ascii")


def _authorization(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"authorization":
            return value
    return None


class RateLimiter:
    """A token bucket per client address, in memory: ``rate`` requests a second on average,
    ``burst`` at once. Memory is bounded: past ``max_clients`` addresses the buckets that have
    refilled are forgotten (which changes nothing), and if that is not enough, all of them."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: dict[str, list[float]] = {}

    def wait_seconds(self, client: str) -> float:
        """Take one token for ``client``: 0 if allowed, else seconds until one is available."""
        now = self._clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self._max_clients:
                self._forget_idle(now)
            self._buckets[client] = [self.burst - 1.0, now]
            return 0.0
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        full = [
            client
            for client, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self.rate >= self.burst
        ]
        for client in full:
            del self._buckets[client]
        if len(self._buckets) >= self._max_clients:
            self._buckets.clear()


def rate_limited(wait_seconds: float, rate: float) -> Refusal:
    retry_after = str(max(1, math.ceil(wait_seconds))).encode()
    return Refusal(
        429,
        "rate_limited",
        "too many requests from this client; retry later",
        ((b"retry-after", retry_after),),
        {"limit_per_second": rate},
    )


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class HostPolicy:
    """Answers only to the host names it knows, against DNS rebinding: a web page in the
    till's browser whose name is made to resolve to 127.0.0.1 sends its own name as ``Host``.

    Known: ``localhost``, ``127.0.0.1``, ``[::1]`` (any port) and the configured names. A
    request without a ``Host`` header (HTTP/1.0) is let through: browsers always send one.
    """

    def __init__(self, allowed: frozenset[str]) -> None:
        self.allowed = allowed

    @classmethod
    def allowing(cls, names: Iterable[str]) -> HostPolicy:
        return cls(LOOPBACK_HOSTS | {_normal_host(name) for name in names})

    def check(self, headers: Iterable[tuple[bytes, bytes]]) -> Refusal | None:
        """``None`` when the request names a known host, else the refusal."""
        for name, value in headers:
            if name == b"host":
                if host_name(value) in self.allowed:
                    return None
                shown = value.decode("latin-1")
                return Refusal(
                    421,
                    "host_not_allowed",
                    f"this adapter does not answer to the host {shown!r}; use localhost or "
                    "127.0.0.1, or list the name in KKT_ALLOWED_HOSTS",
                    details={"host": shown},
                )
        return None


def host_name(value: bytes) -> str | None:
    """The host of a ``Host`` header value without its port, normalized; ``None`` if malformed."""
    text = value.decode("latin-1").strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1 :] and not text[end + 1 :].startswith(":")):
            return None
        return _normal_host(text[1:end])
    host = text.rsplit(":", 1)[0] if text.count(":") == 1 else text
    return _normal_host(host) if host and ":" not in host else None


def _normal_host(name: str) -> str:
    return name.removeprefix("[").removesuffix("]").rstrip(".").lower()


class Gate:
    """The host check first (a rebinding page's request goes no further), then the rate limit
    (it also slows down token guessing), then the token check."""

    def __init__(
        self, tokens: TokenPolicy, limiter: RateLimiter | None, hosts: HostPolicy | None = None
    ) -> None:
        self.tokens = tokens
        self.limiter = limiter
        self.hosts = hosts

    @classmethod
    def from_settings(cls, settings: Settings) -> Gate:
        rate = settings.rate_limit_per_second
        limiter = RateLimiter(rate, settings.rate_limit_burst) if rate > 0 else None
        tokens = TokenPolicy(_secret(settings.api_token), _secret(settings.admin_token))
        return cls(tokens, limiter, host_policy(settings, tokens))

    def refuse(self, scope: Scope, access: Access | None) -> Refusal | None:
        """Why this request may not go on, or ``None``. ``access=None``: look it up by path."""
        if self.hosts is not None:
            refusal = self.hosts.check(scope["headers"])
            if refusal is not None:
                return refusal
        if self.limiter is not None:
            client = scope.get("client")
            wait = self.limiter.wait_seconds(client[0] if client else "")
            if wait > 0:
                return rate_limited(wait, self.limiter.rate)
        if access is None:
            access = access_for(scope["method"], scope["path"])
        return self.tokens.check(scope["headers"], access)


def host_policy(settings: Settings, tokens: TokenPolicy) -> HostPolicy | None:
    """The host check, where it protects something: while no token is set (an open API is
    what a rebinding page could reach), or whenever ``KKT_ALLOWED_HOSTS`` asks for it. With a
    token, a rebinding page cannot present it, and clients on the network may use any name.
    The address ``serve`` binds to, when it is one address, is a known host too."""
    if tokens.enabled and not settings.allowed_hosts:
        return None
    names = list(settings.allowed_hosts)
    if settings.host != "localhost" and not ipaddress.ip_address(settings.host).is_unspecified:
        names.append(settings.host)
    return HostPolicy.allowing(names)


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


def is_loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


def binding_problem(settings: Settings) -> str | None:
    """Why ``serve`` must not start with these settings: an open API on a network address."""
    if settings.api_token or settings.admin_token or settings.insecure:
        return None
    if is_loopback(settings.host):
        return None
    return (
        f"refusing to serve on {settings.host} without KKT_API_TOKEN or KKT_ADMIN_TOKEN: "
        "set a token, bind to 127.0.0.1, or pass --insecure (KKT_INSECURE=true)"
    )


def document_access(schema: dict[str, Any]) -> None:
    """Add the bearer scheme and the 401/403/421/429 answers to an OpenAPI schema."""
    error = {"$ref": "#/components/schemas/Error"}
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    components.setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
    answers = {
        "401": "Missing or unknown bearer token (when tokens are configured)",
        "403": "A POS token on an admin action",
        "421": "The Host header names a host this adapter does not answer to",
        "429": "Rate limited; see Retry-After",
    }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            access = access_for(method.upper(), path)
            for status, text in answers.items():
                if status in ("401", "403") and access is Access.OPEN:
                    continue
                if status == "403" and access is not Access.ADMIN:
                    continue
                operation.setdefault("responses", {}).setdefault(
                    status,
                    {"description": text, "content": {"application/json": {"schema": error}}},
                )
            if access is not Access.OPEN:
                operation["security"] = [{"bearer": []}]
