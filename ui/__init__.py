"""The chat web UI: static files (no build step) served by the API at `/`.

The page talks to the same `/v1` API as any client, with the key the user enters (kept in
the browser's session storage). Nothing here reads settings or touches the services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"

# The page loads its own scripts and styles only, and talks to its own origin only; document
# text is always inserted as text, and the policy is a second line of defence.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def mount(app: FastAPI) -> None:
    """Serve the UI: `/` is the page, `/ui/...` its scripts and styles."""
    app.mount("/ui", StaticFiles(directory=STATIC), name="ui")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.middleware("http")
    async def ui_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        if request.url.path == "/" or request.url.path.startswith("/ui/"):
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
        return response
