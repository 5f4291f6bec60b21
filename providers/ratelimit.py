"""A provider's rate limits, shared by every worker process and host through Redis, or per process
when no Redis is configured. Each acquire reserves the next free send time in one atomic step (a
Lua script, one round trip) and the lookup's thread sleeps until exactly then: no polling, and
however many threads or processes wait, each wakes alone at its own slot. A send time honours
every window as a moving window (at most N sends in any T seconds, counted over the reserved send
times), and sends are spread at the shortest window's pace (T/N apart) rather than released in
bursts that all free at once. A "slow down" answer pauses the provider for everyone until its
Retry-After/reset time.

A window's log keeps every send time reserved and not yet older than the window (not only its
last N): a lookup whose thread woke late for its slot can then check, in one more round trip,
whether the sends reserved after its own leave room for it now, and send late rather than leave
its slot unused."""

import bisect
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import redis
from django.conf import settings
from limits import RateLimitItem, parse_many

from enrichment_project.cache import REDIS_DRIVER_INFO
from providers.base import RateLimitWait

# A window's slot is given this much later than T after the send that frees it: the provider
# counts a request when it arrives, some time after its send time here, and that time varies (a
# thread woken late, a busy core), so a request sent exactly T after another may reach the
# provider less than T after it.
_MARGIN_SECONDS = 0.05
# A lookup that waits longer than this checks, this long before its slot, that no "slow down"
# pause voided it and that the provider's circuit is still closed, so that neither round trip
# makes it late. A slot closer than this is as good as sent already.
CHECK_LEAD_SECONDS = 0.02
# A lookup whose thread woke this much after its slot does not send on it blindly: it could reach
# the provider too close to the sends of a window later and be refused. Half the margin, so that
# what passes still has the other half for the way to the provider. It sends late only when the
# sends reserved after its slot leave room (`send_late`); else its slot is left unused (the
# windows only get stricter) and it reserves another.
LATE_SECONDS = _MARGIN_SECONDS / 2
# A late send is let through when the sends reserved after it stay this much more than a window
# away from it: the half margin that a send late by LATE_SECONDS keeps for its way too.
_LATE_HEADROOM_SECONDS = _MARGIN_SECONDS - LATE_SECONDS
_KEY_PREFIX = "ratelimit:"

# KEYS[1]: the provider's pause (a key whose time to live is the pause), KEYS[2]: its pause count
# (a pause voids the send times reserved after it), KEYS[3..]: each window's log of reserved send
# times, newest first, those older than the window (and the margin) dropped. ARGV: max_wait, the
# pace, the margin, then each window's limit and seconds, shortest window first. Returns the wait
# (seconds, as a string: Lua numbers become integers), whether the slot was reserved (not when
# the wait exceeds max_wait), the pause count and the send time as logged.
_RESERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
local max_wait, pace, margin = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local pauses = tonumber(redis.call('GET', KEYS[2]) or '0')
local at = now
local paused_ms = redis.call('PTTL', KEYS[1])
if paused_ms > 0 then at = now + paused_ms / 1000 end
for i = 3, #KEYS do
  local limit, seconds = tonumber(ARGV[2 * i - 2]), tonumber(ARGV[2 * i - 1])
  if i == 3 then
    local last = redis.call('LINDEX', KEYS[i], 0)
    if last then at = math.max(at, tonumber(last) + pace) end
  end
  if redis.call('LLEN', KEYS[i]) >= limit then
    at = math.max(at, tonumber(redis.call('LINDEX', KEYS[i], limit - 1)) + seconds + margin)
  end
end
local wait = at - now
if wait > max_wait then return {tostring(wait), 0, pauses, ''} end
local stamp = string.format('%.6f', at)
for i = 3, #KEYS do
  local seconds = tonumber(ARGV[2 * i - 1])
  redis.call('LPUSH', KEYS[i], stamp)
  while true do
    local oldest = redis.call('LINDEX', KEYS[i], -1)
    if not oldest or tonumber(oldest) >= now - seconds - margin then break end
    redis.call('RPOP', KEYS[i])
  end
  redis.call('PEXPIRE', KEYS[i], math.ceil((wait + seconds + margin) * 1000))
