"""The polite crawler behind the ``site`` channel: robots.txt, sitemaps, pages.

Three layers, as in Scrapy: discovery (robots.txt, sitemaps, seeds), fetching
(the shared ``auditor.http.Fetcher`` with conditional GET) and extraction
(``auditor.extract``). The crawl is async; ``crawl_events`` runs it in a worker
thread with its own event loop and hands results to a synchronous consumer
through a bounded queue, so a 50,000-page shop streams in bounded memory.

Page classes (see docs/crawler.md): ``product``; ``gone`` (404/410: evidence
that the listing is absent); ``blocked`` (captcha, 401/403, 429 after retries);
``error`` (5xx, timeout, truncated, not HTML, too big); ``cached`` (unchanged
since the last read: 304, same body, or an unchanged sitemap ``lastmod``);
``disallowed`` (robots.txt); ``not_product`` (a page without product data).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import queue
import re
import threading
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Iterator, Mapping
from urllib.parse import urljoin, urlsplit

from auditor.errors import FetchError
from auditor.extract import Extraction, decode_html, extract
from auditor.http import FetchPolicy, Fetcher, conditional_headers
from auditor.values import parse_datetime

log = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")
MAX_SITEMAP_BYTES = 60_000_000  # sitemaps.org allows 50 MB uncompressed
MAX_SITEMAPS = 2_000
_CAPTCHA = re.compile(
    r"captcha|robot check|are you a (robot|human)|verify (that )?you are (a )?human|"
    r"cf-challenge|challenge-platform|px-captcha|unusual traffic|just a moment\.\.\.|"
    r"access denied|attention required", re.I)

PRODUCT, GONE, BLOCKED, ERROR, CACHED, DISALLOWED, NOT_PRODUCT = (
    "product", "gone", "blocked", "error", "cached", "disallowed", "not_product")


class CrawlFatal(Exception):
    """The whole site could not be read (robots.txt unreachable, site down)."""


# ============================================================================ robots.txt

@dataclass
class Robots:
    """robots.txt rules for one origin (RFC 9309 semantics via protego)."""

    origin: str
    parser: Any = None      # protego.Protego, or None for "allow all"
    disallow_all: bool = False
    reason: str | None = None

    def allowed(self, url: str, agent: str) -> bool:
        """Whether ``agent`` may fetch ``url``."""
        if self.disallow_all:
            return False
        return self.parser is None or self.parser.can_fetch(url, agent)

    def delay(self, agent: str) -> float:
        """Crawl-delay for ``agent`` in seconds (0 when none)."""
        if self.parser is None:
            return 0.0
        d = self.parser.crawl_delay(agent)
        return float(d) if d else 0.0

    def sitemaps(self) -> list[str]:
        """Sitemap URLs the file names."""
        return list(self.parser.sitemaps) if self.parser is not None else []


def parse_robots(origin: str, status: int | None, body: bytes | None,
                 reason: str | None = None) -> Robots:
    """robots.txt by outcome: 2xx parsed; 4xx allow all; 5xx or no answer disallow all."""
    if status is None or status >= 500:
        return Robots(origin, disallow_all=True,
                      reason=reason or f"robots.txt answered HTTP {status}")
    if status >= 400:
        return Robots(origin)
    from protego import Protego

    text = decode_html(body or b"", "text/plain")[0][:500_000]
    return Robots(origin, Protego.parse(text))


async def fetch_robots(fetcher: Fetcher, origin: str) -> Robots:
    """Fetch and parse ``origin``/robots.txt."""
    url = origin + "/robots.txt"
    try:
        resp = await fetcher.get(url, accept=())
    except FetchError as e:
        return parse_robots(origin, e.status, None, f"robots.txt: {e.reason}")
    return parse_robots(origin, resp.status, resp.body)


def agent_token(user_agent: str) -> str:
    """The product token robots.txt groups are matched against ('omni-auditor/0.1 (...)'
    -> 'omni-auditor')."""
    return (user_agent.split("/")[0].split() or ["*"])[0]


# ============================================================================ sitemaps

@dataclass(slots=True)
class SitemapEntry:
    """One page a sitemap lists."""

    loc: str
    lastmod: datetime | None = None


def _gunzip(data: bytes, limit: int = MAX_SITEMAP_BYTES) -> bytes:
    """Every member of a (multi-member) gzip, at most ``limit`` bytes in all.

    A gzip may hold several members one after the other (``cat a.gz b.gz``);
    reading only the first would silently drop the rest of the sitemap.
    A member cut short is an error, not a shorter sitemap.
    """
    out: list[bytes] = []
    size = 0
    rest = data
    while rest:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        chunk = d.decompress(rest, limit + 1 - size)
        size += len(chunk)
        out.append(chunk)
        if size > limit or d.unconsumed_tail:
            raise ValueError(f"sitemap decompresses to over {limit} bytes")
        if not d.eof:
            raise ValueError("gzip data ends early (truncated download)")
        rest = d.unused_data.lstrip(b"\0")  # some writers pad between members
        if rest and rest[:2] != b"\x1f\x8b":
            raise ValueError("unexpected bytes after a gzip member")
    return b"".join(out)


# The root element's end tag, then only blanks, comments or processing instructions.
_XML_END = re.compile(rb"</(?:[\w.-]+:)?(urlset|sitemapindex)\s*>(?:\s|<!--.*?-->|<\?.*?\?>)*\Z",
                      re.S)


def parse_sitemap(data: bytes) -> tuple[list[SitemapEntry], list[str]]:
    """(pages, child sitemaps) of a sitemap or sitemap index (gzip undone).

    XML sitemaps and text sitemaps (one URL per line, as sitemaps.org allows)
    are both read. An XML document that ends before its root element closes
    is an error: a truncated sitemap must never read as a shorter one.
    """
    from lxml import etree

    if data[:2] == b"\x1f\x8b":
        data = _gunzip(data)
    if is_text_sitemap(data):
        return parse_text_sitemap(data), []
    pages: list[SitemapEntry] = []
    children: list[str] = []
    ctx = etree.iterparse(io.BytesIO(data), events=("end",), resolve_entities=False,
                          no_network=True, huge_tree=False, recover=True)
    try:
        for _ev, el in ctx:
            _sitemap_element(el, pages, children)
    except etree.Error as e:
        raise ValueError(f"not a sitemap: {e}") from None
    root = ctx.root.tag.rsplit("}", 1)[-1] if ctx.root is not None and \
        isinstance(ctx.root.tag, str) else None
    if root not in ("urlset", "sitemapindex"):
        # an HTML error page answered with 200 must not look like an empty sitemap
        raise ValueError(f"not a sitemap: root element <{root}>")
    if not _XML_END.search(data[-4096:].rstrip(b"\0")):
        raise ValueError(f"the document ends before </{root}> (truncated): read "
                         f"{len(pages) + len(children)} entries, the rest is missing")
    return pages, children


def is_text_sitemap(data: bytes) -> bool:
    """Whether a (decompressed) sitemap is the plain-text kind: it starts with a URL."""
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:7].lower() == b"http://" or head[:8].lower() == b"https://"


def parse_text_sitemap(data: bytes) -> list[SitemapEntry]:
    """The pages of a text sitemap: one absolute http(s) URL per line (UTF-8).

    Blank lines are skipped; a line that is not an http(s) URL makes the file
    unreadable as a sitemap (an HTML or error page is never read as one).
    """
    pages: list[SitemapEntry] = []
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if not line.lower().startswith(("http://", "https://")) or any(c.isspace() for c in line):
            raise ValueError(f"text sitemap line {n} is not an http(s) URL: {line[:80]!r}")
        pages.append(SitemapEntry(line))
    return pages


def _sitemap_element(el: Any, pages: list[SitemapEntry], children: list[str]) -> None:
    tag = el.tag.rsplit("}", 1)[-1] if isinstance(el.tag, str) else ""
    if tag not in ("url", "sitemap"):
        return
    loc = lastmod = None
    for ch in el:
        t = ch.tag.rsplit("}", 1)[-1] if isinstance(ch.tag, str) else ""
        if t == "loc" and ch.text:
            loc = ch.text.strip()
        elif t == "lastmod" and ch.text:
            lastmod = ch.text.strip()
    if loc:
        if tag == "sitemap":
            children.append(loc)
        else:
            pages.append(SitemapEntry(loc, _lastmod(lastmod)))
    el.clear()  # keeps memory flat on a 50,000-URL sitemap


def _lastmod(text: str | None) -> datetime | None:
    if not text:
        return None
    try:  # the common W3C forms, fast; parse_datetime for the rest
        dt = datetime.fromisoformat(text)
        return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    except ValueError:
        pass
    try:
        return parse_datetime(text)
    except ValueError:
        return None


async def read_sitemaps(fetcher: Fetcher, roots: list[str], allowed: Callable[[str], bool],
                        problems: list[str], max_depth: int = 3,
                        optional: frozenset[str] = frozenset()) -> dict[str, datetime | None]:
    """Every page URL (with lastmod) reachable from ``roots`` through sitemap indexes.

    A root in ``optional`` (a guessed /sitemap.xml) may be missing without it
    being a problem; any other unreadable sitemap is recorded in ``problems``.
    """
    out: dict[str, datetime | None] = {}
    seen: set[str] = set()
    todo = [(r, 0) for r in roots]
    while todo and len(seen) < MAX_SITEMAPS:
        url, depth = todo.pop(0)
        if url in seen:
            continue
        seen.add(url)
        if not allowed(url):
            problems.append(f"{url}: sitemap disallowed by robots.txt")
            continue
        try:
            resp = await fetcher.get(url, accept=())
        except FetchError as e:
            problems.append(f"{url}: {e.reason}")
            continue
        if resp.status >= 400:
            if not (url in optional and resp.status in (404, 410)):
                problems.append(f"{url}: HTTP {resp.status}")
            continue
        try:
            pages, children = parse_sitemap(resp.body or b"")
        except (ValueError, OSError, EOFError, zlib.error) as e:
            problems.append(f"{url}: unreadable sitemap: {e}")
            continue
        for p in pages:
            loc = p.loc.split("#")[0]
            known = out.get(loc)
            if loc not in out or (p.lastmod and (known is None or p.lastmod > known)):
                out[loc] = p.lastmod
        if depth < max_depth:
            todo += [(urljoin(url, c), depth + 1) for c in children]
    return out


# ============================================================================ pages

@dataclass(slots=True)
class CacheEntry:
    """What the store remembers about a URL from the last read."""

    etag: str | None = None
    last_modified: str | None = None
    fetched_at: datetime | None = None
    sha256: str | None = None
    had_product: bool = False


@dataclass(slots=True)
class PageResult:
    """One page's outcome, handed from the crawl thread to the consumer."""

    url: str
    kind: str
    reason: str | None = None
    extraction: Extraction | None = None
    final_url: str | None = None
    status: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    sha256: str | None = None
    content_type: str | None = None
    rendered: bool = False


