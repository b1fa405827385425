"""Google Merchant Center product feeds: RSS 2.0 / Atom XML and TSV.

XML is streamed with lxml's iterparse with entity expansion, DTDs and network
access off. ``g:``-prefixed and plain element names are both accepted.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Mapping

from lxml import etree

from auditor import csvio
from auditor.connector import Connector, SourceContext
from auditor.errors import BadRecord, SourceError
from auditor.model import Availability, Listing, Money
from auditor.options import Opt
from auditor.plugins import register_connector
from auditor.sources import SourceFile, sniff_kind
from auditor.values import (normalize_gtin, parse_availability, parse_int, parse_interval,
                            parse_money)
from auditor.connectors._common import listing_maker

G_NS = "http://base.google.com/ns/1.0"
# Kept in Listing.attributes under these names (checks map them onto master fields).
ATTRIBUTE_FIELDS = ("color", "size", "material", "pattern", "gender", "age_group", "condition",
                    "size_system", "size_type", "product_type", "google_product_category",
                    "product_weight", "product_length", "product_width", "product_height",
                    "shipping_weight", "unit_pricing_measure", "energy_efficiency_class",
                    "custom_label_0", "custom_label_1", "custom_label_2", "custom_label_3",
                    "custom_label_4", "status", "visibility")
MULTI = {"additional_image_link", "gtin"}
# Other names feeds use for the same attribute (Atom's summary, Google's "colour").
ALIASES = {"summary": "description", "colour": "color", "image_url": "image_link",
           "url": "link", "gtins": "gtin"}


ATTRIBUTE_SET = frozenset(ATTRIBUTE_FIELDS)


def _split_urls(value: str) -> tuple[str, ...]:
    """A comma list of URLs (a comma inside a URL is written %2C)."""
    return tuple(filter(None, map(str.strip, value.split(","))))


def item_to_listing(fields: Mapping[str, str], channel: str, fetched_at: datetime,
                    location: str, opts: Mapping[str, Any]) -> Listing:
    """One feed item (attribute name -> value) as a Listing; BadRecord when unusable.

    Values may carry surrounding spaces or be empty (both mean what they say
    stripped). Repeated attributes (``gtin``, ``additional_image_link``) arrive
    joined by commas. Shared by the Google and Meta connectors, whose attribute
    names agree.
    """
    return item_converter(channel, fetched_at, opts)(fields, location)


def item_converter(channel: str, fetched_at: datetime, opts: Mapping[str, Any]
                   ) -> Callable[[Mapping[str, str], str], Listing]:
    """``item_to_listing`` with the channel's options read once, for the per-row loop."""
    default_cur = opts.get("currency")
    dsep = opts.get("decimal_separator")
    tz = opts.get("timezone") or "UTC"
    sku_field = opts.get("sku_field") or "id"
    shipping = bool(opts.get("include_shipping"))
    unknown = Availability.UNKNOWN

    def money(v: str, name: str, bad: dict[str, str], location: str) -> Money | None:
        try:
            return parse_money(v, default_cur, dsep)
        except ValueError as e:
            if v.strip():
                bad[name] = f"{location}: bad {name} {v!r}: {e}"
            return None

    def convert(fields: Mapping[str, str], location: str) -> Listing:
        """A row without an id raises BadRecord; an unreadable value leaves its field
        empty and is named in the listing's ``unread``."""
        get = fields.get
        key = get("id")
        key = key.strip() if key else None
        if not key:
            raise BadRecord("item has no id", "id")
        bad: dict[str, str] = {}
        v = get("price")
        price = money(v, "price", bad, location) if v else None
        v = get("sale_price")
        sale = money(v, "sale_price", bad, location) if v else None
        start = end = None
        v = get("sale_price_effective_date")
        if v and v.strip():
            try:
                start, end = parse_interval(v, tz)
            except ValueError as e:
                bad["sale_start"] = f"{location}: {e} (sale_price_effective_date)"
        avail = None
        v = get("availability")
        if v:
            try:
                avail = parse_availability(v)
            except ValueError as e:
                bad["availability"] = f"{location}: {e}"
            if avail is unknown:
                avail = None
        qty = None
        if "quantity" in fields or "inventory" in fields or \
                "quantity_to_sell_on_facebook" in fields:
            try:
                qty = _quantity(fields, dsep)
            except BadRecord as e:
                bad["quantity"] = f"{location}: {e}"
        attributes = {}
        for k in ATTRIBUTE_SET.intersection(fields):
            v = fields[k]
            if v and (v := v.strip()):
                attributes[k] = v
        gtin = None
        raw = get("gtin")
        if raw:
            gtin = _gtins(raw, attributes)
        image = get("image_link")
        image = image.strip() if image else None
        extra = get("additional_image_link")
        if extra:
            images = ((image,) if image else ()) + _split_urls(extra)
        else:
            images = (image,) if image else ()
        if shipping and (ship := get("shipping")):
            attributes["shipping"] = ship.strip()
        # Inline strips: this runs once per row of million-row feeds.
        url, title, desc, brand, mpn, group = (get("link"), get("title"), get("description"),
                                               get("brand"), get("mpn"), get("item_group_id"))
        return _make(
            channel, key, fetched_at, url.strip() or None if url else None,
            key if sku_field == "id" else (get(sku_field) or "").strip() or None,
            title.strip() or None if title else None,
            desc.strip() or None if desc else None,
            brand.strip() or None if brand else None,
            gtin, mpn.strip() or None if mpn else None, images, attributes,
            group.strip() or None if group else None,
            price, sale, start, end, avail, qty, location, bad or _NONE)

    return convert


