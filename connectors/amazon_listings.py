"""Amazon Seller Central listing and inventory reports (tab-delimited text).

Reads ``GET_MERCHANT_LISTINGS_ALL_DATA`` / ``GET_MERCHANT_LISTINGS_DATA``
(``seller-sku``, ``item-name``, ``price``, ``quantity``, ``product-id``,
``product-id-type``, ``status`` ...) and ``GET_FLAT_FILE_OPEN_LISTINGS_DATA``
(``sku``, ``asin``, ``price``, ``quantity``). Columns are found by header name,
never by position: reports come with 27, 28 or 47 columns. Prices carry no
currency and may use decimal commas: both come from the channel's config.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from auditor import csvio
from auditor.connector import Connector, SourceContext
from auditor.errors import BadRecord, SourceError
from auditor.model import Availability, Listing
from auditor.options import Opt
from auditor.plugins import register_connector
from auditor.values import (LostDigits, availability_from_quantity, normalize_currency, normalize_gtin,
                            parse_int, parse_money)
from auditor.connectors._common import dedupe, listing_maker, map_columns_all, row_values

# Our field -> the report headers that carry it (first present wins). The
# English names are Amazon's; the German ones are as seen in Seller Central
# downloads (unverified across report versions: override with `columns`).
COLUMNS: dict[str, list[str]] = {
    "sku": ["seller-sku", "sku", "Händler-SKU"],
    "title": ["item-name", "Artikelbezeichnung"],
    "description": ["item-description", "Artikelbeschreibung"],
    "price": ["price", "your-price", "Preis"],
    "quantity": ["quantity", "Menge"],
    "status": ["status"],
    "image": ["image-url", "Bild-URL"],
    "product_id": ["product-id", "Produkt-ID"],
    "product_id_type": ["product-id-type", "Produkt-ID-Typ"],
    "asin": ["asin1", "asin", "ASIN 1"],
    "listing_id": ["listing-id", "Angebotsnummer"],
    "condition": ["item-condition", "Artikelzustand"],
    "fulfillment": ["fulfillment-channel", "Versender-Gruppe"],
    "open_date": ["open-date", "Erstellungsdatum"],
}
# product-id-type codes.
ID_TYPES = {"1": "asin", "2": "isbn", "3": "upc", "4": "ean"}
_INACTIVE = {"inactive", "incomplete", "closed", "deleted", "suppressed"}
_make = listing_maker("channel", "key", "fetched_at", "sku", "title", "description", "gtin",
                      "price", "quantity", "availability", "images", "attributes", "url",
                      "evidence", "unread")
_NONE: dict[str, str] = {}  # shared "no unread cell" (never written to)
# Kept in Listing.attributes under these names.
_EXTRA = ("listing_id", "condition", "fulfillment", "open_date")


def _columns(opts: Mapping[str, Any]) -> dict[str, Any]:
    columns = dict(COLUMNS)
    for field, theirs in (opts.get("columns") or {}).items():
        columns[field] = theirs
    return columns


def carried_fields(header: list[str], name: str, opts: Mapping[str, Any]) -> set[str]:
    """The listing fields a report with this header carries."""
    cols = set(map_columns_all(header, _columns(opts), name))
    out = {"title", "description", "price", "quantity"} & cols
    # Not "images" for an image-url column: listing reports keep it but leave it empty;
    # it counts as carried once a row shows an image (auditor.check.CarriedFields).
    if "product_id" in cols:
        out.add("gtin")
    if "quantity" in cols or "status" in cols:
        out.add("availability")
    return out


def row_converter(header: list[str], name: str, channel: str, fetched_at, opts: Mapping[str, Any]):
    """A function (line, cells) -> Listing for a report with this header."""
    columns = _columns(opts)
    values = row_values(map_columns_all(header, columns, name, required=("sku",)))
    currency = normalize_currency(opts["currency"])
    dsep = opts.get("decimal_separator")
    url_tpl = opts.get("product_url")
    safety = opts.get("safety_stock") or 0

    def convert(line: int, cells: list[str]) -> Listing:
        v = values(cells)
        get = v.get
        sku = get("sku")
        if not sku:
            raise BadRecord("row has no seller-sku", "seller-sku")
        attributes: dict[str, str] = {}
        where = f"{name}:{line}"
        bad: dict[str, str] = {}
        price = None
        p = get("price")
        if p:
            try:
                price = parse_money(p, currency, dsep)
            except ValueError as e:
                bad["price"] = f"{where}: bad price {p!r}: {e}"
        qty = None
        q = get("quantity")
        if q:
            try:
                qty = parse_int(q, dsep)
            except ValueError as e:
                bad["quantity"] = f"{where}: {e}"
        status = get("status")
        if status:
            attributes["status"] = status
        if status and status.lower() in _INACTIVE:
            avail = Availability.OUT_OF_STOCK
        elif qty is not None:
            avail = availability_from_quantity(qty, safety)
        elif status and status.lower() == "active":
            avail = Availability.IN_STOCK  # FBA rows leave quantity blank
        else:
            avail = None
        asin = get("asin")
        gtin = None
        pid = get("product_id")
        if pid:
            kind = ID_TYPES.get(get("product_id_type") or "")
            if kind == "asin" or (kind is None and not pid.isdigit()):
                asin = asin or pid
            else:
                try:
                    gtin = normalize_gtin(pid, kind)
                except LostDigits as e:  # the export's fault, not the listing's GTIN
                    bad["gtin"] = f"{where}: {e} in column 'product-id'"
                except ValueError as e:
                    # Kept as written: the GTIN check reports it.
                    gtin = attributes["gtin_raw"] = pid
                    attributes["gtin_error"] = str(e)
        if asin:
            attributes["asin"] = asin
        for field in _EXTRA:
            x = get(field)
            if x:
                attributes[field] = x
        image = get("image")
        return _make(channel, sku, fetched_at, sku, get("title"), get("description"), gtin,
                     price, qty, avail, (image,) if image else (), attributes,
                     url_tpl.format(asin=asin, sku=sku) if url_tpl and asin else None,
                     where, bad or _NONE)

    return convert


@register_connector
class AmazonListings(Connector):
    """Amazon listing or inventory report (tab-delimited), from a file, glob or URL."""

    type = "amazon_listings"
    help = "Amazon Seller Central listing/inventory report (tab-delimited text)."
    options = (
        Opt("decimal_separator", str, None,
            "Decimal separator of prices ('.' or ','); unset guesses per value.",
            choices=(".", ",")),
        Opt("columns", dict, {}, "Header overrides: our field = \"their header\" (sku, title, "
            "description, price, quantity, status, image, product_id, product_id_type, asin)."),
        Opt("product_url", str, None,
            "Listing URL template, e.g. \"https://www.amazon.de/dp/{asin}\"."),
        Opt("safety_stock", int, 0, "Quantities at or below this count as out of stock."),
        Opt("delimiter", str, "\t", "Column delimiter (tab in Amazon's reports; auto to sniff)."),
    )

    def read(self, ctx: SourceContext) -> Iterator[Listing]:
        """Every row of every report file as a Listing keyed by seller SKU."""
        opts = self.channel.options
        if not opts.get("currency"):
            raise SourceError(self.channel.name, "amazon_listings needs the marketplace's "
                              "currency: set currency = \"EUR\" (or USD, GBP, ...) on the channel")
        yield from dedupe(ctx, self._rows(ctx, opts), "seller-sku")

    def _rows(self, ctx: SourceContext, opts: Mapping[str, Any]) -> Iterator[Listing]:
        with ctx.files() as files:
            for sf in files:
                kind = sf.kind()
                if kind in ("html", "xml", "json", "xlsx"):
                    raise SourceError(sf.name, f"got {kind.upper()} where a tab-delimited "
                                               f"Amazon report was expected")
                header, rows = csvio.open_rows(sf, opts.get("encoding") or "auto",
                                               opts.get("delimiter") or "\t", ctx.key_lost,
                                               ragged="report")
                if not header:
                    continue
                convert = row_converter(header, sf.name, self.channel.name, ctx.now, opts)
                ctx.carries(*carried_fields(header, sf.name, opts))
                for line, cells in rows:
                    try:
                        yield convert(line, cells)
                    except BadRecord as e:  # no seller-sku: the row may be any listing
                        ctx.key_lost(f"{sf.name}:{line}", str(e))
