"""/docs and /redoc render in a real browser with every request to another host blocked:
their scripts and styles come from the app, not a CDN."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.ui.conftest import ApiOnly, api_settings, shot


@pytest.mark.parametrize(("path", "ready"), [("/docs", ".swagger-ui .opblock"), ("/redoc", "[role=menuitem]")])
def test_api_docs_work_offline(browser: Any, tmp_path: Path, path: str, ready: str) -> None:
    api = ApiOnly(api_settings(tmp_path))
    context = browser.new_context()
    elsewhere: list[str] = []
    errors: list[str] = []

    def route(r: Any) -> None:
        if urlsplit(r.request.url).netloc == urlsplit(api.url).netloc:
            r.continue_()
        else:
            elsewhere.append(r.request.url)
            r.abort()

    try:
        context.route("**/*", route)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        response = page.goto(api.url + path)
        assert response is not None and response.status == 200
        assert response.headers.get("x-content-type-options") == "nosniff"
        page.wait_for_selector(ready, timeout=30_000)
        assert "/v1/health" in page.content()  # the operations came from /openapi.json
        shot(page, f"docs{path.replace('/', '-')}")
        assert not elsewhere, f"the page asked other hosts for {elsewhere}"
        assert not errors, errors
    finally:
        context.close()
        api.stop()