@dataclass
class CrawlSettings:
    """What one crawl does; built from a site channel's options."""

    origin: str                       # scheme://host[:port] of the shop
    user_agent: str
    concurrency: int = 8
    max_pages: int = 50_000
    sitemaps: list[str] = field(default_factory=list)
    seeds: list[str] = field(default_factory=list)
    url_patterns: list[str] = field(default_factory=list)
    selectors: Mapping[str, str] = field(default_factory=dict)
    render: str | None = None
    render_concurrency: int = 2
    trust_lastmod: bool = True
    revalidate_after: timedelta = timedelta(hours=24)
    obey_robots: bool = True
    crawl_delay: float | None = None  # overrides robots.txt Crawl-delay when set
    # Configured request headers and basic auth: sent to the shop's origin only.
    headers: Mapping[str, str] = field(default_factory=dict)
    auth: tuple[str, str] | None = None
    # Seconds the whole crawl may take (the channel's source_deadline); None: no limit.
    deadline: float | None = None


def classify_error(e: FetchError) -> tuple[str, str]:
    """(class, reason) of a failed fetch."""
    if e.status in (401, 403, 429):
        return BLOCKED, e.reason if e.status != 429 else f"{e.reason} (rate limited after retries)"
    return ERROR, e.reason


def looks_blocked(text: str) -> bool:
    """A captcha or robot-check page (only asked of pages without product data)."""
    return _CAPTCHA.search(text[:200_000]) is not None