_QUANTITY_FIELDS = ("quantity", "quantity_to_sell_on_facebook", "inventory")
_make = listing_maker("channel", "key", "fetched_at", "url", "sku", "title", "description",
                      "brand", "gtin", "mpn", "images", "attributes", "group_id", "price",
                      "sale_price", "sale_start", "sale_end", "availability", "quantity",
                      "evidence", "unread")
_NONE: dict[str, str] = {}  # shared "no unread value" (never written to)

# Feed attribute -> the listing field it fills (others fill the field of their name).
FEED_FIELDS = {"image_link": "images", "additional_image_link": "images",
               "inventory": "quantity", "quantity_to_sell_on_facebook": "quantity",
               "sale_price_effective_date": "sale_start", "link": "url",
               "item_group_id": "group_id"}


def _quantity(fields: Mapping[str, str], dsep: str | None) -> int | None:
    for qname in _QUANTITY_FIELDS:
        v = fields.get(qname)
        if v and v.strip():
            try:
                return parse_int(v, dsep)
            except ValueError as e:
                raise BadRecord(str(e), qname) from None
    return None


def _gtin_parts(raw: str) -> list[str]:
    """The GTINs of a list: comma-separated, or space-separated when every part is a whole
    GTIN; spaces inside one number as printed under a barcode ("4 006381 333931") stay."""
    out: list[str] = []
    for chunk in re.split(r"[,;|]", raw):
        words = chunk.split()
        if len(words) > 1 and not all(len(w.strip("-")) >= 8 for w in words):
            out.append("".join(words))
        else:
            out.extend(words)
    return out


def _gtins(raw: str, attributes: dict[str, str]) -> str | None:
    """The first GTIN of a (comma/space separated) list; the rest into attributes."""
    if raw.isdigit() and len(raw) in (8, 12, 13, 14):
        return raw.zfill(14)
    gtins: list[str] = []
    bad: list[str] = []
    for g in _gtin_parts(raw):
        try:
            n = normalize_gtin(g)
            if n:
                gtins.append(n)
        except ValueError:
            bad.append(g)
    if len(gtins) > 1:
        attributes["additional_gtins"] = "|".join(gtins[1:])
    if bad:
        attributes["gtin_raw"] = "|".join(bad)
    # A GTIN that does not parse is kept as written: the GTIN check reports it.
    return gtins[0] if gtins else (bad[0] if bad else None)


def _local(tag: Any) -> tuple[str, bool]:
    if not isinstance(tag, str):
        return "", False
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return name, ns == G_NS
    if ":" in tag:  # undeclared prefix in a sloppy feed
        return tag.split(":", 1)[1], tag.startswith("g:")
    return tag, False


def _xml_parser_args() -> dict[str, Any]:
    # Entities are never expanded, no DTD is loaded and nothing is fetched:
    # billion-laughs and external-entity payloads stay inert text.
    return dict(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                remove_comments=True, remove_pis=True)


