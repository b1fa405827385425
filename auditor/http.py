"""The one HTTP client every connector uses, with an outbound guard.

Owns timeouts, retries with exponential backoff and jitter, ``Retry-After``,
a maximum body size, a redirect limit checked hop by hop, and the outbound
guard: requests go only to the origins a source names (plus those it allows),
never to an address that is not globally routable unless allowed, and the
connection goes to the very address that was checked (a name resolved again
by the client could point elsewhere: DNS rebinding). Configured headers and
basic auth go only to the origin they were configured for: a redirect to
another scheme, host or port drops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.cookiejar
import ipaddress
import logging
import math
import os
import random
import re
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable, Mapping, Sequence
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from auditor.errors import FetchError

log = logging.getLogger(__name__)

RETRY_STATUS = {429, 500, 502, 503, 504}


@dataclass
class FetchPolicy:
    """Limits for one source's requests."""

    user_agent: str = "omni-auditor/0.1"
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.5
    max_retry_after: float = 120.0
    max_body_bytes: int = 200_000_000
    max_redirects: int = 5
    concurrency: int = 16
    per_host_concurrency: int = 4
    allow_private: bool = False
    # Hosts or origins requests may go to (empty: any). See ``allows``.
    allow_hosts: set[str] = field(default_factory=set)
    # Overall seconds for one attempt, body included: a server trickling bytes
    # forever beats every per-read timeout. None means four times ``timeout`` for
    # bodies read into memory and no deadline for downloads to a file (big feeds).
    deadline: float | None = None
    # Requests per second to one host (0 = no pacing); robots.txt Crawl-delay
    # may slow a host further through ``Fetcher.set_host_delay``.
    rate: float = 0.0
    # Content types accepted (prefixes such as "text/html"); empty = any.
    accept_types: tuple[str, ...] = ()
    # Seconds a whole download to a file (``download``: feeds, exports) may take,
    # retries included; a server trickling bytes fails the source after it.
    source_deadline: float | None = 1800.0
    # The setting that sets ``max_body_bytes``, as errors name it (a site channel's
    # ``max_page_bytes``).
    body_limit_name: str = "max_body_bytes"

    @property
    def attempt_deadline(self) -> float:
        """Seconds one attempt may take from request to last body byte."""
        return self.deadline if self.deadline else self.timeout * 4

    @classmethod
    def from_config(cls, http: Mapping[str, Any], channel_opts: Mapping[str, Any] | None = None,
                    source_urls: Sequence[str] = ()) -> "FetchPolicy":
        p = cls(**{k: http[k] for k in (
            "user_agent", "timeout", "retries", "backoff", "max_retry_after", "max_body_bytes",
            "max_redirects", "concurrency", "per_host_concurrency", "allow_private", "deadline",
            "rate", "source_deadline") if k in http})
        ch = channel_opts or {}
        if ch.get("allow_private") is not None:
            p.allow_private = bool(ch["allow_private"])
        if ch.get("source_deadline") is not None:
            p.source_deadline = float(ch["source_deadline"])
        p.allow_hosts = {h.strip().lower() for h in ch.get("allow_hosts") or [] if h.strip()}
        for u in source_urls:
            o = origin(u)
            if o:
                p.allow_hosts.add(o)
        return p

    def allows(self, url: str) -> bool:
        """Whether ``url``'s origin is one this policy allows (any, when none is listed).

        Entries compare origins, never host names alone: ``https://cdn.example:8443``
        allows exactly that origin; ``cdn.example:8443`` that host and port over
        http or https; a bare ``cdn.example`` that host on the default ports (80
        and 443). An ``http://`` origin also allows its https upgrade on 443 (a
        shop redirecting to TLS), never the reverse.
        """
        if not self.allow_hosts:
            return True
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        try:
            port = parts.port or DEFAULT_PORTS.get(scheme)
        except ValueError:
            return False
        return any(_entry_allows(e, scheme, host, port) for e in self.allow_hosts)


DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> str | None:
    """``scheme://host:port`` of a URL (port always written), or None without a host."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in DEFAULT_PORTS or not host:
        return None
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}"


def _entry_allows(entry: str, scheme: str, host: str, port: int | None) -> bool:
    if "://" in entry:
        o = origin(entry)
        if o is None:
            return False
        e = urlsplit(o)
        if (e.hostname or "") != host:
            return False
        if e.scheme == scheme and e.port == port:
            return True
        # http://host (default port) also allows https://host on 443: an upgrade.
        return e.scheme == "http" and e.port == 80 and scheme == "https" and port == 443
    if entry.startswith("["):  # [v6] or [v6]:port
        h, _, rest = entry[1:].partition("]")
        want = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        h, _, want = entry.partition(":")
    else:  # a host name, an IPv4 address or a bare IPv6 address
        h, want = entry, ""
    if h != host:
        return False
    if want:
        return want.isdigit() and int(want) == port
    return port == DEFAULT_PORTS.get(scheme)


def is_public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an address is globally routable (``ipaddress``'s ``is_global``).

    Refuses private, loopback, link-local, shared address space (100.64.0.0/10,
    where cloud metadata services live), documentation, benchmarking, reserved
    and multicast ranges; an IPv4-mapped, 6to4 or Teredo IPv6 address is judged
    by the IPv4 address inside it.
    """
    if ip.version == 6:
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is not None and not is_public_address(inner):
            return False
    return ip.is_global and not ip.is_multicast


class _Unresolvable(FetchError):
    """DNS could not resolve a host: not a transient error, never retried."""


async def _getaddrinfo(host: str, port: int) -> list[str]:
    """Addresses of ``host`` (tests patch this to play DNS tricks)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(i[4][0]) for i in infos]


async def resolve_checked(host: str, port: int, policy: FetchPolicy, url: str = "") -> list[str]:
    """The addresses of ``host``, each checked against the policy; FetchError otherwise.

    Every address the name resolves to must be globally routable (unless
    ``allow_private``): a name that points partly inside is refused whole.
    """
    host = host.strip("[]")
    try:
        ips = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            ips = [ipaddress.ip_address(a.split("%")[0]) for a in await _getaddrinfo(host, port)]
        except socket.gaierror as e:
            raise _Unresolvable(url or host, f"cannot resolve {host}: {e.strerror or e}") from None
        except (OSError, UnicodeError) as e:
            raise _Unresolvable(url or host, f"cannot resolve {host}: {e}") from None
        if not ips:
            raise _Unresolvable(url or host, f"cannot resolve {host}: no address") from None
    if not policy.allow_private:
        for ip in ips:
            if not is_public_address(ip):
                raise FetchError(url or host, f"{host} resolves to {ip}, which is not a "
                                              f"globally routable address (private, loopback, "
                                              f"link-local, shared or reserved; set "
                                              f"allow_private to permit)")
    return [str(ip) for ip in ips]


async def check_url(url: str, policy: FetchPolicy, resolve: bool = True) -> None:
    """Refuse a URL outside the policy: wrong scheme, origin not allowed, private address.

    With ``resolve`` the host's addresses are checked too (the browser renderer,
    which resolves names itself); the shared client checks the address it
    connects to instead (``_PinnedBackend``), so it passes ``resolve=False``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError(url, f"scheme {parts.scheme!r} not allowed (http and https only)")
    host = (parts.hostname or "").lower()
    if not host:
        raise FetchError(url, "no host in URL")
    if not policy.allows(url):
        raise FetchError(url, f"origin {origin(url) or host} (host {host}) is not one this "
                              f"source names or allows (add it to allow_hosts)")
    if resolve and not policy.allow_private:
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise FetchError(url, "bad port in URL") from None
        await resolve_checked(host, port, policy, url)


_READ_ERRORS = (OSError, EOFError)


