"""Sync leadership: one holder of the buffer's sync lease delivers, with a fencing token.

Two backends behind one small interface:

- ``SqliteLease`` (default): a lease row in the buffer itself; right for processes sharing one
  data dir on one host.
- ``RedisLease`` (``--redis-url``): ``SET key holder NX PX ttl`` with renewal, and a fencing
  token from ``INCR``; right when several hosts cooperate.

A token is greater than every token handed out before it. The buffer keeps the highest token it
has seen and refuses claims and results from a lower one (``kkt_adapter.buffer.outbox``), so a
leader paused past its lease (GC stop, SIGSTOP, partition) cannot write after a new leader took
over. A backend error never reads as "leader": without a lease, nothing is delivered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from kkt_adapter.buffer.outbox import Outbox

log = logging.getLogger(__name__)

FloorFn = Callable[[], Awaitable[int]]


@dataclass(frozen=True)
class Grant:
    """A held lease: its fencing token."""

    fence: int


class LeaseBackend(Protocol):
    """Acquire, renew and release the sync lease for ``holder``."""

    name: str

    async def acquire(self, holder: str, ttl_ms: int) -> Grant | None:
        """The lease if it is free, expired or already ours (a new token if it changed hands)."""
        ...

    async def renew(self, holder: str, grant: Grant, ttl_ms: int) -> bool:
        """Extend our lease; False if it is no longer ours."""
        ...

    async def release(self, holder: str, grant: Grant) -> None: ...

    async def current_holder(self) -> str | None:
        """Who holds the lease now (``None``: nobody)."""
        ...

    async def close(self) -> None: ...


class SqliteLease:
    """The lease as a row of the buffer (its SQL lives with the fence's, in the outbox)."""

    name = "sqlite"

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    async def acquire(self, holder: str, ttl_ms: int) -> Grant | None:
        fence = await self._outbox.acquire_lease(holder, ttl_ms)
        return None if fence is None else Grant(fence)

    async def renew(self, holder: str, grant: Grant, ttl_ms: int) -> bool:
        return await self._outbox.renew_lease(holder, grant.fence, ttl_ms)

    async def release(self, holder: str, grant: Grant) -> None:
        await self._outbox.release_lease(holder, grant.fence)

    async def current_holder(self) -> str | None:
        return await self._outbox.lease_holder()

    async def close(self) -> None:
        return None


# KEYS[1] lease key, KEYS[2] fence counter; ARGV: holder, ttl ms, lowest acceptable token.
_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return -1 end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
local token = redis.call('INCR', KEYS[2])
if token <= tonumber(ARGV[3]) then
  token = tonumber(ARGV[3]) + 1
  redis.call('SET', KEYS[2], token)
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return token
"""
# KEYS[1] lease key, KEYS[2] fence counter; ARGV: holder, ttl ms, our token.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1]
   and tonumber(redis.call('GET', KEYS[2]) or '0') == tonumber(ARGV[3]) then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisLease:
    """The lease in Redis: ``SET NX PX`` semantics in a script, token from ``INCR``.

    ``floor()`` gives the highest token the buffer has seen, so a fresh Redis (or one that lost
    its data) never hands out a token the buffer would refuse.
    """

    name = "redis"

    def __init__(
        self, url: str, key_prefix: str, floor: FloorFn, alive: Callable[[str], bool]
    ) -> None:
        import redis.asyncio as redis_asyncio

        self._redis = redis_asyncio.from_url(
            url, socket_connect_timeout=2, socket_timeout=2, decode_responses=True
        )
        self._keys = [f"{key_prefix}:lease", f"{key_prefix}:fence"]
        self._floor = floor
        self._alive = alive  # whether a holder's process lives (``Owners.alive``)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)

    async def acquire(self, holder: str, ttl_ms: int) -> Grant | None:
        floor = await self._floor()
        token = int(await self._acquire(keys=self._keys, args=[holder, ttl_ms, floor]))
        if token < 0:
            # Held: by a process on this host that is dead (kill -9, then restart)? Then let
            # its lease go now instead of after its TTL (only if it is still that holder's).
            current = await self._redis.get(self._keys[0])
            if current is not None and not self._alive(str(current)):
                log.warning("the sync lease holder %s is gone: taking the lease over", current)
                await self._release(keys=self._keys, args=[current])
                token = int(await self._acquire(keys=self._keys, args=[holder, ttl_ms, floor]))
        return Grant(token) if token > 0 else None

    async def renew(self, holder: str, grant: Grant, ttl_ms: int) -> bool:
        return bool(int(await self._renew(keys=self._keys, args=[holder, ttl_ms, grant.fence])))

    async def release(self, holder: str, grant: Grant) -> None:
        await self._release(keys=self._keys, args=[holder])

    async def current_holder(self) -> str | None:
        holder = await self._redis.get(self._keys[0])
        return None if holder is None else str(holder)

    async def close(self) -> None:
        await self._redis.aclose()