def parse_xml(stream, name: str, rename: Callable[[str], str] | None = None
              ) -> Iterator[tuple[str, dict[str, str]]]:
    """Yield (location, fields) for each <item> (RSS) or <entry> (Atom), streaming.

    ``g:`` elements win over plain ones of the same name (``<g:title>`` over
    ``<title>``); repeated ``gtin`` and ``additional_image_link`` are joined
    with commas. Nested elements other than ``shipping`` are flattened the way
    Meta's CSV columns are (``<image><url>`` -> ``image[0].url``). ``rename``
    maps attribute names (after aliases) to the ones ``item_to_listing`` reads.
    """
    names: dict[Any, tuple[str, bool, bool]] = {}
    rename = rename or (lambda n: n)
    flat: dict[str, str] = {}
    count = 0
    try:
        ctx = etree.iterparse(stream, events=("end",), tag=("{*}item", "{*}entry"),
                              **_xml_parser_args())
        for _event, el in ctx:
            gfields: dict[str, str] = {}
            plain: dict[str, str] = {}
            nested: dict[str, int] = {}
            for child in el:
                tag = child.tag
                lc = names.get(tag)
                if lc is None:
                    cname, is_g = _local(tag)
                    cname = rename(ALIASES.get(cname, cname))
                    lc = names[tag] = (cname, is_g, cname in MULTI)
                cname, is_g, multi = lc
                if not cname:
                    continue
                value = child.text
                if value:
                    value = value.strip()
                if not value:
                    if len(child):
                        if cname == "shipping":  # nested country/service/price
                            value = ":".join((c.text or "").strip() for c in child)
                        else:
                            _flatten(child, cname, gfields if is_g else plain, rename, flat,
                                     nested)
                            continue
                    elif cname == "link":
                        value = (child.get("href") or "").strip()  # Atom
                    if not value:
                        continue
                d = gfields if is_g else plain
                if multi and cname in d:
                    d[cname] = f"{d[cname]},{value}"
                else:
                    d.setdefault(cname, value)
            if plain:
                for k, v in plain.items():
                    if k not in gfields:
                        gfields[k] = v
            line = el.sourceline or 0
            el.clear(keep_tail=False)
            if el.getprevious() is not None:
                parent = el.getparent()
                while el.getprevious() is not None:
                    del parent[0]
            count += 1
            yield f"{name}:{line}", gfields
    except etree.XMLSyntaxError as e:
        # libxml2 reports an undeclared "g:" prefix only when the document is
        # done, after every item was read: a sloppy feed, not a broken one.
        if count and str(e.msg).startswith("Namespace prefix"):
            return
        raise SourceError(name, f"XML syntax error at line {e.lineno}: {e.msg}") from None


def _flatten(el: Any, cname: str, fields: dict[str, str], rename: Callable[[str], str],
             cache: dict[str, str], counts: dict[str, int]) -> None:
    """``<image><url>u</url></image>`` -> ``image[0].url = u`` (the next image is [1])."""
    i = counts.get(cname, 0)
    counts[cname] = i + 1
    for sub in el:
        if not isinstance(sub.tag, str):
            continue
        text = (sub.text or "").strip()
        if text:
            raw = f"{cname}[{i}].{_local(sub.tag)[0]}"
            key = cache.get(raw)
            if key is None:
                key = cache[raw] = rename(raw)
            old = fields.get(key)
            fields[key] = f"{old},{text}" if old and key in MULTI else text


def parse_tsv(sf: SourceFile, encoding: str, on_error, delimiter: str = "auto",
              rename: Callable[[str], str] | None = None
              ) -> Iterator[tuple[str, dict[str, str]]]:
    """Yield (location, fields) for each row of a tab-, comma- or semicolon-separated feed."""
    header, rows = csvio.open_rows(sf, encoding, delimiter, on_error, ragged="report")
    names = []
    for h in header:
        n = _local(h.strip().lower().replace(" ", "_"))[0]
        n = ALIASES.get(n, n)
        names.append(rename(n) if rename else n)
    if "id" not in names:
        raise SourceError(sf.name, f"no 'id' column in header ({', '.join(header[:10])})")
    # Columns named alike after renaming: repeated gtin/additional_image_link
    # columns are joined, of others the first non-empty value wins.
    dup = {n: [i for i, m in enumerate(names) if m == n] for n in set(names)
           if names.count(n) > 1}
    name = sf.name
    for line, cells in rows:
        fields = dict(zip(names, cells, strict=False))
        for n, idx in dup.items():
            vals = [cells[i].strip() for i in idx if i < len(cells) and cells[i].strip()]
            fields[n] = ",".join(vals) if n in MULTI else (vals[0] if vals else "")
        yield f"{name}:{line}", fields