end
return {tostring(wait), 1, pauses, stamp}
"""

# KEYS as above; ARGV: the late slot's send time as logged, the pause count it was reserved
# under, the headroom, then each window's limit and seconds. Sending now puts the send in every
# window that starts after its slot and by now: allowed when each window's log holds fewer than
# its limit of other sends after the slot and before now plus the window and the headroom. Then
# the slot is logged again at now, in order, so that later reservations count from when it was
# sent. Returns 1 when the lookup may send now.
_SEND_LATE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
local slot, headroom = ARGV[1], tonumber(ARGV[3])
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[2]) then return 0 end
local at = tonumber(slot)
local pivots = {}
for i = 3, #KEYS do
  local limit, seconds = tonumber(ARGV[2 * i - 2]), tonumber(ARGV[2 * i - 1])
  local horizon = now + seconds + headroom
  -- From the oldest send on: the slot and the sends around it are near the log's tail.
  local ahead, before, own, to = 0, nil, false, redis.call('LLEN', KEYS[i])
  local walking = true
  while walking and to > 0 do
    local from = math.max(to - limit, 0)
    local chunk = redis.call('LRANGE', KEYS[i], from, to - 1)
    for j = #chunk, 1, -1 do
      local sent = tonumber(chunk[j])
      if sent >= horizon then walking = false break end
      if not own and chunk[j] == slot then
        own = true
      else
        if sent > at then ahead = ahead + 1 end
        if sent <= now then before = chunk[j] end
      end
    end
    to = from
  end
  if not own or ahead >= limit then return 0 end
  pivots[i] = before or false
end
local stamp = string.format('%.6f', now)
for i = 3, #KEYS do
  redis.call('LREM', KEYS[i], -1, slot)
  if pivots[i] then
    redis.call('LINSERT', KEYS[i], 'BEFORE', pivots[i], stamp)
  else
    redis.call('RPUSH', KEYS[i], stamp)
  end
end
return 1
"""

# KEYS as above; ARGV[1]: the pause in milliseconds, ARGV[2]: the check lead in seconds. Never
# shortens a longer pause. The send times reserved beyond the lead are forgotten: their lookups
# see the new pause count before their slot and reserve again, after the pause.
_PAUSE = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], 1, 'PX', ARGV[1])
end
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], 86400)
local clock = redis.call('TIME')
local sent_by = tonumber(clock[1]) + tonumber(clock[2]) / 1e6 + tonumber(ARGV[2])
for i = 3, #KEYS do
  while true do
    local newest = redis.call('LINDEX', KEYS[i], 0)
    if not newest or tonumber(newest) <= sent_by then break end
    redis.call('LPOP', KEYS[i])
  end
end
"""


@dataclass(frozen=True)
class Window:
    limit: int
    seconds: float


@dataclass(frozen=True)
class Slot:
    """A reserved send time, `wait` seconds from the reservation; `pauses` is the provider's pause
    count then (a later pause voids the slot). Not `reserved` when the wait exceeded max_wait."""

    wait: float
    reserved: bool
    pauses: int
    # The send time as the schedule logged it (for `send_late`).
    at: str = ""


class Schedule(Protocol):
    """Where the send times of every provider are reserved."""

    def reserve(self, name: str, windows: list[Window], max_wait: float) -> Slot: ...

    def send_late(self, name: str, windows: list[Window], slot: Slot) -> bool:
        """Whether the slot's lookup, woken late, may still send now (then its send is logged at
        now): no pause since its reservation and room in every window it now falls in."""

    def pause(self, name: str, windows: list[Window], seconds: float) -> None: ...

    def pauses(self, name: str) -> int:
        """How many pauses the provider had: a slot reserved before the last one is void."""

    def reset(self) -> None:
        """Forgets every reservation and pause (for tests and the bench)."""


class RedisSchedule:
    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url, driver_info=REDIS_DRIVER_INFO)
        self._reserve = self._redis.register_script(_RESERVE)
        self._pause = self._redis.register_script(_PAUSE)
        self._send_late = self._redis.register_script(_SEND_LATE)

    def reserve(self, name: str, windows: list[Window], max_wait: float) -> Slot:
        args: list[float] = [max_wait, _pace(windows), _MARGIN_SECONDS]
        for window in windows:
            args += [window.limit, window.seconds]
        wait, reserved, pauses, at = self._reserve(keys=_keys(name, windows), args=args)
        return Slot(wait=float(wait), reserved=bool(reserved), pauses=int(pauses), at=at.decode())

    def send_late(self, name: str, windows: list[Window], slot: Slot) -> bool:
        args: list[float | str] = [slot.at, slot.pauses, _LATE_HEADROOM_SECONDS]
        for window in windows:
            args += [window.limit, window.seconds]
        return bool(self._send_late(keys=_keys(name, windows), args=args))

    def pause(self, name: str, windows: list[Window], seconds: float) -> None:
        milliseconds = max(round(seconds * 1000), 1)
        self._pause(keys=_keys(name, windows), args=[milliseconds, CHECK_LEAD_SECONDS])

    def pauses(self, name: str) -> int:
        return int(self._redis.get(_keys(name, [])[1]) or 0)

    def reset(self) -> None:
        for key in self._redis.scan_iter(match=f"{_KEY_PREFIX}*"):
            self._redis.delete(key)


class LocalSchedule:
    """The same reservations within one process, for a deployment without Redis."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Each window's reserved send times, oldest first.
        self._sends: dict[tuple[str, Window], list[float]] = {}
        self._paused_until: dict[str, float] = {}
        self._pauses: dict[str, int] = {}

    def reserve(self, name: str, windows: list[Window], max_wait: float) -> Slot:
        with self._lock:
            now = time.monotonic()
            pauses = self._pauses.get(name, 0)
            at = max(now, self._paused_until.get(name, 0.0))
            logs = self._logs(name, windows)
            if logs and logs[0]:
                at = max(at, logs[0][-1] + _pace(windows))
            for window, log in zip(windows, logs, strict=True):
                del log[: bisect.bisect_left(log, now - window.seconds - _MARGIN_SECONDS)]
                if len(log) >= window.limit:
                    at = max(at, log[-window.limit] + window.seconds + _MARGIN_SECONDS)
            if at - now > max_wait:
                return Slot(wait=at - now, reserved=False, pauses=pauses)
            for log in logs:
                log.append(at)
            return Slot(wait=at - now, reserved=True, pauses=pauses, at=repr(at))

    def send_late(self, name: str, windows: list[Window], slot: Slot) -> bool:
        with self._lock:
            now, at = time.monotonic(), float(slot.at)
            if self._pauses.get(name, 0) != slot.pauses:
                return False
            logs = self._logs(name, windows)
            for window, log in zip(windows, logs, strict=True):
                if at not in log:
                    return False
                horizon = now + window.seconds + _LATE_HEADROOM_SECONDS
                ahead = bisect.bisect_left(log, horizon) - bisect.bisect_right(log, at)
                if ahead >= window.limit:
                    return False
            for log in logs:
                log.remove(at)
                bisect.insort(log, now)
            return True

    def pause(self, name: str, windows: list[Window], seconds: float) -> None:
        with self._lock:
            now = time.monotonic()
            self._paused_until[name] = max(self._paused_until.get(name, 0.0), now + seconds)
            self._pauses[name] = self._pauses.get(name, 0) + 1
            for log in self._logs(name, windows):
                del log[bisect.bisect_right(log, now + CHECK_LEAD_SECONDS) :]

    def pauses(self, name: str) -> int:
        with self._lock:
            return self._pauses.get(name, 0)

    def reset(self) -> None:
        with self._lock:
            self._sends.clear()
            self._paused_until.clear()
            self._pauses.clear()

    def _logs(self, name: str, windows: list[Window]) -> list[list[float]]:
        return [self._sends.setdefault((name, w), []) for w in windows]


