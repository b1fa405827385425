"""Rendering JavaScript shops with Playwright and the system Chromium.

Off by default (a channel sets ``render = "playwright"``). The browser is the
Debian ``chromium`` package, never one downloaded by ``playwright install``.
Every request the page makes passes the same outbound guard as the HTTP
client: hosts the source names (plus ``allow_hosts``), no private addresses
unless allowed. The browser never connects anywhere itself: each request it
makes is intercepted and made by the auditor's pinned client
(``auditor.http.pinned_client``), which resolves the host once, checks every
address and connects to the address it checked, so a name that changes between
the check and the connection (DNS rebinding) cannot reach an inside address.
The answer is handed back to the page (redirects too: the browser follows a
``Location`` with a new request, which is checked again).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import httpx

from auditor.errors import FetchError
from auditor.http import FetchPolicy, check_url, pinned_client

log = logging.getLogger(__name__)

CHROMIUM = os.environ.get("AUDITOR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
# Subresources a product page's data never needs: skipped to keep renders fast.
_SKIPPED = {"image", "media", "font"}
# Headers of the browser's request that the client sets itself (or that name the
# connection, not the request); the response's encoding headers go too, since the
# client hands the page a decoded body.
_REQUEST_DROP = {"host", "connection", "keep-alive", "content-length", "transfer-encoding",
                 "accept-encoding", "upgrade", "proxy-connection", "proxy-authorization", "te"}
_RESPONSE_DROP = {"content-encoding", "content-length", "transfer-encoding", "connection",
                  "keep-alive"}


class RenderError(Exception):
    """The browser could not render a page (reason in the message)."""


class Renderer:
    """A headless Chromium shared by one crawl; ``render(url)`` returns the page's DOM."""

    def __init__(self, policy: FetchPolicy, concurrency: int = 2, timeout: float | None = None,
                 executable: str | None = None):
        self.policy = policy
        self.timeout = timeout or policy.attempt_deadline
        self.executable = executable or CHROMIUM
        self.concurrency = max(1, concurrency)
        self._sem = asyncio.Semaphore(self.concurrency)
        self._pw: Any = None
        self._browser: Any = None
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> "Renderer":
        from playwright.async_api import async_playwright

        if not os.path.exists(self.executable):
            raise RenderError(f"{self.executable} not found: install Debian's chromium package "
                              f"(apt-get install chromium)")
        self._client = pinned_client(self.policy, max_connections=4 * self.concurrency)
        self._pw = await async_playwright().start()
        try:
            self._browser = await self._pw.chromium.launch(
                executable_path=self.executable, args=CHROMIUM_ARGS, headless=True)
        except Exception:
            await self._pw.stop()
            await self._client.aclose()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._browser is not None:
            await self._browser.close()
        if self._pw is not None:
            await self._pw.stop()
        if self._client is not None:
            await self._client.aclose()

    async def _route(self, route: Any) -> None:
        req = route.request
        if req.resource_type in _SKIPPED:
            await route.abort()
            return
        try:
            # scheme and origin here; the address when the pinned client connects
            await check_url(req.url, self.policy, resolve=False)
            status, headers, body = await asyncio.wait_for(
                self._fetch(req), self.policy.attempt_deadline)
        except (FetchError, httpx.HTTPError, OSError, asyncio.TimeoutError) as e:
            log.debug("render: refused or failed %s: %s", req.url,
                      getattr(e, "reason", None) or type(e).__name__)
            await route.abort()
            return
        await route.fulfill(status=status, headers=headers, body=body)

    async def _fetch(self, req: Any) -> tuple[int, dict[str, str], bytes]:
        """Make the browser's request with the pinned client: (status, headers, body)."""
        assert self._client is not None
        sent = {k: v for k, v in (await req.all_headers()).items()
                if not k.startswith(":") and k.lower() not in _REQUEST_DROP}
        limit = self.policy.max_body_bytes
        async with self._client.stream(req.method, req.url, headers=sent,
                                       content=req.post_data_buffer) as resp:
            chunks, size = [], 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise FetchError(req.url, f"body exceeds max_body_bytes ({limit})")
                chunks.append(chunk)
        headers: dict[str, str] = {}
        for k, v in resp.headers.multi_items():
            k = k.lower()
            if k in _RESPONSE_DROP:
                continue
            # Playwright takes several Set-Cookie values joined by newlines
            headers[k] = f"{headers[k]}{chr(10) if k == 'set-cookie' else ', '}{v}" \
                if k in headers else v
        return resp.status_code, headers, b"".join(chunks)

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