def sniff_format(head: bytes) -> str:
    """xml or tsv from the first bytes of a file."""
    return "xml" if sniff_kind(head) in ("xml", "html") else "tsv"


def read_feed_items(ctx: SourceContext, fmt: str, rename: Callable[[str], str] | None = None
                    ) -> Iterator[tuple[str, dict[str, str]]]:
    """Items of every file of the channel's source, XML or delimited text.

    ``rename`` maps a feed's attribute names onto Google's (Meta's flattened
    ``image[0].url`` columns, for one).
    """
    with ctx.files() as files:
        for sf in files:
            try:
                kind = sf.kind()
                if kind == "html":
                    raise SourceError(sf.name, "got an HTML page where a product feed was "
                                               "expected (a login or error page?)")
                if kind in ("json", "xlsx"):
                    raise SourceError(sf.name, f"got a {kind.upper()} file where an XML or "
                                               f"delimited text feed was expected")
                if kind == "empty":
                    continue
                if fmt in ("xml", "auto") and kind == "xml" or fmt == "xml":
                    if kind != "xml":
                        raise SourceError(sf.name, "format = \"xml\" but the file is not XML")
                    with sf.open_binary() as stream:
                        yield from parse_xml(stream, sf.name, rename)
                else:
                    yield from parse_tsv(sf, ctx.channel.opt("encoding", "auto"), ctx.key_lost,
                                         ctx.channel.opt("delimiter", "auto"), rename)
            except (EOFError, OSError) as e:  # unreadable file
                raise SourceError(sf.name, f"cannot read: {e}") from None


def items_to_listings(ctx: SourceContext, items: Iterable[tuple[str, dict[str, str]]],
                      skip_comments: bool = False) -> Iterator[Listing]:
    """Listings from feed items; bad and duplicate items are recorded on ctx.

    With ``skip_comments``, items whose id starts with ``#`` are template comment
    rows (Meta's "# Required | ..." line), not products.
    """
    to_listing = item_converter(ctx.channel.name, ctx.now, ctx.channel.options)
    seen: set[str] = set()  # one loop with the conversion: this is the per-row hot path
    # The attributes the feed carries (elements present in an item, columns of a header).
    names: set[str] = set()
    try:
        for location, fields in items:
            if skip_comments and (fields.get("id") or "").lstrip().startswith("#"):
                continue
            if not names.issuperset(fields):
                names.update(fields)
            try:
                li = to_listing(fields, location)
            except BadRecord as e:  # no id: the item may be any listing
                ctx.key_lost(location, str(e))
                continue
            if li.key in seen:
                ctx.bad(location, f"duplicate id {li.key!r}; kept the first")
                continue
            seen.add(li.key)
            yield li
    finally:
        ctx.carries(*{FEED_FIELDS.get(n, n) for n in names})


FEED_OPTIONS = (
    Opt("format", str, "auto", "Feed format: auto (sniffed), xml or tsv.",
        choices=("auto", "xml", "tsv", "csv")),
    Opt("sku_field", str, "id", "Feed attribute that holds the SKU (id, mpn, or a custom label)."),
    Opt("timezone", str, "UTC", "Time zone for sale dates written without one."),
    Opt("include_shipping", bool, False, "Keep shipping values as an attribute."),
    Opt("decimal_separator", str, None,
        "Decimal separator of prices and numbers ('.' or ','); unset guesses per value.",
        choices=(".", ",")),
    Opt("delimiter", str, "auto", "Delimiter of text feeds, or auto to sniff."),
)


@register_connector
class GoogleMerchant(Connector):
    """Google Merchant Center feed (RSS/Atom XML or TSV), from a file, glob or URL."""

    type = "google_merchant"
    help = "Google Merchant Center product feed: RSS 2.0 / Atom XML or TSV."
    options = FEED_OPTIONS

    def read(self, ctx: SourceContext) -> Iterator[Listing]:
        """Every item of every feed file as a Listing."""
        fmt = self.channel.opt("format", "auto")
        yield from items_to_listings(ctx, read_feed_items(ctx, "tsv" if fmt == "csv" else fmt))
