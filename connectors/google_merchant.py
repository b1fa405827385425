"""Google Merchant Center product feeds: RSS 2.0 / Atom XML and TSV.

XML is streamed with lxml's iterparse with entity expansion, DTDs and network
access off. ``g:``-prefixed and plain element names are both accepted.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Iterable, Iterator, Mapping

from lxml import etree

from auditor import csvio
from auditor.connector import Connector, SourceContext
from auditor.errors import BadRecord, SourceError
from auditor.model import Listing, ModelError
from auditor.options import Opt
from auditor.plugins import register_connector
from auditor.sources import SourceFile
from auditor.values import (normalize_gtin, parse_availability, parse_int, parse_interval,
                            parse_money)

G_NS = "http://base.google.com/ns/1.0"
ATTRIBUTE_FIELDS = ("color", "size", "material", "pattern", "gender", "age_group", "condition",
                    "size_system", "product_type")
MULTI = {"additional_image_link", "gtin"}


def _split_urls(value: str) -> list[str]:
    return [u.strip() for u in value.split(",") if u.strip()]


def item_to_listing(fields: Mapping[str, list[str]], channel: str, fetched_at: datetime,
                    location: str, opts: Mapping[str, Any]) -> Listing:
    """One feed item (attribute name -> values) as a Listing; BadRecord when unusable.

    Shared by the Google and Meta connectors, whose attribute names agree.
    """

    def one(name: str) -> str | None:
        vals = fields.get(name)
        if not vals:
            return None
        v = vals[0].strip()
        return v or None

    key = one("id")
    if not key:
        raise BadRecord("item has no id", "id")
    default_cur = opts.get("currency")
    tz = opts.get("timezone") or "UTC"
    kw: dict[str, Any] = {}
    for name, target in (("price", "price"), ("sale_price", "sale_price")):
        v = one(name)
        if v:
            try:
                kw[target] = parse_money(v, default_cur)
            except (ValueError, ModelError) as e:
                raise BadRecord(f"bad {name} {v!r}: {e}", name) from None
    v = one("sale_price_effective_date")
    if v:
        try:
            kw["sale_start"], kw["sale_end"] = parse_interval(v, tz)
        except ValueError as e:
            raise BadRecord(str(e), "sale_price_effective_date") from None
    v = one("availability")
    if v:
        try:
            kw["availability"] = parse_availability(v)
        except ValueError as e:
            raise BadRecord(str(e), "availability") from None
    for qname in ("quantity", "quantity_to_sell_on_facebook", "inventory"):
        v = one(qname)
        if v:
            try:
                kw["quantity"] = parse_int(v)
            except ValueError as e:
                raise BadRecord(str(e), qname) from None
            break
    gtins: list[str] = []
    bad_gtins: list[str] = []
    for raw in fields.get("gtin", []):
        for g in re.split(r"[,\s]+", raw.strip()):
            if not g:
                continue
            try:
                n = normalize_gtin(g)
                if n:
                    gtins.append(n)
            except ValueError:
                bad_gtins.append(g)
    images = [u for u in (one("image_link"),) if u]
    for raw in fields.get("additional_image_link", []):
        images += _split_urls(raw)
    attributes = {a: one(a) for a in ATTRIBUTE_FIELDS if one(a)}
    if len(gtins) > 1:
        attributes["additional_gtins"] = "|".join(gtins[1:])
    if bad_gtins:
        attributes["gtin_raw"] = "|".join(bad_gtins)
    if opts.get("include_shipping") and fields.get("shipping"):
        attributes["shipping"] = "|".join(fields["shipping"])
    sku_field = opts.get("sku_field") or "id"
    return Listing(
        channel=channel, key=key, fetched_at=fetched_at,
        url=one("link"), sku=one(sku_field), title=one("title"),
        description=one("description"), brand=one("brand"),
        gtin=gtins[0] if gtins else (bad_gtins[0] if bad_gtins else None), mpn=one("mpn"),
        images=tuple(images), attributes=attributes, group_id=one("item_group_id"),
        evidence=location, **kw)


def _local(tag: Any) -> tuple[str, bool]:
    if not isinstance(tag, str):
        return "", False
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return name, ns == G_NS
    if ":" in tag:  # undeclared prefix in a sloppy feed
        return tag.split(":", 1)[1], tag.startswith("g:")
    return tag, False


def parse_xml(stream, name: str) -> Iterator[tuple[str, dict[str, list[str]]]]:
    """Yield (location, fields) for each <item> (RSS) or <entry> (Atom), streaming."""
    try:
        ctx = etree.iterparse(stream, events=("end",), resolve_entities=False, no_network=True,
                              load_dtd=False, huge_tree=False, remove_comments=True,
                              remove_pis=True)
        for _event, el in ctx:
            tag, _ = _local(el.tag)
            if tag not in ("item", "entry"):
                continue
            fields: dict[str, list[str]] = {}
            prefixed: set[str] = set()
            for child in el:
                cname, is_g = _local(child.tag)
                if not cname:
                    continue
                if cname == "link" and not is_g and child.get("href"):
                    value = child.get("href")
                elif cname == "shipping" and len(child):
                    value = ":".join((c.text or "").strip() for c in child)
                else:
                    value = "".join(child.itertext())
                if is_g and cname not in prefixed and cname not in MULTI:
                    fields[cname] = []  # g:title wins over a plain <title>
                    prefixed.add(cname)
                elif not is_g and cname in prefixed:
                    continue
                if cname in MULTI or not fields.get(cname):
                    fields.setdefault(cname, []).append(value)
            line = el.sourceline or 0
            el.clear(keep_tail=False)
            while el.getprevious() is not None:
                del el.getparent()[0]
            yield f"{name}:{line}", fields
    except etree.XMLSyntaxError as e:
        raise SourceError(name, f"XML syntax error at line {e.lineno}: {e.msg}") from None


def parse_tsv(sf: SourceFile, encoding: str, on_error) -> Iterator[tuple[str, dict[str, list[str]]]]:
    """Yield (location, fields) for each row of a tab-, comma- or semicolon-separated feed."""
    header, rows = csvio.open_rows(sf, encoding, "auto", on_error)
    names = [_local(h.strip().lower().replace(" ", "_"))[0] for h in header]
    if "id" not in names:
        raise SourceError(sf.name, f"no 'id' column in header ({', '.join(header[:10])})")
    for line, cells in rows:
        fields: dict[str, list[str]] = {}
        for n, v in zip(names, cells):
            if v:
                fields.setdefault(n, []).append(v)
        yield f"{sf.name}:{line}", fields


def sniff_format(head: bytes) -> str:
    """xml or tsv from the first bytes of a file."""
    s = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return "xml" if s.startswith(b"<") else "tsv"


def read_feed_items(ctx: SourceContext, fmt: str) -> Iterator[tuple[str, dict[str, list[str]]]]:
    """Items of every file of the channel's source, XML or delimited text."""
    with ctx.files() as files:
        for sf in files:
            try:
                kind = fmt if fmt != "auto" else sniff_format(sf.head(512))
                if kind == "xml":
                    with sf.open_binary() as stream:
                        yield from parse_xml(stream, sf.name)
                else:
                    yield from parse_tsv(sf, ctx.channel.opt("encoding", "auto"), ctx.bad)
            except (EOFError, OSError) as e:  # truncated gzip, unreadable file
                raise SourceError(sf.name, f"cannot read: {e}") from None


