"""The FastAPI application. Everything heavy is built in the lifespan."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from prometheus_client import Counter, Histogram

from quarry.api import docs, errors
from quarry.api.routers import admin, ask, collections, evals, jobs, research
from quarry.api.services import Services
from quarry.core.settings import Settings, get_settings

REQUESTS = Counter("quarry_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("quarry_http_request_seconds", "HTTP request latency", ["method", "route"])


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """The API; `services` may be passed in (tests), else they are built from settings."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = services if services is not None else await asyncio.to_thread(build_services, settings)
        app.state.services = own
        watchdog = asyncio.create_task(own.watch()) if own.celery is not None else None
        try:
            yield
        finally:
            if watchdog:
                watchdog.cancel()
            if own.model is not None:
                await own.model.aclose()

    app = FastAPI(
        title="Quarry",
        version="0.1.0",
        description="Cited answers over large document collections. Authenticate with `Authorization: Bearer <key>`.",
        lifespan=lifespan,
        docs_url=None,  # served from the app's own assets below, not a CDN
        redoc_url=None,
    )
    errors.install(app)
    docs.mount(app)
    for router in (collections.router, ask.router, research.router, evals.router, jobs.router, admin.router):
        app.include_router(router)

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        route = getattr(request.scope.get("route"), "path", "unmatched")
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
        return response

    from quarry.ui import mount

    mount(app)
    return app


def build_services(settings: Settings) -> Services:
    from quarry.agents.llm.factory import make_chat_model
    from quarry.api.keys import KeyStore
    from quarry.retrieval.library import Library
    from quarry.workers.jobs import JobStore

    library = Library(settings)
    _ = library.embedder.dimension  # load the model now, not on the first request
    celery = None
    if settings.service.redis_url:
        from quarry.workers.app import make_celery

        celery = make_celery(settings)
    engine = library.store.engine
    return Services(
        settings=settings,
        library=library,
        jobs=JobStore(engine),
        keys=KeyStore(engine),
        celery=celery,
        model=make_chat_model(settings.llm),
    )
