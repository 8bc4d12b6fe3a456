"""What the Redis broker holds: whether it answers, and which jobs still have a message in
it, so that the stale-job sweep re-sends only the jobs whose message was lost."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

import redis

from quarry.core.errors import QuarryError

# kombu's Redis transport: one list per queue and priority step, delivered-but-unacknowledged
# messages in a hash, with their delivery time in a sorted set.
PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)
UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class BrokerUnavailableError(QuarryError):
    """The broker (Redis) does not answer: nothing can be queued now."""


class QueueFullError(QuarryError):
    """Too many jobs wait in the queue; the client should come back later."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _client(url: str, timeout_s: float) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)


def ping(url: str, timeout_s: float = 1.0) -> bool:
    """Whether the broker answers within `timeout_s`."""
    client = _client(url, timeout_s)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def pending_job_ids(url: str, queues: Iterable[str], fresh_s: float, timeout_s: float = 2.0) -> set[str]:
    """Ids in the messages waiting in `queues`, or delivered to a worker less than `fresh_s`
    ago and not yet acknowledged (a message delivered longer ago to a worker that never
    claimed its job is held by a dead worker). Raises BrokerUnavailableError."""
    client = _client(url, timeout_s)
    found: set[str] = set()
    try:
        messages: list[Any] = []
        for queue in queues:
            for key in (queue, *(f"{queue}{PRIORITY_SEP}{p}" for p in PRIORITY_STEPS)):
                messages.extend(client.lrange(key, 0, -1))
        recent: list[Any] = client.zrangebyscore(UNACKED_INDEX, time.time() - fresh_s, "+inf")
        if recent:
            messages.extend(client.hmget(UNACKED, recent))
        for raw in messages:
            if raw:
                found.update(m.decode() for m in _UUID.findall(bytes(raw)))
    except redis.RedisError as exc:
        raise BrokerUnavailableError(f"the broker does not answer: {exc}") from exc
    finally:
        client.close()
    return found
