"""The brand's own web shop, crawled politely and read from its product pages.

Discovery, fetching and classification live in ``auditor.crawl``; extraction in
``auditor.extract``. This module turns page results into Listings and keeps the
conditional-GET cache in the store. Only product pages and gone pages (404/410)
are evidence; blocked and failed pages make their listing unknown, which keeps
the run from concluding anything is missing.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

from auditor.configtypes import str_list as _str_list
from auditor.connector import Connector, SourceContext
from auditor.crawl import (BLOCKED, CACHED, DISALLOWED, ERROR, GONE, NOT_PRODUCT, PRODUCT,
                           CacheEntry, Crawl, CrawlFatal, CrawlSettings, PageResult, crawl_events)
from auditor.errors import SourceError
from auditor.extract import Extraction, SELECTOR_FIELDS, iter_listing_extractions, split_selector
from auditor.http import FetchPolicy
from auditor.model import Listing, ModelError, Money
from auditor.options import Opt
from auditor.plugins import register_connector

if TYPE_CHECKING:
    from auditor.storage import CacheStore

log = logging.getLogger(__name__)
CACHE_BATCH = 200

# Query parameters that select a variant or tag a visit, never another product: a
# page reached with them is the same page (the listing key leaves them out).
IGNORED_PARAMS = ("variant", "utm_*", "gclid", "fbclid", "msclkid", "srsltid", "_pos", "_sid",
                  "_ss", "_psq", "_v")


def canonical_page(url: str, ignore: tuple[str, ...] | list[str] = IGNORED_PARAMS) -> str:
    """``url`` without its fragment and ignored query parameters, the rest sorted, so a
    page has one key whichever link (sitemap, master URL, ?variant=) reached it."""
    parts = urlsplit(url)
    exact = {p for p in ignore if not p.endswith("*")}
    prefixes = tuple(p[:-1] for p in ignore if p.endswith("*"))
    kept = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                  if k not in exact and not (prefixes and k.startswith(prefixes)))
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", urlencode(kept), ""))


def _selectors(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("expected a table of field = \"css selector\"")
    import soupsieve

    for k, spec in value.items():
        if k not in SELECTOR_FIELDS:
            raise ValueError(f"unknown field {k!r} (expected one of {', '.join(SELECTOR_FIELDS)})")
        css, _ = split_selector(spec)
        try:
            soupsieve.compile(css)
        except Exception as e:  # soupsieve.SelectorSyntaxError and friends
            raise ValueError(f"{k}: invalid CSS selector {css!r}: {str(e).splitlines()[0]}") from None
    return value


def _patterns(value: Any) -> list[str]:
    import re

    for p in _str_list(value):
        try:
            re.compile(p)
        except re.error as e:
            raise ValueError(f"bad regular expression {p!r}: {e}") from None
    return value


@register_connector
class SiteConnector(Connector):
    """Crawls a web shop (sitemaps, master URLs, patterns) and reads each product page."""

    type = "site"
    help = "The web shop itself: sitemaps, robots.txt, JSON-LD/microdata/OpenGraph product pages."
    options = (
        Opt("sitemaps", _str_list, [], "Sitemap or sitemap-index URLs (default: those robots.txt "
            "names, else /sitemap.xml)."),
        Opt("url_patterns", _patterns, [], "Regular expressions: only sitemap URLs matching one "
            "are product pages (all when empty)."),
        Opt("start_urls", _str_list, [], "Further product page URLs to read every run."),
        Opt("master_urls", bool, True, "Also read the product URL of every master record "
            "(on this shop's host)."),
        Opt("max_pages", int, 50_000, "Most pages read per run; a capped run is partial."),
        Opt("selectors", _selectors, {}, "Per-site CSS selectors: field = \"css\" or "
            "\"css@attribute\" (fields: " + ", ".join(SELECTOR_FIELDS) + ")."),
        Opt("user_agent", str, None, "User-Agent for this shop (default [http].user_agent); "
            "robots.txt rules are matched on its first word."),
        Opt("concurrency", int, 8, "Page requests in flight at once for this crawl."),
        Opt("per_host_concurrency", int, 4, "Page requests in flight at once to one host."),
        Opt("rate", float, 0.0, "Requests per second to one host (0 = unlimited); "
            "robots.txt Crawl-delay slows it further."),
        Opt("timeout", float, 15.0, "Seconds before one read or connect times out."),
        Opt("deadline", float, 30.0, "Seconds one request may take in all, body included."),
        Opt("retries", int, 2, "Retries of a failed page (timeout, 5xx, 429) with backoff."),
        Opt("backoff", float, 0.5, "First retry delay in seconds; doubles each retry, jittered."),
        Opt("max_page_bytes", int, 5_000_000, "Largest page read, in bytes; larger is an error."),
        Opt("obey_robots", bool, True, "Obey robots.txt (turn off only for your own shop)."),
        Opt("crawl_delay", float, None, "Seconds between requests to the shop, overriding "
            "robots.txt Crawl-delay (for your own shop; 0 = none)."),
        Opt("trust_lastmod", bool, True, "Skip the request for a page whose sitemap lastmod is "
            "not newer than the last read (within revalidate_hours)."),
        Opt("revalidate_hours", float, 24.0, "Re-request pages read longer ago than this, even "
            "with an unchanged lastmod."),
        Opt("render", str, None, "Render pages without product data in a browser: "
            "\"playwright\" (system Chromium).", choices=("playwright",)),
        Opt("render_concurrency", int, 2, "Browser pages rendered at once."),
        Opt("ignore_params", _str_list, list(IGNORED_PARAMS),
            "Query parameters left out of a page's listing key (a trailing * matches a "
            "prefix): variant selectors and tracking tags, so a product keeps one key "
            "however its page was reached."),
    )

    def policy(self, ctx: SourceContext) -> FetchPolicy:
        """The channel's fetch policy with the crawl's own limits applied."""
        p = ctx.policy(list(self.channel.opt("sitemaps") or []))
        ch = self.channel
        p.user_agent = ch.opt("user_agent") or p.user_agent
        p.concurrency = ch.opt("concurrency")
        p.per_host_concurrency = ch.opt("per_host_concurrency")
        p.rate = ch.opt("rate")
        p.timeout = ch.opt("timeout")
        p.deadline = ch.opt("deadline")
        p.retries = ch.opt("retries")
        p.backoff = ch.opt("backoff")
        p.max_body_bytes = ch.opt("max_page_bytes")
        p.body_limit_name = "max_page_bytes"
        return p

    def read(self, ctx: SourceContext) -> Iterator[Listing]:
        """Crawl the shop; yield a Listing per product page (per variant on group pages)."""
        ch = self.channel
        source = ch.source or ""
        parts = urlsplit(source)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SourceError(source, "a site channel's source is the shop's URL "
                                      "(https://shop.example/)")
        origin = f"{parts.scheme}://{parts.netloc}"
        policy = self.policy(ctx)
        sitemaps = list(ch.opt("sitemaps") or [])
        if not sitemaps and parts.path.endswith((".xml", ".xml.gz", ".txt", ".txt.gz")):
            sitemaps = [source]
        seeds = list(ch.opt("start_urls") or [])
        if ch.opt("master_urls", True):
            seeds += [m.url for m in ctx.master.values() if m.url and policy.allows(m.url)]
        settings = CrawlSettings(
            headers=ctx.headers(), auth=ctx.auth(), deadline=ch.opt("source_deadline"),
            origin=origin, user_agent=policy.user_agent, concurrency=ch.opt("concurrency"),
            max_pages=ch.opt("max_pages"), sitemaps=sitemaps, seeds=seeds,
            url_patterns=list(ch.opt("url_patterns") or []), selectors=ch.opt("selectors") or {},
            render=ch.opt("render"), render_concurrency=ch.opt("render_concurrency"),
            trust_lastmod=ch.opt("trust_lastmod"),
            revalidate_after=timedelta(hours=ch.opt("revalidate_hours")),
            obey_robots=ch.opt("obey_robots"), crawl_delay=ch.opt("crawl_delay"))
        cache = _load_cache(ctx.store, origin)
        crawl = Crawl(settings, policy, cache)
        reader = _Reader(ctx, crawl, cache, set(seeds))
        try:
            yield from reader.consume(crawl_events(crawl))
        except CrawlFatal as e:
            raise SourceError(source, str(e)) from None
        finally:
            reader.flush()
        if crawl.problems:
            ctx.partial("discovery incomplete: " + "; ".join(crawl.problems[:5]))
        if crawl.truncated:
            ctx.partial(f"max_pages ({settings.max_pages}) reached: {crawl.truncated} pages "
                        f"not read this run")
        self.counts = dict(reader.counts)  # pages by class, for logs and benchmarks
        log.info("%s: %d pages discovered; %s", ch.name, crawl.discovered,
                 ", ".join(f"{k} {v}" for k, v in sorted(reader.counts.items())))


def _load_cache(store: CacheStore | None, origin: str) -> dict[str, CacheEntry]:
    if store is None:
        return {}
    out = {}
    for r in store.http_cache_validators(origin + "/"):
        try:  # written by this module with isoformat()
            fetched = datetime.fromisoformat(r["fetched_at"]) if r["fetched_at"] else None
        except ValueError:
            fetched = None
        if fetched is not None and fetched.tzinfo is None:
            fetched = fetched.replace(tzinfo=timezone.utc)
        out[r["url"]] = CacheEntry(r["etag"], r["last_modified"], fetched, r["sha256"],
                                   bool(r["had_extraction"]))
    return out


class _Reader:
    """Turns PageResults into Listings, store cache rows and ctx reports (consumer side)."""

    def __init__(self, ctx: SourceContext, crawl: Crawl, cache: dict[str, CacheEntry],
                 seeds: set[str]):
        self.ctx = ctx
        self.crawl = crawl
        self.cache = cache
        self.seeds = seeds
        self.rows: list[dict[str, Any]] = []
        self.counts: Counter = Counter()
        self._prefetched: dict[str, str] = {}
        self._yielded: set[tuple[str, str]] = set()
        self._ignore = list(ctx.channel.opt("ignore_params", list(IGNORED_PARAMS)))
        self._by_page: dict[str, list[str]] | None = None  # master URL page -> SKUs

    def consume(self, batches: Iterator[list[PageResult]]) -> Iterator[Listing]:
        for batch in batches:
            cached = [r.url for r in batch if r.kind == CACHED]
            self._prefetched = self.ctx.store.http_cache_extractions(cached) \
                if cached and self.ctx.store is not None else {}
            now = datetime.now(timezone.utc).isoformat()
            for res in batch:
                self.counts[res.kind] += 1
                yield from self.handle(res, now)

    def handle(self, res: PageResult, now: str) -> Iterator[Listing]:
        ctx = self.ctx
        row = {"url": res.url, "fetched_at": now, "status": res.status, "sha256": res.sha256,
               "content_type": res.content_type, "etag": res.etag,
               "last_modified": res.last_modified}
        if res.kind == PRODUCT:
            assert res.extraction is not None
            self._put({**row, "extraction": json.dumps(res.extraction.to_dict())})
            yield from self.listings(res.url, res.extraction)
        elif res.kind == CACHED:
            ex = self._cached(res.url)
            if ex is None:
                ctx.unknown(res.url, "unchanged page, but no earlier extraction is stored")
                return
            if res.status is not None:  # revalidated (304 or same body): renew the validators
                self._put({k: v for k, v in row.items() if v is not None})
            yield from self.listings(res.url, ex)
        elif res.kind == GONE:
            self._put({**row, "extraction": None})
        elif res.kind == NOT_PRODUCT:
            c = self.cache.get(res.url)
            if res.url in self.seeds or self.crawl.s.url_patterns or (c and c.had_product):
                key = canonical_page(res.url, self._ignore)
                ctx.unknown(key, f"{res.kind}: {res.reason}", self.skus_of(res.url, key))
            self._put({**row, "extraction": None})
        elif res.kind in (BLOCKED, ERROR, DISALLOWED):
            key = canonical_page(res.url, self._ignore)
            ctx.unknown(key, f"{res.kind}: {res.reason}", self.skus_of(res.url, key))

    def skus_of(self, url: str, key: str) -> list[str]:
        """Master SKUs a page that could not be read is known to show: masters naming it
        as their URL, and what the page showed when it was last read."""
        if self._by_page is None:
            self._by_page = {}
            for m in self.ctx.master.values():
                if m.url:
                    self._by_page.setdefault(canonical_page(m.url, self._ignore), []).append(m.sku)
        skus = list(self._by_page.get(key, ()))
        raw = self.ctx.store.http_cache_extractions([url]).get(url) \
            if self.ctx.store is not None else None
        if raw:
            try:
                ex = Extraction.from_dict(json.loads(raw))
            except (ValueError, TypeError, KeyError):
                ex = None
            if ex is not None:
                skus += [one.sku for one in iter_listing_extractions(ex)
                         if one.sku and one.sku not in skus]
        return skus

    def _cached(self, url: str) -> Extraction | None:
        raw = self._prefetched.get(url)
        if not raw:
            return None
        try:
            return Extraction.from_dict(json.loads(raw))
        except (ValueError, TypeError, KeyError):
            return None

    def _put(self, row: dict[str, Any]) -> None:
        if self.ctx.store is None:
            return
        self.rows.append(row)
        if len(self.rows) >= CACHE_BATCH:
            self.flush()

    def flush(self) -> None:
        """Write pending cache rows."""
        if self.rows and self.ctx.store is not None:
            self.ctx.store.http_cache_put_many(self.rows)
        self.rows = []

    def listings(self, url: str, ex: Extraction) -> Iterator[Listing]:
        # The key does not depend on how the page was reached: the page without its
        # variant and tracking parameters, plus #SKU for a variant (every variant of a
        # group page, or the one a ?variant= URL selects), so a variant read from its
        # group page (sitemap) and from its own ?variant= URL (master URL) is one listing.
        page = canonical_page(url, self._ignore)
        selected = "variant" in self._ignore and bool(
            parse_qs(urlsplit(url).query).get("variant"))
        for i, one in enumerate(iter_listing_extractions(ex)):
            # A variant reached twice (the group page and its ?variant= URL) is one listing.
            if one.sku:
                if (page, one.sku) in self._yielded:
                    continue
                self._yielded.add((page, one.sku))
            if ex.variants or (selected and one.sku):
                key = f"{page}#{one.sku or i}"
            else:
                key = page
            yield to_listing(self.ctx, key, url, one)


def to_listing(ctx: SourceContext, key: str, url: str, ex: Extraction) -> Listing:
    """A Listing from one page's (or variant's) extraction."""
    default = ctx.channel.opt("currency")
    price = sale = None
    cur = ex.currency or default
    if ex.price is not None:
        if cur:
            try:
                price = Money(ex.price, cur)
                sale = Money(ex.sale_price, cur) if ex.sale_price is not None else None
            except ModelError as e:
                ctx.bad(url, f"price {ex.price} {cur}: {e}")
        else:
            ctx.bad(url, f"price {ex.price} has no currency on the page; set the channel's "
                         f"currency")
    return Listing(
        channel=ctx.channel.name, key=key, fetched_at=ctx.now, url=ex.url or url, sku=ex.sku,
        title=ex.title, description=ex.description, brand=ex.brand, gtin=ex.gtin, mpn=ex.mpn,
        price=price, sale_price=sale, availability=ex.availability, images=tuple(ex.images),
        attributes=dict(ex.attributes), group_id=ex.group_id, evidence=url,
        sources=dict(ex.sources), confidence=dict(ex.confidence), hints=dict(ex.hints),
        alternatives={"price": tuple(str(p) for p in ex.region_prices)}
        if len(ex.region_prices) > 1 else {})