def items_to_listings(ctx: SourceContext,
                      items: Iterable[tuple[str, dict[str, list[str]]]]) -> Iterator[Listing]:
    opts = ctx.channel.options
    seen: dict[str, str] = {}
    for location, fields in items:
        try:
            li = item_to_listing(fields, ctx.channel.name, ctx.now, location, opts)
        except BadRecord as e:
            ctx.bad(location, str(e))
            continue
        if li.key in seen:
            ctx.bad(location, f"duplicate id {li.key!r} (first at {seen[li.key]}); kept the first")
            continue
        seen[li.key] = location
        yield li


FEED_OPTIONS = (
    Opt("format", str, "auto", "Feed format: auto (sniffed), xml or tsv.",
        choices=("auto", "xml", "tsv", "csv")),
    Opt("sku_field", str, "id", "Feed attribute that holds the SKU (id, mpn, or a custom label)."),
    Opt("timezone", str, "UTC", "Time zone for sale dates written without one."),
    Opt("include_shipping", bool, False, "Keep shipping values as an attribute."),
)


@register_connector
class GoogleMerchant(Connector):
    """Google Merchant Center feed (RSS/Atom XML or TSV), from a file, glob or URL."""

    type = "google_merchant"
    help = "Google Merchant Center product feed: RSS 2.0 / Atom XML or TSV."
    options = FEED_OPTIONS

    def read(self, ctx: SourceContext) -> Iterator[Listing]:
        fmt = self.channel.opt("format", "auto")
        yield from items_to_listings(ctx, read_feed_items(ctx, "tsv" if fmt == "csv" else fmt))