def _pace(windows: list[Window]) -> float:
    """The least time between two sends: the shortest window's slots spread evenly over it."""
    return windows[0].seconds / windows[0].limit if windows else 0.0


def _keys(name: str, windows: list[Window]) -> list[str]:
    prefix = f"{_KEY_PREFIX}{name}:"
    logs = [f"{prefix}{window.limit}/{window.seconds}" for window in windows]
    return [f"{prefix}pause", f"{prefix}pauses", *logs]


@cache
def _schedule(url: str, pid: int) -> Schedule:
    # One connection pool per process, created after the fork (the pid is part of the key).
    return LocalSchedule() if url.startswith("memory://") else RedisSchedule(url)


def rate_limit_schedule() -> Schedule:
    return _schedule(settings.PROVIDERS_RATE_LIMIT_STORAGE_URL, os.getpid())


def parse_rate_limit(text: str) -> list[RateLimitItem]:
    """`15/second;500/minute` -> its windows, shortest first; raises ValueError when malformed."""
    return sorted(parse_many(text), key=lambda item: item.get_expiry()) if text else []


class RateLimiter:
    def __init__(self, name: str, rate_limit: str, *, max_wait: float | None = None) -> None:
        self.name = name
        self.items = parse_rate_limit(rate_limit)
        self.windows = [Window(item.amount, item.get_expiry()) for item in self.items]
        self.max_wait = settings.ENRICHMENT_PROVIDER_MAX_WAIT if max_wait is None else max_wait

    def acquire(self, before_sending: Callable[[], None] | None = None) -> float:
        """Blocks the calling thread until its reserved send time, and returns the seconds waited
        (0 when there was room at once). A lookup that waits long calls `before_sending` shortly
        before its slot (e.g. to give up when the provider's circuit opened meanwhile). One whose
        thread woke late for its slot (LATE_SECONDS) sends only when the sends reserved after it
        leave room for it now, else takes another slot. When the
        wait would exceed `max_wait`, raises a transient error with `retry_after` instead, so the
        lookup is retried later rather than hold a thread for long."""
        schedule = rate_limit_schedule()
        started = time.monotonic()
        while True:
            waited = time.monotonic() - started
            slot = schedule.reserve(self.name, self.windows, max(self.max_wait - waited, 0.0))
            if not slot.reserved:
                raise RateLimitWait(retry_after=slot.wait)
            if slot.wait <= 0:
                return waited
            send_at = time.monotonic() + slot.wait
            if slot.wait > CHECK_LEAD_SECONDS:
                time.sleep(slot.wait - CHECK_LEAD_SECONDS)
                if schedule.pauses(self.name) != slot.pauses:
                    continue  # A "slow down" voided the slot: take one after the pause.
                if before_sending is not None:
                    before_sending()
            time.sleep(max(send_at - time.monotonic(), 0.0))
            late = time.monotonic() - send_at > LATE_SECONDS
            if late and not schedule.send_late(self.name, self.windows, slot):
                continue
            return time.monotonic() - started

    def pause(self, seconds: float) -> None:
        """Nobody sends to this provider for `seconds` (its own "slow down" hint)."""
        rate_limit_schedule().pause(self.name, self.windows, seconds)
