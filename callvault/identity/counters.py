"""Where rate-limit counters live: the database (the default) or Redis (``CALLVAULT_REDIS_URL``).

The rules (which keys an attempt touches, limits, windows, the known-address exemption) are in
``identity.throttle`` and ``subject_requests.limits``; a ``Counters`` store only keeps windowed
counters and answers atomically, so both backends give the same decisions. One counter is
``failures`` counted since ``window_started_at``, and a ``locked_until`` set when the count reaches
its limit. ``bump`` is the one write that decides, in one atomic step per key:

* the window is over, or the key's lock has ended: start a new window at ``now`` with no lock;
* count one;
* at or over the limit and not already locked: lock until ``now + lock_for`` (or the window's end
  when ``lock_for`` is None) and say so (``started``), so exactly one caller audits each lock.

Both stores take the caller's ``Session``. The database store writes in it (row locks,
``SELECT ... FOR UPDATE``; the edge commits); the Redis store ignores it and writes at once
(a Lua script per key, so concurrent nodes never lose a count; every key has a TTL, so nothing
lingers). The difference matters only when the caller's transaction rolls back: Redis keeps the
count, which errs on the side of refusing a guesser.

Why not everything in Redis: web sessions and bearer tokens are revocable, audited state (a
revocation must be in the same transaction as its audit entry), and background-job claims rely on
``FOR UPDATE SKIP LOCKED`` on the rows they work on; both stay in the database (docs/operations.md).

Redis unreachable: every call raises ``CountersUnavailable`` (a ``ConfigurationError``: HTTP 503,
CLI exit 3), and it is logged at ERROR. Sign-in fails closed: with no counter to consult, nobody is
let in, rather than letting everyone guess.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from callvault.core.errors import ConfigurationError
from callvault.core.settings import Settings
from callvault.identity.models import SignInThrottle

if TYPE_CHECKING:
    import redis

log = logging.getLogger("callvault.counters")


@dataclass(frozen=True)
class Counter:
    """One key's count in its current window, and its lock if any."""

    failures: int
    window_started_at: datetime
    locked_until: datetime | None = None


@dataclass(frozen=True)
class Bumped:
    """The counter after ``bump``; ``started`` when this very call started its lock."""

    counter: Counter
    started: bool


class CountersUnavailable(ConfigurationError):
    """The counter store (Redis) did not answer: refuse what needs a counter (HTTP 503)."""


class Counters(Protocol):
    """Windowed counters shared by every server node. Keys are short strings (``pair:alice|10.0.0.5``)."""

    backend: str
    """``database`` or ``redis``: for ``config show``, readiness and logs."""

    def read(self, session: Session, keys: Sequence[str], *, lock: bool = False) -> dict[str, Counter]:
        """The counters that exist among ``keys``. ``lock``: the database holds the rows until the caller
        commits, so a check-then-count (the request form) is serialised; Redis has no such hold, so
        there concurrent checks may let a request or two past the limit (each count stays exact)."""
        ...

    def bump(self, session: Session, key: str, *, limit: int, window: timedelta, lock_for: timedelta | None,
             now: datetime) -> Bumped:
        """Count one against ``key`` (the rule is in the module docstring), atomically."""
        ...

    def mark(self, session: Session, key: str, *, now: datetime, keep_for: timedelta) -> None:
        """Create or refresh a marker (a counter at zero started ``now``), kept at least ``keep_for``."""
        ...

    def clear(self, session: Session, keys: Sequence[str]) -> int:
        """Delete ``keys``; how many existed."""
        ...

    def clear_prefix(self, session: Session, prefix: str) -> int:
        """Delete every key starting with ``prefix`` (an administrator's unlock); how many existed."""
        ...

    def ping(self) -> None:
        """Raise ``CountersUnavailable`` when the store does not answer (readiness)."""
        ...

    def close(self) -> None:
        ...


def _new_window(row: Counter | None, *, window: timedelta, now: datetime) -> bool:
    if row is None:
        return True
    lock_over = row.locked_until is not None and row.locked_until <= now
    return row.window_started_at + window <= now or lock_over


