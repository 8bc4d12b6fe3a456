"""The health check: database, Redis and workers reachable. A slow worker ping is tried
again and a worker seen moments ago still counts, so a busy service does not flap; only the
admin key gets the reasons (they name internal addresses and errors)."""

from __future__ import annotations

import asyncio
import secrets
import time

from sqlalchemy import text

from quarry.api.schemas import Health
from quarry.api.services import Services

PING_TIMEOUTS_S = (1.0, 2.0)  # a busy machine answers late: one more, longer try


async def check(services: Services, authorization: str | None) -> Health:
    details: dict[str, str] = {}

    def db() -> bool:
        try:
            with services.library.store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception as exc:  # reported in the body, not raised
            details["database"] = str(exc)[:200]
            return False

    def broker() -> tuple[bool, int]:
        if services.celery is None:
            details["redis"] = "no broker configured"
            return False, 0
        try:
            with services.celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
        except Exception as exc:
            details["redis"] = str(exc)[:200]
            return False, 0
        replies: list[object] = []
        for timeout in PING_TIMEOUTS_S:
            try:
                replies = services.celery.control.ping(timeout=timeout) or []
            except Exception as exc:
                details["workers"] = str(exc)[:200]
            if replies:
                break
        return True, len(replies)

    database, (redis_ok, workers) = await asyncio.gather(asyncio.to_thread(db), asyncio.to_thread(broker))
    now = time.monotonic()
    seen = services.workers_seen
    if workers:
        services.workers_seen = (now, workers)
    elif redis_ok and seen is not None and now - seen[0] <= services.settings.service.health_cache_s:
        workers = seen[1]  # answered moments ago: a missed ping, not a dead worker
        details["workers"] = f"no ping reply now; {workers} answered {now - seen[0]:.0f}s ago"
    ok = database and redis_ok and workers > 0
    return Health(
        status="ok" if ok else "degraded",
        database=database,
        redis=redis_ok,
        workers=workers,
        details=details if is_admin(services, authorization) else {},
    )


def is_admin(services: Services, authorization: str | None) -> bool:
    admin = services.settings.service.admin_key
    if not admin or not authorization or not authorization.lower().startswith("bearer "):
        return False
    return secrets.compare_digest(authorization.split(" ", 1)[1].strip(), admin.get_secret_value())
