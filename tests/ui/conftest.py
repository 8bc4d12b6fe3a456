"""Browser tests of the web UI: Debian's chromium driven by Playwright (never a browser
download) against the real service (uvicorn, a Celery worker, Redis) started by the tests.
Screenshots go to test-artifacts/ui/."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import ADMIN, Live, free_port, live_service

CHROMIUM = os.environ.get("QUARRY_TEST_CHROMIUM", "/usr/bin/chromium")
# Without the networking flags Chromium keeps trying to reach Google's hosts, which a closed
# network refuses; a fresh profile per launch comes from Playwright.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


def _required(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (required under CI=true; `make test` installs Debian's chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="package")  # Playwright's sync API holds an event loop: stop it when the UI tests end
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        _required(f"no chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _required("the playwright package is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory, fresh_redis: Callable[[], str]) -> Iterator[Live]:
    yield from live_service(tmp_path_factory, "ui-service", fresh_redis())


@pytest.fixture
def page(browser: Any, live: Live, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (empty session storage) with the page's errors collected;
    a test fails if the page threw."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    yield page
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        shot(page, f"FAILED-{request.node.name}")
    context.close()
    assert not errors, f"the page threw: {errors}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]


def shot(page: Any, name: str, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def open_ui(page: Any, live: Live, key: str = ADMIN, view: str = "") -> None:
    """Open the UI and enter the key in the key dialog, as a user does."""
    page.goto(live.url + "/" + (f"#{view}" if view else ""))
    page.wait_for_selector("#key-dialog[open]")
    page.fill("#key-input", key)
    page.press("#key-input", "Enter")
    page.wait_for_selector("#key-dialog", state="hidden")


class ApiOnly:
    """The API alone (no worker) on a port of its own, for what needs no ingestion job."""

    def __init__(self, settings: Any) -> None:
        import uvicorn

        from quarry.api.app import create_app

        self.url = f"http://127.0.0.1:{settings.service.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.service.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 120
        while not self.server.started and time.time() < deadline:
            time.sleep(0.1)
        assert self.server.started, "the API did not start"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def api_settings(tmp: Path, **sections: Any) -> Any:
    from tests.conftest import make_settings

    service = {"admin_key": ADMIN, "port": free_port(), **sections.pop("service", {})}
    return make_settings(tmp, service=service, **sections)