class _AsyncioStream(httpcore.AsyncNetworkStream):
    """An httpcore network stream on asyncio's own streams.

    httpcore's default (AnyIO) stream costs a cancel scope per read and write and a
    socket poll per reused connection; a crawl pays that on every page (bench/crawl.py).
    Timeouts are ``asyncio.timeout``; errors map to httpcore's exceptions as AnyIO's do.
    """

    __slots__ = ("_reader", "_writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader, self._writer = reader, writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError:
            raise httpcore.ReadTimeout("timed out reading") from None
        except _READ_ERRORS as e:
            raise httpcore.ReadError(str(e) or e.__class__.__name__) from None

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(buffer)
                await self._writer.drain()
        except TimeoutError:
            raise httpcore.WriteTimeout("timed out writing") from None
        except _READ_ERRORS as e:
            raise httpcore.WriteError(str(e) or e.__class__.__name__) from None

    async def aclose(self) -> None:
        self._writer.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError:
            self._writer.close()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from None
        except (ssl.SSLError, OSError, EOFError) as e:
            self._writer.close()
            raise httpcore.ConnectError(str(e) or e.__class__.__name__) from None
        return _AsyncioStream(self._reader, self._writer)

    def get_extra_info(self, info: str) -> Any:
        w = self._writer
        if info == "ssl_object":
            return w.get_extra_info("ssl_object")
        if info == "client_addr":
            return w.get_extra_info("sockname")
        if info == "server_addr":
            return w.get_extra_info("peername")
        if info == "socket":
            return w.get_extra_info("socket")
        if info == "is_readable":
            # An idle connection the server closed, or that holds unread bytes, is not
            # reused. asyncio reads eagerly, so look at what it has taken in already.
            r = self._reader
            return r.at_eof() or w.is_closing() or bool(getattr(r, "_buffer", b""))
        return None


class _AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend on asyncio streams (see ``_AsyncioStream``)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local_address, 0) if local_address else None,
                    limit=1 << 20)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as e:
            raise httpcore.ConnectError(str(e) or e.__class__.__name__) from None
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return _AsyncioStream(reader, writer)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        raise FetchError(path, "unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the outbound guard at the socket.

    The host is resolved here, once per connection, every address is checked,
    and the connection goes to a checked address: the client never resolves
    the name a second time (DNS rebinding). TLS still names the host (SNI and
    certificate checks use the URL's host; httpcore passes it separately) and
    so does the Host header.
    """

    def __init__(self, policy: FetchPolicy):
        self.policy = policy
        self.inner = _AsyncioBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        addresses = await resolve_checked(host, port, self.policy)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address,
                                                    socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                last = e
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        raise FetchError(path, "unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over ``_PinnedBackend`` (no proxies from the environment:
    a proxy would resolve names itself, out of the guard's reach)."""

    def __init__(self, policy: FetchPolicy, ssl_context: ssl.SSLContext, limits: httpx.Limits):
        super().__init__(verify=ssl_context, limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, network_backend=_PinnedBackend(policy))


def pinned_client(policy: FetchPolicy, max_connections: int = 4) -> httpx.AsyncClient:
    """A bare client with the outbound guard at the socket (``_PinnedBackend``): no
    redirects followed, no proxies, no credentials. For callers that make requests on
    someone else's behalf, such as the headless browser's (``auditor.render``)."""
    limits = httpx.Limits(max_connections=max_connections,
                          max_keepalive_connections=max_connections)
    ctx = _ssl_context()
    return httpx.AsyncClient(transport=_PinnedTransport(policy, ctx, limits), verify=ctx,
                             follow_redirects=False, trust_env=False, limits=limits,
                             timeout=httpx.Timeout(policy.timeout))


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def conditional_headers(etag: str | None, last_modified: str | None) -> dict[str, str]:
    """Request headers that make a GET conditional on the validators last seen."""
    h = {}
    if etag:
        h["If-None-Match"] = etag
    if last_modified:
        h["If-Modified-Since"] = last_modified
    return h


# Per-host limits shared with other processes (``auditor worker`` installs
# ``auditor.storage.jobs.HostPacer``): ``shared_pacer(host, interval)`` reserves the host's
# next slot wherever the other requests come from and returns the seconds to wait; its
# ``back_off(host, seconds)`` holds every process's requests to a host that answered 429
# or 503, and ``acquire(host, cap)`` / ``release(host, slot)`` keep the per-host in-flight
# cap across processes; ``lock_host``/``learn``/``unlock_host`` let one process at a time
# read a host's robots.txt and publish its Crawl-delay (``Fetcher.discovering``). None:
# each process keeps its own limits.
shared_pacer: Callable[..., float] | None = None
# Hosts a crawl of this process is learning the limits of (reading robots.txt) under the
# shared pacer: its lock is a session lock, which a second crawl in the same process (the
# same database session) would be granted again, so the process keeps its own claim too.
_learning: set[str] = set()
_learning_lock = threading.Lock()


def _claim_learning(host: str) -> bool:
    with _learning_lock:
        if host in _learning:
            return False
        _learning.add(host)
        return True


def _release_learning(host: str) -> None:
    with _learning_lock:
        _learning.discard(host)


class _HostGate:
    """Per-host concurrency and pacing (requests/second, Crawl-delay).

    Pacing spaces *departures*: a request leaves at least ``interval`` after the previous
    request to the host left (the interval in force now: a Crawl-delay learnt from
    robots.txt spaces the first page from robots.txt itself), and only once it holds its
    connection slots, so requests that queued behind a slow one do not leave together.
    """

    __slots__ = ("sem", "interval", "last_at", "host", "cap", "lock", "crawled")

    def __init__(self, concurrency: int, interval: float, host: str = ""):
        self.sem = asyncio.Semaphore(concurrency)
        self.interval = interval
        self.last_at = -math.inf  # when the last request to the host left (loop time)
        self.host = host
        self.cap = concurrency
        self.lock = asyncio.Lock()
        # A crawl reads the host's robots.txt (``Fetcher.discovering``): with a shared
        # pacer, the Crawl-delay another process published spaces these requests too.
        self.crawled = False

    @contextlib.asynccontextmanager
    async def in_flight(self) -> Any:
        """Held while a request to this host is in flight: with a shared pacer, one of
        the host's ``cap`` slots across processes (waiting for one to be free)."""
        pacer = shared_pacer
        acquire = getattr(pacer, "acquire", None)
        release = getattr(pacer, "release", None)
        if acquire is None or release is None:
            yield
            return
        delay = 0.02
        while (slot := await asyncio.to_thread(acquire, self.host, self.cap)) is None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
        try:
            yield
        finally:
            await asyncio.to_thread(release, self.host, slot)

    async def back_off(self, seconds: float) -> None:
        """The host answered 429/503: with a shared pacer, every process's next request
        to it waits ``seconds`` (this request's own retry waits them in any case)."""
        back_off = getattr(shared_pacer, "back_off", None)
        if back_off is not None:
            await asyncio.to_thread(back_off, self.host, seconds)

    async def pace(self) -> None:
        """Wait until this request may leave: ``interval`` after the previous request to
        the host left here, then (with a shared pacer) the slot every process books. Call
        it last before sending, with the connection slots held."""
        loop = asyncio.get_running_loop()
        pacer = shared_pacer
        shared = pacer is not None and (self.interval > 0
                                        or getattr(pacer, "back_off", None) is not None)
        if self.interval <= 0 and not shared:
            self.last_at = loop.time()
            return
        async with self.lock:  # one request at a time takes the host's next departure
            wait = self.last_at + self.interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if shared and pacer is not None:  # (no interval: only a shared back-off)
                if self.crawled:
                    wait = await asyncio.to_thread(pacer, self.host, self.interval, True)
                else:
                    wait = await asyncio.to_thread(pacer, self.host, self.interval)
                if wait > 0:
                    await asyncio.sleep(wait)
            self.last_at = loop.time()


@dataclass
class Response:
    """A completed fetch: final URL, status, headers and the body (bytes or a file)."""

    url: str
    status: int
    headers: httpx.Headers
    body: bytes | None = None
    path: Path | None = None
    not_modified: bool = False

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower case ('' when absent)."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """One TLS context per process: loading the CA bundle costs ~40 ms."""
    return httpx.create_ssl_context()


def lane_scheme(url: str) -> str:
    """Which lanes serve ``url``: "https" (verifying TLS) unless it is plain http."""
    return "http" if url[:5].lower() == "http:" else "https"


# For plain-http lanes only: verifies certificates against no CA at all, so it
# can never complete a TLS handshake (fails closed).
_NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class _Cookies(httpx.Cookies):
    """httpx's cookies on our jar, without building urllib's request and response
    wrappers for a response that sets no cookie (most of a crawl's pages)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)


class Fetcher:
    """An async HTTP client bound to one policy. Use as ``async with Fetcher(p) as f``."""

    def __init__(self, policy: FetchPolicy, headers: Mapping[str, str] | None = None,
                 auth: tuple[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 credential_origins: Iterable[str] | None = None):
        """``headers`` and ``auth`` are credentials: sent only to ``credential_origins``
        (``scheme://host:port``, see ``origin``) or, when None, to the origin of the
        URL each ``get`` asks for, and never after a redirect to another origin."""
        self.policy = policy
        self._headers = {"User-Agent": policy.user_agent}
        self._cred_headers = dict(headers or {})
        self._auth = auth
        self._cred_origins = None if credential_origins is None else {
            o for o in (origin(u) for u in credential_origins) if o}
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._clients: list[httpx.AsyncClient] = []
        # One cookie jar for every lane, as one client would have (consent or
        # session cookies set on a redirect must come back on the next hop).
        self._jar = http.cookiejar.CookieJar()
        self._lanes: dict[str, asyncio.Queue[httpx.AsyncClient]] = {}
        self._made: dict[str, int] = {}
        self._global = asyncio.Semaphore(policy.concurrency)
        self._hosts: dict[str, _HostGate] = {}

    def _credentials_for(self, asked: str, current: str) -> bool:
        """Whether configured headers and auth go with a request for ``current``
        (a hop of a ``get`` for ``asked``)."""
        if not self._cred_headers and not self._auth:
            return False
        o = origin(current)
        if o is None or o != origin(asked):
            return False
        return self._cred_origins is None or o in self._cred_origins

    async def __aenter__(self) -> "Fetcher":
        # Small clients ("lanes") instead of one pool of N connections: httpcore scans
        # its whole pool on every request, which cost a crawl at concurrency 16 about
        # 1 ms of CPU per page (bench/crawl.py). Lanes are made when first needed
        # (each costs ~5 ms), share one TLS context, and every limit lives in this
        # class, so this is still one client.
        # Lanes are kept per scheme: plain-http lanes never speak TLS, so they get a
        # context that trusts nothing (TLS through one would fail, never pass
        # unchecked) and a crawl of an http shop skips loading the CA bundle.
        self._lanes = {"http": asyncio.Queue(), "https": asyncio.Queue()}
        self._made = {"http": 0, "https": 0}
        if self._transport is not None:  # tests: one client, every slot on it
            self._client = self._new_lane("https")
            for q in self._lanes.values():
                for _ in range(self.policy.concurrency):
                    q.put_nowait(self._client)
        else:
            self._client = self._new_lane("http")
            self._lanes["http"].put_nowait(self._client)
        return self

    def _new_lane(self, scheme: str) -> httpx.AsyncClient:
        per = 1 if self._transport is None else self.policy.concurrency
        verify = _ssl_context() if scheme == "https" else _NO_TLS
        limits = httpx.Limits(max_connections=per, max_keepalive_connections=per)
        transport = self._transport or _PinnedTransport(self.policy, verify, limits)
        c = httpx.AsyncClient(
            headers=self._headers, follow_redirects=False, cookies=self._jar, verify=verify,
            timeout=httpx.Timeout(self.policy.timeout), transport=transport, limits=limits,
            trust_env=False)
        if isinstance(getattr(c, "_cookies", None), httpx.Cookies):
            c._cookies = _Cookies(self._jar)  # the shared jar, read only when cookies come
        self._clients.append(c)
        self._made[scheme] += 1
        return c

    async def _lane(self, scheme: str) -> httpx.AsyncClient:
        q = self._lanes[scheme]
        if q.empty() and self._transport is None and self._made[scheme] < self.policy.concurrency:
            return self._new_lane(scheme)
        return await q.get()

    async def __aexit__(self, *exc: Any) -> None:
        for c in self._clients:
            await c.aclose()

    def _gate(self, url: str) -> _HostGate:
        host = urlsplit(url).netloc.lower()
        gate = self._hosts.get(host)
        if gate is None:
            rate = self.policy.rate
            gate = self._hosts[host] = _HostGate(self.policy.per_host_concurrency,
                                                 1.0 / rate if rate > 0 else 0.0, host)
        return gate

    def set_host_delay(self, url: str, seconds: float) -> None:
        """Space requests to ``url``'s host at least ``seconds`` apart (Crawl-delay)."""
        gate = self._gate(url)
        gate.interval = max(gate.interval, seconds)

    @contextlib.asynccontextmanager
    async def discovering(self, url: str) -> AsyncIterator[None]:
        """Held while this crawl learns ``url``'s host's limits (reads its robots.txt).

        With a shared pacer (a distributed run), one crawl at a time per host, in any
        process (two crawls of one process included): another crawl's first request to
        the host (its own robots.txt) waits until the first has published the host's
        Crawl-delay (``share_host_delay``), and is spaced by it from the host's last
        request wherever that came from."""
        gate = self._gate(url)
        gate.crawled = True
        pacer = shared_pacer
        lock = getattr(pacer, "lock_host", None)
        unlock = getattr(pacer, "unlock_host", None)
        if lock is None or unlock is None:
            yield
            return
        delay = 0.02
        while not _claim_learning(gate.host):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
        try:
            delay = 0.02
            while not await asyncio.to_thread(lock, gate.host):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
            try:
                yield
            finally:
                await asyncio.to_thread(unlock, gate.host)
        finally:
            _release_learning(gate.host)

    async def share_host_delay(self, url: str, seconds: float) -> None:
        """``set_host_delay``, and (with a shared pacer) publish ``seconds`` as the host's
        Crawl-delay to every process crawling it (0: none, replacing an older one)."""
        if seconds > 0:
            self.set_host_delay(url, seconds)
        learn = getattr(shared_pacer, "learn", None)
        if learn is not None:
            await asyncio.to_thread(learn, self._gate(url).host, seconds)

    async def get(self, url: str, headers: Mapping[str, str] | None = None,
                  to_file: bool = False, accept: tuple[str, ...] | None = None) -> Response:
        """GET with retries, redirects checked hop by hop, a body size cap and a deadline.

        ``accept`` (content-type prefixes) overrides the policy's ``accept_types``.
        """
        assert self._client is not None, "use Fetcher as an async context manager"
        attempt = 0
        accept = self.policy.accept_types if accept is None else accept
        while True:
            try:
                return await self._get_once(url, headers, to_file, accept)
            except _Retryable as r:
                attempt += 1
                if attempt > self.policy.retries:
                    raise FetchError(url, r.reason, r.status) from None
                delay = r.wait if r.wait is not None else (
                    self.policy.backoff * (2 ** (attempt - 1)) * (0.5 + random.random()))
                if delay > self.policy.max_retry_after:
                    raise FetchError(url, f"{r.reason}; Retry-After {delay:.0f}s exceeds "
                                          f"max_retry_after", r.status) from None
                log.info("retrying %s in %.2fs (%s)", url, delay, r.reason)
                if r.status in (429, 503):
                    await self._gate(url).back_off(delay)
                await asyncio.sleep(delay)

    async def _get_once(self, url: str, headers: Mapping[str, str] | None,
                        to_file: bool, accept: tuple[str, ...] = ()) -> Response:
        current = url
        # A download to a file (a large feed) is cut only by an explicit deadline.
        deadline = self.policy.deadline if to_file else self.policy.attempt_deadline
        visits: dict[str, int] = {}
        for _hop in range(self.policy.max_redirects + 1):
            # A page may redirect to itself once to set a cookie; a third visit is a loop.
            visits[current] = visits.get(current, 0) + 1
            if visits[current] > 2:
                raise FetchError(url, f"redirect loop at {current}")
            # The address is checked where the connection is made (_PinnedBackend).
            await check_url(current, self.policy, resolve=self._transport is not None)
            gate = self._gate(current)
            hop_headers: Mapping[str, str] | None = headers
            auth = None
            if self._credentials_for(url, current):
                hop_headers = {**self._cred_headers, **(headers or {})}
                auth = self._auth
            # The deadline starts once a slot is held: waiting for one is not the server's fault.
            async with self._global, gate.sem, gate.in_flight():
                await gate.pace()  # last: the time spent waiting for a slot is not a gap
                try:
                    async with asyncio.timeout(deadline):  # no extra task, unlike wait_for
                        got = await self._hop(current, hop_headers, to_file, accept, auth)
                except TimeoutError:
                    raise _Retryable(f"no complete response within {deadline:g}s (deadline)",
                                     None, None) from None
            if isinstance(got, Response):
                return got
            current = got
        raise FetchError(url, f"more than {self.policy.max_redirects} redirects")

    async def _hop(self, current: str, headers: Mapping[str, str] | None,
                   to_file: bool, accept: tuple[str, ...],
                   auth: tuple[str, str] | None = None) -> Response | str:
        """One request: the response, or the next URL of a redirect."""
        scheme = lane_scheme(current)
        client = await self._lane(scheme)
        try:
            kw: dict[str, Any] = {"auth": auth} if auth else {}
            async with client.stream("GET", current, headers=headers, **kw) as resp:
                if resp.status_code == 304:
                    return Response(current, 304, resp.headers, not_modified=True)
                if resp.is_redirect:
                    loc = resp.headers.get("location")
                    if not loc:
                        raise FetchError(current, f"redirect {resp.status_code} "
                                                  f"without Location", resp.status_code)
                    return urljoin(current, loc)
                if resp.status_code in RETRY_STATUS:
                    wait = retry_after_seconds(resp.headers.get("retry-after"))
                    raise _Retryable(f"HTTP {resp.status_code}", resp.status_code, wait)
                _check_type(current, resp, accept)
                return await self._read_body(current, resp, to_file)
        except httpx.TimeoutException:
            raise _Retryable("timed out", None, None) from None
        except (httpx.TransportError, httpx.DecodingError) as e:
            raise _Retryable(f"transport error: {e.__class__.__name__}: {e}",
                             None, None) from None
        finally:
            self._lanes[scheme].put_nowait(client)

    async def _read_body(self, url: str, resp: httpx.Response, to_file: bool) -> Response:
        limit = self.policy.max_body_bytes
        declared = resp.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise FetchError(url, f"body of {declared} bytes exceeds "
                                  f"{self.policy.body_limit_name} ({limit})",
                             resp.status_code)
        size = 0
        if to_file:
            clean_stale_downloads()
            tmp = tempfile.NamedTemporaryFile(prefix=f"{TEMP_PREFIX}{os.getpid()}-",
                                              suffix=".part", delete=False)
            try:
                async for chunk in resp.aiter_raw():
                    size += len(chunk)
                    if size > limit:
                        raise FetchError(url, f"body exceeds {self.policy.body_limit_name} "
                                              f"({limit})",
                                         resp.status_code)
                    tmp.write(chunk)
                tmp.close()
            except BaseException:
                tmp.close()
                Path(tmp.name).unlink(missing_ok=True)
                raise
            _check_length(url, declared, size, resp)
            return Response(url, resp.status_code, resp.headers, path=Path(tmp.name))
        chunks = []
        async for chunk in resp.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise FetchError(url, f"body exceeds {self.policy.body_limit_name} ({limit})",
                                 resp.status_code)
            chunks.append(chunk)
        body = b"".join(chunks)
        _check_length(url, declared, size, resp)
        return Response(url, resp.status_code, resp.headers, body=body)


def _check_type(url: str, resp: httpx.Response, accept: tuple[str, ...]) -> None:
    if not accept or resp.status_code >= 300:
        return
    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and not ctype.startswith(accept):
        raise FetchError(url, f"content type {ctype!r} is not one of {', '.join(accept)}",
                         resp.status_code)


def _check_length(url: str, declared: str | None, size: int, resp: httpx.Response) -> None:
    if declared and declared.isdigit() and not resp.headers.get("content-encoding") \
            and int(declared) != size:
        raise _Retryable(f"truncated body: {size} of {declared} bytes", resp.status_code, None)


class _Retryable(Exception):
    def __init__(self, reason: str, status: int | None, wait: float | None):
        self.reason, self.status, self.wait = reason, status, wait


def download(url: str, policy: FetchPolicy, headers: Mapping[str, str] | None = None,
             auth: tuple[str, str] | None = None) -> Response:
    """Fetch one URL to a temporary file (synchronous callers such as feed connectors).

    The whole download, retries included, must finish within the policy's
    ``source_deadline``; ``headers`` and ``auth`` go to ``url``'s origin only.
    """

    async def go() -> Response:
        async with Fetcher(policy, headers=headers, auth=auth) as f:
            if not policy.source_deadline:
                return await f.get(url, to_file=True)
            try:
                return await asyncio.wait_for(f.get(url, to_file=True), policy.source_deadline)
            except asyncio.TimeoutError:
                raise FetchError(url, f"download not complete within source_deadline "
                                      f"({policy.source_deadline:g} s)") from None

    return asyncio.run(go())


# Downloads in progress are named auditor-dl-<pid>-*.part in the temp folder; a
# process killed mid-download (kill -9) leaves its file, removed by the next one.
TEMP_PREFIX = "auditor-dl-"
_cleaned = threading.Event()


def clean_stale_downloads(folder: str | Path | None = None, force: bool = False) -> list[Path]:
    """Delete download files left by processes that no longer run; once per process."""
    if _cleaned.is_set() and not force:
        return []
    _cleaned.set()
    removed = []
    pattern = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-.*\.part$")
    for p in Path(folder or tempfile.gettempdir()).glob(TEMP_PREFIX + "*.part"):
        m = pattern.match(p.name)
        if not m or _alive(int(m.group(1))):
            continue
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    if removed:
        log.info("removed %d download file(s) left by stopped runs", len(removed))
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
