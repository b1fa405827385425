"""What a connector is, and the context it reads a source in.

A connector is one module in ``connectors/`` with a class decorated by
``@register_connector``. Its ``read(ctx)`` yields ``Listing`` objects; pure
parsing functions (bytes or text in, listings out) do the work so tests can
call them on saved samples. I/O goes through ``ctx``: ``ctx.files()`` for
file-shaped sources and ``ctx.policy()`` for the shared HTTP client.

Failure vocabulary:
* one bad row/item/page -> ``ctx.bad(location, reason)`` and carry on;
* the whole source unreadable -> raise ``SourceError`` (the run marks the
  source failed: its listings are unknown, never missing);
* some listings unknown (a blocked page) -> ``ctx.unknown(key)``; the source
  becomes partial.
* one cell of a row unreadable (a price ``abc``) while its key reads -> the
  listing is yielded with that field empty and ``unread={field: "file:line:
  reason"}``; its comparisons of that field are not_evaluated with the reason
  (``ctx.unread_cells(listing)`` records the cells as bad);
* a row whose key cannot be read -> ``ctx.key_lost(location, reason)``: the
  missing listing may be on that row, so presence is held for the run.
* the fields the source carries (its header, the elements of its items) ->
  ``ctx.carries(*fields)``; a compared field the whole source never carries is
  not evaluated for the channel (said once), never a finding per listing. A
  connector that declares nothing: a field is carried when a listing shows it.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Iterator, Mapping, Sequence

from auditor import http, sources
from auditor.configtypes import ChannelConfig, secret_value
from auditor.model import Listing, MasterRecord, SourceResult, SourceStatus
from auditor.options import Opt

if TYPE_CHECKING:
    from auditor.storage import CacheStore

log = logging.getLogger(__name__)

MAX_KEPT_ERRORS = 10_000


class Connector:
    """Base class: set ``type``, ``options`` and implement ``read``."""

    type: ClassVar[str] = ""
    #: Options this connector adds to its ``[[channels]]`` table.
    options: ClassVar[tuple[Opt, ...]] = ()
    #: Whether the channel must name a ``source``.
    needs_source: ClassVar[bool] = True
    #: One line for `auditor connectors`.
    help: ClassVar[str] = ""

    def __init__(self, channel: ChannelConfig):
        self.channel = channel

    def read(self, ctx: "SourceContext") -> Iterator[Listing]:
        raise NotImplementedError


@dataclass
class SourceContext:
    """The run-side services a connector may use, and where it reports trouble."""

    channel: ChannelConfig
    now: datetime
    http_options: Mapping[str, Any] = field(default_factory=dict)
    store: CacheStore | None = None  # for HTTP caches; None in pure tests
    master: Mapping[str, MasterRecord] = field(default_factory=dict)
    result: SourceResult = field(default_factory=lambda: SourceResult(""))
    errors: list[tuple[str, str]] = field(default_factory=list)
    # Listing fields the source carries, as the connector declared them (None: not
    # declared; the runner then counts a field as carried when a listing shows it).
    carried: set[str] | None = None

    def __post_init__(self) -> None:
        if not self.result.name:
            self.result.name = self.channel.name

    def bad(self, location: str, reason: str) -> None:
        """Record one unusable row, item or page; the read goes on."""
        self.result.errors += 1
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append((location, reason))
        if self.result.errors <= 20:
            log.warning("%s: %s: %s", self.channel.name, location, reason)

    def unread_cells(self, listing: Listing) -> None:
        """Record the cells ``listing`` could not read (its ``unread``) as bad."""
        for name, why in listing.unread.items():
            loc, _, reason = why.partition(": ")
            self.bad(loc or listing.evidence or listing.key,
                     f"{reason or why} (listing {listing.key!r} read without its {name})")

    def key_lost(self, location: str, reason: str) -> None:
        """A row whose key could not be read: recorded, and presence held for the run."""
        self.bad(location, reason)
        self.hold_presence(f"a row without a readable key ({location}) may hold a listing "
                           f"that would otherwise be concluded missing")

    def hold_presence(self, reason: str) -> None:
        """No presence conclusion from this run's read (the first reason is kept)."""
        if self.result.presence_held is None:
            self.result.presence_held = reason

    def carries(self, *fields: str) -> None:
        """Declare listing fields (or ``attributes.<name>``) the source carries."""
        if self.carried is None:
            self.carried = set()
        self.carried.update(fields)

    def unknown(self, key: str, reason: str | None = None, skus: Iterable[str] = ()) -> None:
        """A listing whose state could not be observed this run (blocked, error); ``skus``
        are the master SKUs it is known to show (presence is not_evaluated for them)."""
        self.result.unknown_keys.add(key)
        for sku in skus:
            self.result.unknown_skus.setdefault(sku, reason or "the listing could not be read")
        if self.result.status == SourceStatus.COMPLETE:
            self.result.status = SourceStatus.PARTIAL
        if reason:
            self.bad(key, reason)

    def partial(self, reason: str) -> None:
        """Mark the source as only partly read (no 'missing' conclusions)."""
        if self.result.status == SourceStatus.COMPLETE:
            self.result.status = SourceStatus.PARTIAL
        self.result.message = reason

    def policy(self, urls: Sequence[str] = ()) -> http.FetchPolicy:
        """The fetch policy for this channel, allowing the hosts of ``urls``."""
        src = [self.channel.source] if self.channel.source and sources.is_url(
            self.channel.source) else []
        return http.FetchPolicy.from_config(self.http_options, self.channel.options,
                                            src + list(urls))

    def headers(self) -> dict[str, str]:
        """Configured request headers with environment references resolved."""
        return {k: secret_value(v) for k, v in (self.channel.opt("headers") or {}).items()}

    def auth(self) -> tuple[str, str] | None:
        a = self.channel.opt("auth")
        if not a:
            return None
        return (secret_value(a["username"]), secret_value(a["password"]))

    @contextlib.contextmanager
    def files(self, source: str | None = None) -> Iterator[list[sources.SourceFile]]:
        """The channel's source (or ``source``) as local files."""
        src = source or self.channel.source
        assert src, "channel has no source"
        with sources.resolve(src, self.channel.base_dir, self.policy(), self.headers(),
                             self.auth(), all_files=bool(self.channel.opt("all_files")),
                             limits=sources.Limits.from_options(self.channel.options)) as fs:
            yield fs