class Crawl:
    """One crawl of one shop; ``run(emit)`` sends PageResults (singly, or in lists)."""

    def __init__(self, settings: CrawlSettings, policy: FetchPolicy,
                 cache: Mapping[str, CacheEntry], now: datetime | None = None,
                 transport: Any = None):
        self.s = settings
        self.policy = policy
        self.cache = cache
        self.now = now or datetime.now(timezone.utc)
        self.transport = transport
        self.agent = agent_token(settings.user_agent)
        self.robots: dict[str, Robots] = {}
        self.problems: list[str] = []   # discovery trouble: makes the read partial
        self.truncated = 0              # pages left out by max_pages
        self.discovered = 0
        self._patterns = [re.compile(p) for p in settings.url_patterns]
        self._renderer: Any = None

    def wanted(self, url: str) -> bool:
        """Whether a discovered URL is a product page to read (url_patterns)."""
        return not self._patterns or any(p.search(url) for p in self._patterns)

    async def _robots_for(self, fetcher: Fetcher, url: str) -> Robots:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        r = self.robots.get(origin)
        if r is None:
            # robots.txt is one of the host's requests: paced and limited like a page, with
            # a configured crawl_delay from the start; a Crawl-delay it names then spaces
            # the next request from robots.txt itself (auditor.http._HostGate). In a
            # distributed run one worker at a time reads it and publishes the delay, which
            # then spaces every worker's requests from their first (Fetcher.discovering).
            async with fetcher.discovering(origin + "/"):
                if self.s.crawl_delay:
                    fetcher.set_host_delay(origin + "/", self.s.crawl_delay)
                r = self.robots[origin] = await fetch_robots(fetcher, origin)
                delay = r.delay(self.agent) if self.s.crawl_delay is None else self.s.crawl_delay
                await fetcher.share_host_delay(origin + "/", delay or 0.0)
        return r

    def _allowed(self, url: str) -> bool:
        if not self.s.obey_robots:
            return True
        parts = urlsplit(url)
        r = self.robots.get(f"{parts.scheme}://{parts.netloc}")
        return r is None or r.allowed(url, self.s.user_agent)

    def plan(self, found: Mapping[str, datetime | None]) -> list[tuple[str, bool]]:
        """Pages to read as (url, skip_fetch), changed and new first, capped at max_pages.

        A page whose sitemap ``lastmod`` is not newer than our last read, read
        within ``revalidate_after``, is taken from the cache without a request.
        """
        fresh, revalidate, unchanged = [], [], []
        for url, lastmod in found.items():
            c = self.cache.get(url)
            if c is None or c.fetched_at is None:
                fresh.append(url)
            elif lastmod is not None and lastmod > c.fetched_at:
                fresh.append(url)
            elif (self.s.trust_lastmod and lastmod is not None and c.had_product
                  and self.now - c.fetched_at < self.s.revalidate_after):
                unchanged.append(url)
            else:
                revalidate.append(url)
        order = [(u, False) for u in fresh + revalidate] + [(u, True) for u in unchanged]
        if len(order) > self.s.max_pages:
            self.truncated = len(order) - self.s.max_pages
            order = order[: self.s.max_pages]
        return order

    async def run(self, emit: Callable[[Any], Awaitable[None]],
                  stop: threading.Event | None = None) -> None:
        """Discover, then fetch and classify every planned page."""
        async with Fetcher(self.policy, headers=self.s.headers, auth=self.s.auth,
                           credential_origins=[self.s.origin],
                           transport=self.transport) as fetcher:
            root = await self._robots_for(fetcher, self.s.origin)
            if root.disallow_all and self.s.obey_robots:
                raise CrawlFatal(f"{self.s.origin}: {root.reason}; the site is treated as "
                                 f"unreadable (nothing concluded about its listings)")
            guess = self.s.origin + "/sitemap.xml"
            sitemaps = self.s.sitemaps or root.sitemaps() or [guess]
            found = await read_sitemaps(fetcher, sitemaps, self._allowed, self.problems,
                                        optional=frozenset({guess} - set(self.s.sitemaps)
                                                           - set(root.sitemaps())))
            found = {u: lm for u, lm in found.items() if self.wanted(u)}
            for seed in self.s.seeds:
                found.setdefault(seed.split("#")[0], None)
            self.discovered = len(found)
            plan = self.plan(found)
            del found
            if self.s.render:
                from auditor.render import Renderer

                try:
                    self._renderer = await Renderer(self.policy, self.s.render_concurrency
                                                    ).__aenter__()
                except Exception as e:  # no browser: the channel cannot be read as configured
                    raise CrawlFatal(f"render = {self.s.render!r} but the browser did not "
                                     f"start: {str(e).splitlines()[0][:300]}") from None
            try:
                await self._pages(fetcher, plan, emit, stop)
            finally:
                if self._renderer is not None:
                    await self._renderer.__aexit__(None, None, None)

    async def _pages(self, fetcher: Fetcher, plan: list[tuple[str, bool]],
                     emit: Callable[[Any], Awaitable[None]],
                     stop: threading.Event | None) -> None:
        """Fetch the planned pages; ``emit`` takes a PageResult or a list of them."""
        # Unchanged pages need no request: hand them over in chunks, since one
        # cross-thread handoff per page cost more than the rest of a cached read.
        skipped = [u for u, skip in plan if skip]
        for i in range(0, len(skipped), 200):
            await emit([PageResult(u, CACHED, "sitemap lastmod unchanged")
                        for u in skipped[i:i + 200]])
        it = (u for u, skip in plan if not skip)

        async def worker() -> None:
            for url in it:
                if stop is not None and stop.is_set():
                    return
                await self._robots_for(fetcher, url)
                try:
                    res = await self.page(fetcher, url)
                except Exception as e:  # one page never takes the crawl down
                    log.exception("page %s", url)
                    res = PageResult(url, ERROR, f"crawler error: {e.__class__.__name__}: {e}")
                await emit(res)

        await asyncio.gather(*(worker() for _ in range(max(1, self.s.concurrency))))

    async def page(self, fetcher: Fetcher, url: str) -> PageResult:
        """Fetch one page (conditionally) and classify it."""
        if not self._allowed(url):
            return PageResult(url, DISALLOWED, "disallowed by robots.txt")
        c = self.cache.get(url)
        headers = conditional_headers(c.etag, c.last_modified) if c and c.had_product else {}
        try:
            resp = await fetcher.get(url, headers=headers, accept=HTML_TYPES)
        except FetchError as e:
            kind, reason = classify_error(e)
            return PageResult(url, kind, reason, status=e.status)
        common = dict(final_url=resp.url, status=resp.status, etag=resp.headers.get("etag"),
                      last_modified=resp.headers.get("last-modified"),
                      content_type=resp.content_type)
        if resp.not_modified:
            return PageResult(url, CACHED, "304 not modified", **common)
        if resp.status in (404, 410):
            return PageResult(url, GONE, f"HTTP {resp.status}", **common)
        if resp.status in (401, 403, 429):
            return PageResult(url, BLOCKED, f"HTTP {resp.status}", **common)
        if resp.status >= 400:
            return PageResult(url, ERROR, f"HTTP {resp.status}", **common)
        body = resp.body or b""
        digest = hashlib.sha256(body).hexdigest()
        common["sha256"] = digest
        if c is not None and c.had_product and c.sha256 == digest:
            return PageResult(url, CACHED, "body unchanged", **common)
        if not body.strip():
            return PageResult(url, ERROR, "empty body", **common)
        ctype = resp.headers.get("content-type")
        text = decode_html(body, ctype)[0]
        del body
        ex = extract(text, url, selectors=self.s.selectors)
        rendered = False
        if not ex.is_product and self._renderer is not None and not looks_blocked(text):
            from auditor.render import RenderError

            try:
                text = await self._renderer.render(url)
            except (RenderError, FetchError) as e:
                return PageResult(url, ERROR, str(e), **common)
            ex = extract(text, url, selectors=self.s.selectors)
            rendered = True
        if ex.is_product:
            return PageResult(url, PRODUCT, None, ex, rendered=rendered, **common)
        if ex.blocked:  # a captcha or consent wall: the page could not be seen
            return PageResult(url, BLOCKED, ex.blocked, **common)
        if ex.reason:  # a category listing, a soft 404: not a product page
            return PageResult(url, NOT_PRODUCT, ex.reason, rendered=rendered, **common)
        if looks_blocked(text):
            return PageResult(url, BLOCKED, "captcha or robot-check page", **common)
        return PageResult(url, NOT_PRODUCT, "no product data on the page", rendered=rendered,
                          **common)