class DatabaseCounters:
    """Counters as rows of ``sign_in_throttles``, in the caller's transaction (the default)."""

    backend = "database"

    def _locked_row(self, session: Session, key: str, *, now: datetime) -> SignInThrottle:
        """The key's row, created if missing, locked until the caller commits. Created with
        ``INSERT ... ON CONFLICT DO NOTHING``: two nodes counting a new key's first failure at once must
        not collide on the primary key (the loser would lose its count and answer 500)."""
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        for _ in range(3):  # a concurrent unlock or success may delete the row between the two statements
            session.execute(insert(SignInThrottle).values(key=key, failures=0, window_started_at=now,
                                                          locked_until=None).on_conflict_do_nothing(index_elements=["key"]))
            row = session.scalar(select(SignInThrottle).where(SignInThrottle.key == key).with_for_update()
                                 .execution_options(populate_existing=True))
            if row is not None:
                return row
        raise CountersUnavailable(f"the counter {key!r} kept disappearing while being counted; try again")

    def read(self, session: Session, keys: Sequence[str], *, lock: bool = False) -> dict[str, Counter]:
        if not keys:
            return {}
        stmt = select(SignInThrottle).where(SignInThrottle.key.in_(list(keys)))
        rows = session.scalars(stmt.with_for_update() if lock else stmt)
        return {r.key: Counter(r.failures, r.window_started_at, r.locked_until) for r in rows}

    def bump(self, session: Session, key: str, *, limit: int, window: timedelta, lock_for: timedelta | None,
             now: datetime) -> Bumped:
        row = self._locked_row(session, key, now=now)
        if _new_window(Counter(row.failures, row.window_started_at, row.locked_until), window=window, now=now):
            row.failures, row.window_started_at, row.locked_until = 0, now, None
        row.failures += 1
        started = row.failures >= limit and (row.locked_until is None or row.locked_until <= now)
        if started:
            row.locked_until = row.window_started_at + window if lock_for is None else now + lock_for
        session.flush()
        return Bumped(Counter(row.failures, row.window_started_at, row.locked_until), started)

    def mark(self, session: Session, key: str, *, now: datetime, keep_for: timedelta) -> None:
        row = self._locked_row(session, key, now=now)
        row.failures, row.window_started_at, row.locked_until = 0, now, None
        session.flush()

    def clear(self, session: Session, keys: Sequence[str]) -> int:
        result = session.execute(delete(SignInThrottle).where(SignInThrottle.key.in_(list(keys))))
        return int(getattr(result, "rowcount", 0) or 0)

    def clear_prefix(self, session: Session, prefix: str) -> int:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        result = session.execute(delete(SignInThrottle).where(SignInThrottle.key.like(escaped + "%", escape="\\")))
        return int(getattr(result, "rowcount", 0) or 0)

    def ping(self) -> None:
        return None  # the database's own readiness check covers it

    def close(self) -> None:
        return None


# KEYS[1]: the counter. ARGV: now, window, limit, lock_for (-1: until the window's end), all times in
# microseconds since the epoch (exact in Lua's doubles until the year 2255). Numbers are written with
# %d: Redis would otherwise store them as "%.14g" and lose digits.
_BUMP = """
local now, window, limit, lock_for = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local got = redis.call('HMGET', KEYS[1], 'f', 's', 'l')
local f, s, l = tonumber(got[1]), tonumber(got[2]), tonumber(got[3])
if f == nil or s == nil or s + window <= now or (l ~= nil and l <= now) then
  f, s, l = 0, now, nil
end
f = f + 1
local started = 0
if f >= limit and (l == nil or l <= now) then
  if lock_for < 0 then l = s + window else l = now + lock_for end
  started = 1
end
if l == nil then
  redis.call('HDEL', KEYS[1], 'l')
  redis.call('HSET', KEYS[1], 'f', string.format('%d', f), 's', string.format('%d', s))
else
  redis.call('HSET', KEYS[1], 'f', string.format('%d', f), 's', string.format('%d', s), 'l', string.format('%d', l))
end
local ends = s + window
if l ~= nil and l > ends then ends = l end
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.max(1000, math.ceil((ends - now) / 1000))))
return {f, s, l or -1, started}
"""

