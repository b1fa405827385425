"""Rendering JavaScript shops with Playwright and the system Chromium.

Off by default (a channel sets ``render = "playwright"``). The browser is the
Debian ``chromium`` package, never one downloaded by ``playwright install``.
Every request the page makes passes the same outbound guard as the HTTP
client: hosts the source names (plus ``allow_hosts``), no private addresses
unless allowed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from auditor.errors import FetchError
from auditor.http import FetchPolicy, check_url

log = logging.getLogger(__name__)

CHROMIUM = os.environ.get("AUDITOR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
# Subresources a product page's data never needs: skipped to keep renders fast.
_SKIPPED = {"image", "media", "font"}


class RenderError(Exception):
    """The browser could not render a page (reason in the message)."""


class Renderer:
    """A headless Chromium shared by one crawl; ``render(url)`` returns the page's DOM."""

    def __init__(self, policy: FetchPolicy, concurrency: int = 2, timeout: float | None = None,
                 executable: str | None = None):
        self.policy = policy
        self.timeout = timeout or policy.attempt_deadline
        self.executable = executable or CHROMIUM
        self._sem = asyncio.Semaphore(max(1, concurrency))
        self._pw: Any = None
        self._browser: Any = None

    async def __aenter__(self) -> "Renderer":
        from playwright.async_api import async_playwright

        if not os.path.exists(self.executable):
            raise RenderError(f"{self.executable} not found: install Debian's chromium package "
                              f"(apt-get install chromium)")
        self._pw = await async_playwright().start()
        try:
            self._browser = await self._pw.chromium.launch(
                executable_path=self.executable, args=CHROMIUM_ARGS, headless=True)
        except Exception:
            await self._pw.stop()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._browser is not None:
            await self._browser.close()
        if self._pw is not None:
            await self._pw.stop()

    async def _route(self, route: Any) -> None:
        req = route.request
        if req.resource_type in _SKIPPED:
            await route.abort()
            return
        try:
            await check_url(req.url, self.policy)
        except FetchError as e:
            log.debug("render: refused %s: %s", req.url, e.reason)
            await route.abort()
            return
        await route.continue_()

    async def render(self, url: str) -> str:
        """The HTML of ``url`` after its scripts ran (network idle or the timeout)."""
        await check_url(url, self.policy)
        async with self._sem:
            ctx = await self._browser.new_context(user_agent=self.policy.user_agent,
                                                  service_workers="block")
            try:
                page = await ctx.new_page()
                await page.route("**/*", self._route)
                ms = int(self.timeout * 1000)
                try:
                    resp = await page.goto(url, wait_until="load", timeout=ms)
                except Exception as e:
                    raise RenderError(f"render failed: {str(e).splitlines()[0][:200]}") from None
                if resp is not None and resp.status >= 400:
                    raise RenderError(f"render: HTTP {resp.status}")
                try:
                    await page.wait_for_load_state("networkidle", timeout=min(ms, 5000))
                except Exception:
                    pass  # pages that poll forever: take the DOM as it is
                return await page.content()
            finally:
                await ctx.close()