# ============================================================================ thread bridge

_DONE = object()


@dataclass
class _Failure:
    error: BaseException


def crawl_events(crawl: Crawl, maxsize: int = 64, batch: int = 200) -> Iterator[list[PageResult]]:
    """Run ``crawl`` in a worker thread; yield its PageResults in lists as they come
    (everything waiting, up to ``batch``, so the consumer can batch store reads).

    The queue is bounded, so a slow consumer slows the crawl instead of
    buffering pages. Closing the iterator stops the crawl. A CrawlFatal (or a
    crawler bug) is re-raised in the consumer.
    """
    q: queue.Queue = queue.Queue(maxsize=maxsize)
    stop = threading.Event()

    async def emit(item: Any) -> None:
        while True:
            if stop.is_set():
                raise asyncio.CancelledError()
            try:
                q.put_nowait(item)
                return
            except queue.Full:
                await asyncio.sleep(0.002)

    async def bounded() -> None:
        if not crawl.s.deadline:
            return await crawl.run(emit, stop)
        try:
            async with asyncio.timeout(crawl.s.deadline):
                await crawl.run(emit, stop)
        except TimeoutError:
            raise CrawlFatal(f"the crawl did not finish within source_deadline "
                             f"({crawl.s.deadline:g} s); nothing is concluded from it") from None

    def target() -> None:
        try:
            asyncio.run(bounded())
        except asyncio.CancelledError:
            pass
        except BaseException as e:  # handed to the consumer
            _put_final(q, _Failure(e), stop)
            return
        _put_final(q, _DONE, stop)

    t = threading.Thread(target=target, name="site-crawl", daemon=True)
    t.start()
    try:
        while True:
            items = [q.get()]
            size = len(items[0]) if isinstance(items[0], list) else 1
            while size < batch:  # bounded by results, not queue items (lists count whole)
                try:
                    items.append(q.get_nowait())
                except queue.Empty:
                    break
                size += len(items[-1]) if isinstance(items[-1], list) else 1
            results = [r for i in items for r in (i if isinstance(i, list) else [i])
                       if isinstance(r, PageResult)]
            if results:
                yield results
            for item in items:
                if item is _DONE:
                    return
                if isinstance(item, _Failure):
                    raise item.error
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        t.join()


def _put_final(q: queue.Queue, item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return
        except queue.Full:
            continue


def fetch_page(url: str, allow_private: bool = False, user_agent: str | None = None,
               policy: FetchPolicy | None = None) -> tuple[bytes, str | None, str]:
    """One HTML page through the shared client and its guard: (body, content type,
    final URL). Raises FetchError for a refused, failed or non-HTML page."""
    if policy is None:
        policy = FetchPolicy(allow_private=allow_private, timeout=15.0, retries=1,
                             max_body_bytes=10_000_000,
                             allow_hosts={url})  # the page's origin (and its https upgrade)
        if user_agent:
            policy.user_agent = user_agent

    async def go() -> tuple[bytes, str | None, str]:
        async with Fetcher(policy) as f:
            resp = await f.get(url, accept=HTML_TYPES)
        if resp.status >= 400:
            raise FetchError(url, f"HTTP {resp.status}", resp.status)
        return resp.body or b"", resp.headers.get("content-type"), resp.url

    return asyncio.run(go())