_US = 1_000_000


def _to_us(when: datetime) -> int:
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * _US + delta.microseconds


def _from_us(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def _span_us(span: timedelta) -> int:
    return (span.days * 86400 + span.seconds) * _US + span.microseconds


class RedisCounters:
    """Counters as Redis hashes (``f``: count, ``s``: window start, ``l``: lock end; microseconds) under
    ``<prefix>rl:<key>``, each with a TTL that outlives its window and lock (then it is gone)."""

    backend = "redis"

    def __init__(self, url: str, *, prefix: str = "callvault:", timeout: float = 2.0) -> None:
        import redis

        self._client: redis.Redis = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=30)
        self._prefix = prefix + "rl:"
        self._bump = self._client.register_script(_BUMP)
        self._where = _describe(url)

    def _key(self, key: str) -> str:
        return self._prefix + key

    def _fail(self, exc: Exception) -> CountersUnavailable:
        log.error("rate-limit store unavailable (Redis at %s): %s: %s", self._where, type(exc).__name__, exc)
        return CountersUnavailable(f"the rate-limit store (Redis at {self._where}) is not answering "
                                   f"({type(exc).__name__}); sign-in is refused until it does")

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import redis

        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise self._fail(exc) from exc

    def read(self, session: Session, keys: Sequence[str], *, lock: bool = False) -> dict[str, Counter]:
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(self._key(key), "f", "s", "l")
        found: dict[str, Counter] = {}
        for key, (f, s, lock) in zip(keys, self._call(pipe.execute), strict=True):
            if f is not None and s is not None:
                found[key] = Counter(int(f), _from_us(int(s)), _from_us(int(lock)) if lock is not None else None)
        return found

    def bump(self, session: Session, key: str, *, limit: int, window: timedelta, lock_for: timedelta | None,
             now: datetime) -> Bumped:
        f, s, lock, started = self._call(self._bump, keys=[self._key(key)], args=[
            _to_us(now), _span_us(window), limit, -1 if lock_for is None else _span_us(lock_for)])
        counter = Counter(int(f), _from_us(int(s)), _from_us(int(lock)) if int(lock) >= 0 else None)
        return Bumped(counter, bool(int(started)))

    def mark(self, session: Session, key: str, *, now: datetime, keep_for: timedelta) -> None:
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(self._key(key))
        pipe.hset(self._key(key), mapping={"f": 0, "s": _to_us(now)})
        pipe.pexpire(self._key(key), max(1000, _span_us(keep_for) // 1000))
        self._call(pipe.execute)

    def clear(self, session: Session, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        return int(self._call(self._client.delete, *[self._key(k) for k in keys]))

    def clear_prefix(self, session: Session, prefix: str) -> int:
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self._key(prefix)) + "*"
        cleared = 0

        def run() -> None:
            nonlocal cleared
            batch: list[Any] = []
            for name in self._client.scan_iter(match=pattern, count=500):
                batch.append(name)
                if len(batch) >= 500:
                    cleared += int(self._client.delete(*batch))
                    batch = []
            if batch:
                cleared += int(self._client.delete(*batch))

        self._call(run)
        return cleared

    def ping(self) -> None:
        self._call(self._client.ping)

    def close(self) -> None:
        self._client.close()


def _describe(url: str) -> str:
    """Host, port and database of a Redis URL, never its password (it goes into logs and messages)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return parts.path or url.split("?", 1)[0]
        return f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"
    except ValueError:
        return "(unparsable URL)"


def open_counters(settings: Settings) -> Counters:
    """Redis when ``CALLVAULT_REDIS_URL`` is set, otherwise the database. Connects lazily: a node whose
    Redis is down still starts, serves signed-in users and refuses sign-in with a clear 503."""
    if settings.redis_url:
        return RedisCounters(settings.redis_url, prefix=settings.redis_prefix)
    return DatabaseCounters()
