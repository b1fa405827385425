"""Any tabular export (CSV, TSV, XLSX): point-of-sale systems, ERP dumps, spreadsheets.

A column map names which of their headers holds each of our fields; presets
carry the maps of known exports (Square, Lightspeed). Per-location quantity
columns become one listing per store, keyed ``"<sku>@<location>"``.
Numbers follow the channel's locale (``decimal_separator``), prices may carry
currency symbols, dates follow ``date_format``.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any, Callable, Iterator, Mapping

from auditor import csvio
from auditor.connector import Connector, SourceContext
from auditor.errors import BadRecord, SourceError
from auditor.model import Availability, Listing
from auditor.options import Opt
from auditor.plugins import register_connector
from auditor.sources import SourceFile
from auditor.values import (LostDigits, availability_from_quantity, normalize_gtin, parse_availability,
                            parse_datetime, parse_int, parse_money)
from auditor.connectors._common import (header_key, listing_maker, map_columns,
                                map_columns_all, row_values)

# Listing fields a column map may name; any other name becomes an attribute.
TEXT_FIELDS = ("title", "description", "brand", "mpn", "url", "group_id")
FIELDS = ("key", "sku", "gtin", "price", "sale_price", "sale_start", "sale_end", "quantity",
          "availability", "image", "images", "location", "currency") + TEXT_FIELDS

# Shared fields of a row first, then the per-location ones.
_make = listing_maker("channel", "fetched_at", "sku", "title", "description", "brand", "mpn",
                      "url", "group_id", "gtin", "images", "price", "sale_price", "sale_start",
                      "sale_end", "attributes", "evidence", "key", "quantity", "availability",
                      "location", "unread")
_NONE: dict[str, str] = {}  # shared "no unread cell" (never written to)

# Column maps of known exports (formats.md section 7). Several candidate
# headers per field: exports differ by version and language; the first present wins.
PRESETS: dict[str, dict[str, Any]] = {
    "square": {
        "columns": {
            "sku": "SKU", "key": "Token", "title": "Item Name", "variation": "Variation Name",
            "description": "Description", "category": "Category", "group_id": "Reference Handle",
            "price": ["Price", "Default Unit Price"], "gtin": ["GTIN", "UPC"],
        },
        "locations": r"^(?:Current Quantity|Quantity) (.+)$",
    },
    "lightspeed": {
        "columns": {
            "key": "System ID", "sku": ["Custom SKU", "System ID"], "title": "Description",
            "gtin": ["UPC", "EAN"], "mpn": ["Manufact. SKU", "Manufacturer SKU"],
            "category": "Category", "brand": ["Brand", "Manufacturer"],
            "price": ["Price", "Default - Price", "Default Price"],
        },
        "locations": r"^(.+?) - (?:Quantity on Hand|QOH)$",
    },
}


def _cell_text(v: Any, decimal_separator: str | None = None) -> str:
    """A spreadsheet cell as the text a CSV export would hold.

    A number cell is a number whatever the locale: its decimal point is written as the
    channel's ``decimal_separator`` (so 74.5 reads as 74.5 where text cells say "74,5")."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        # repr is the shortest text that reads back as the same float: 12.99, not 12.990000000000002
        if v.is_integer():
            return str(int(v))
        text = repr(v)
        return text.replace(".", ",") if decimal_separator == "," and "e" not in text else text
    if isinstance(v, Decimal):
        return str(v).replace(".", ",") if decimal_separator == "," else str(v)
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    return str(v)


def xlsx_rows(sf: SourceFile, sheet: str | None = None,
              header_at: Callable[[list[str]], bool] | None = None,
              decimal_separator: str | None = None,
              ) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """Header and (row number, cells) of a workbook sheet, streamed (read-only mode).

    The header is the first non-blank row, or with ``header_at`` the first of the first
    ``csvio.MAX_PREAMBLE`` non-blank rows it accepts (title rows above the header skipped)."""
    import zipfile

    from openpyxl import load_workbook

    try:
        wb = load_workbook(sf.path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as e:
        raise SourceError(sf.name, f"not a readable XLSX workbook: {e}") from None
    try:
        ws = wb[sheet] if sheet else wb.active
    except KeyError:
        wb.close()
        raise SourceError(sf.name, f"no sheet named {sheet!r} (sheets: "
                                   f"{', '.join(wb.sheetnames)})") from None
    it = ws.iter_rows(values_only=True)
    header: list[str] = []
    n = 0
    first: tuple[list[str], int] | None = None
    looked = 0
    for row in it:
        n += 1
        if any(c is not None and str(c).strip() for c in row):
            header = [_cell_text(c).strip() for c in row]
            if header_at is None or header_at(header):
                break
            first = first or (header, n)
            looked += 1
            if looked > csvio.MAX_PREAMBLE:
                break
    if first and header_at is not None and not header_at(header):
        header = first[0]  # no row is a header: the first non-blank one (then rejected)
    while header and not header[-1]:
        header.pop()

    def rows() -> Iterator[tuple[int, list[str]]]:
        line = n
        try:
            for row in it:
                line += 1
                cells = [_cell_text(c, decimal_separator) for c in row[:len(header)]]
                if any(c.strip() for c in cells):
                    yield line, cells + [""] * (len(header) - len(cells))
        except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as e:
            raise SourceError(sf.name, f"broken workbook after row {line}: {e}") from None
        finally:
            wb.close()

    return header, rows()


def _locations(header: list[str], spec: Any, name: str) -> list[tuple[str, int]]:
    """(location name, column index) from a regex over headers or an explicit map."""
    if not spec:
        return []
    if isinstance(spec, dict):
        idx = map_columns(header, spec, name, required=tuple(spec))
        return [(loc, idx[loc]) for loc in spec]
    rx = re.compile(spec)
    out = []
    for i, h in enumerate(header):
        m = rx.search(h)
        if m:
            out.append(((m.group(1) if m.groups() else h).strip(), i))
    if not out:
        raise SourceError(name, f"no column matches locations = {spec!r}; header is: "
                                f"{', '.join(header[:20])}")
    return out


def settings(opts: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """The column map and location spec: the preset's, overridden by the channel's."""
    preset = opts.get("preset")
    base = PRESETS.get(preset or "", {"columns": {}, "locations": None})
    columns = {**base["columns"], **(opts.get("columns") or {})}
    locations = opts.get("locations") or base["locations"]
    return columns, locations


def carried_fields(header: list[str], name: str, opts: Mapping[str, Any]) -> set[str]:
    """The listing fields an export with this header carries (its mapped columns)."""
    columns, loc_spec = _columns(header, opts)
    cols = map_columns_all(header, columns, name)
    out = {f for f in cols if f in FIELDS and f != "currency"}
    if "image" in out:
        out.add("images")
    if loc_spec and _locations(header, loc_spec, name):
        out.update(("quantity", "availability"))
    if "quantity" in out:
        out.add("availability")
    return out


def _columns(header: list[str], opts: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    columns, loc_spec = settings(opts)
    if "sku" not in columns and "key" not in columns:
        # No key in the map: headers named like our fields ("sku", "price", ...) are used
        # as they are, beside what the map names (e.g. only a units_sold attribute).
        ours = {header_key(f): f for f in FIELDS}
        columns = {**{ours[k]: h for h in header if (k := header_key(h)) in ours}, **columns}
    return columns, loc_spec


def header_test(opts: Mapping[str, Any]) -> Callable[[list[str]], bool]:
    """Whether a row is the header: it has the key (or SKU) column the map names."""
    def test(cells: list[str]) -> bool:
        columns, _ = _columns(cells, opts)
        keys: dict[str, Any] = {f: columns[f] for f in ("sku", "key") if f in columns}
        return bool(keys) and bool(map_columns_all(cells, keys, ""))
    return test


# What a totals row writes in its first cell: not a product (Summe, Total, Gesamt ...).
TOTALS = frozenset({"total", "totals", "grand total", "sum", "summe", "gesamt", "gesamtsumme",
                    "insgesamt", "endsumme", "somme", "total général", "totaal", "totale",
                    "suma", "summa", "totalt", "i alt", "razem", "celkem", "toplam", "итого",
                    "合計"})
_TOTALS_LEN = max(map(len, TOTALS)) + 1  # a trailing colon


# The usual spellings, for one set lookup per row ("Summe", "SUMME", "Total:").
_TOTALS_FORMS = frozenset(f(w) + end for w in TOTALS for f in (str.lower, str.title, str.upper)
                          for end in ("", ":"))


def _says_total(word: str, exact: bool = True) -> bool:
    if word in _TOTALS_FORMS:
        return True
    return not exact and len(word) <= _TOTALS_LEN + 4 and \
        word.strip().rstrip(":").strip().casefold() in TOTALS


def row_converter(header: list[str], name: str, channel: str, fetched_at,
                  opts: Mapping[str, Any]):
    """A function (line, cells) -> (row key, Listings) for an export with this header.

    A row without a key raises BadRecord; a cell that cannot be read (a price ``abc``)
    leaves its field empty and is named in the listing's ``unread``."""
    columns, loc_spec = _columns(header, opts)
    cols = map_columns_all(header, columns, name)
    idx = {f: i[0] for f, i in cols.items()}
    if "sku" not in idx and "key" not in idx:
        raise SourceError(name, f"no SKU column: map one with columns = {{ sku = \"...\" }} "
                                f"(header is: {', '.join(header[:20])})")
    key_header = header[idx["sku"] if "sku" in idx else idx["key"]]
    locations = _locations(header, loc_spec, name)
    loc_cols = {i for _, i in locations}
    attr_cols = [(f, i) for f, i in idx.items() if f not in FIELDS and i not in loc_cols]
    currency = opts.get("currency")
    dsep = opts.get("decimal_separator")
    tz = opts.get("timezone") or "UTC"
    dfmt = opts.get("date_format")
    safety = opts.get("safety_stock") or 0
    values = row_values({f: i for f, i in cols.items() if f in FIELDS})

    def money(row: dict[str, str], field: str, bad: dict[str, str], where: str):
        v = row.get(field)
        if not v:
            return None
        try:  # a currency column (ISO code per row) before the channel's `currency`
            return parse_money(v, row.get("currency") or currency, dsep)
        except ValueError as e:
            bad[field] = f"{where}: bad {field} {v!r} in column {header[idx[field]]!r}: {e}"
            return None

    def date(row: dict[str, str], field: str, bad: dict[str, str], where: str):
        v = row.get(field)
        if not v:
            return None
        try:
            return parse_datetime(v, tz, dfmt)
        except ValueError as e:
            bad[field] = f"{where}: {e} in column {header[idx[field]]!r}"
            return None

    def quantity(v: str | None, column: str, bad: dict[str, str], where: str) -> int | None:
        if not v:
            return None
        try:
            return parse_int(v, dsep)
        except ValueError as e:
            bad["quantity"] = f"{where}: {e} in column {column!r}"
            return None

    def convert(line: int, cells: list[str]) -> tuple[str, list[Listing]]:
        row = values(cells)
        get = row.get
        sku = get("sku")
        key = sku or get("key")
        # A totals row under the list: its key cell (or, with none, its first filled cell)
        # says "Summe"/"Total" and it names no product (no title, no GTIN).
        if (_says_total(key) if key else _says_total(
                next((c for c in cells if c.strip()), ""), exact=False)) and \
                not (get("title") or get("gtin")):
            return "", []
        if not key:
            raise BadRecord(f"row has no SKU (column {key_header!r} is empty)", "sku")
        where = f"{name}:{line}"
        bad: dict[str, str] = {}
        attributes = {f: v for f, i in attr_cols if i < len(cells) and (v := cells[i].strip())}
        gtin = get("gtin")
        if gtin:
            try:
                gtin = normalize_gtin(gtin)
            except LostDigits as e:  # the export's fault, not the channel's GTIN
                bad["gtin"] = f"{where}: {e} in column {header[idx['gtin']]!r}"
                gtin = None
            except ValueError:
                pass  # kept as written: the GTIN check reports it
        avail = None
        a = get("availability")
        if a:
            try:
                avail = parse_availability(a)
            except ValueError as e:
                bad["availability"] = f"{where}: {e}"
            if avail is Availability.UNKNOWN:
                avail = None
        images: tuple[str, ...] = ()
        im = get("images") or get("image")
        if im:
            images = tuple(u.strip() for u in re.split(r"[|,]\s*(?=https?:|//)", im) if u.strip())
        common = (channel, fetched_at, sku, get("title"), get("description"), get("brand"),
                  get("mpn"), get("url"), get("group_id"), gtin, images,
                  money(row, "price", bad, where), money(row, "sale_price", bad, where),
                  date(row, "sale_start", bad, where), date(row, "sale_end", bad, where),
                  attributes, where)
        if not locations:
            qty = quantity(get("quantity"), header[idx["quantity"]] if "quantity" in idx
                           else "quantity", bad, where)
            if avail is None and qty is not None:
                avail = availability_from_quantity(qty, safety)
            return key, [_make(*common, key, qty, avail, get("location"), bad or _NONE)]
        out = []
        shared = bad or _NONE
        for loc, i in locations:
            v = cells[i].strip() if i < len(cells) else ""
            qty = None
            own = shared
            if v:
                try:
                    qty = parse_int(v, dsep)
                except ValueError as e:  # this location's count only
                    own = {**bad, "quantity": f"{where}: {e} in column {header[i]!r}"}
            la = avail if qty is None else availability_from_quantity(qty, safety)
            out.append(_make(*common, f"{key}@{loc}", qty, la, loc, own))
        return key, out

    return convert


def _check_locations(v: Any) -> Any:
    """Validate the ``locations`` option: a regex or a table of location = header."""
    if isinstance(v, str):
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"invalid regular expression {v!r}: {e}") from None
        return v
    if isinstance(v, dict) and all(isinstance(x, str) for x in v.values()):
        return v
    raise ValueError("expected a regex string or a table of location = \"header\"")


@register_connector
class Tabular(Connector):
    """A CSV, TSV or XLSX export mapped by a column map (POS systems, spreadsheets)."""

    type = "tabular"
    help = "Any CSV/TSV/XLSX export with a column map; presets for Square and Lightspeed."
    options = (
        Opt("preset", str, None, "Column map of a known export.", choices=tuple(PRESETS)),
        Opt("columns", dict, {}, "Our field = \"their header\" (or an array of candidate "
            "headers): key, sku, title, description, brand, gtin, mpn, price, sale_price, "
            "sale_start, sale_end, quantity, availability, image(s), url, group_id, "
            "location; any other name is kept as an attribute."),
        Opt("locations", _check_locations, None,
            "Per-location quantity columns: a regex over headers whose first group is the "
            "location (\"Current Quantity (.*)\"), or a table location = \"header\"."),
        Opt("decimal_separator", str, None,
            "Decimal separator of prices and numbers ('.' or ','); unset guesses per value.",
            choices=(".", ",")),
        Opt("date_format", str, None, "strptime format of dates when not ISO 8601 (\"%d.%m.%Y\")."),
        Opt("timezone", str, "UTC", "Time zone of dates written without one."),
        Opt("safety_stock", int, 0, "Quantities at or below this count as out of stock."),
        Opt("sheet", str, None, "XLSX: the sheet to read (default: the active one)."),
        Opt("delimiter", str, "auto", "CSV delimiter, or auto to sniff."),
        Opt("format", str, "auto", "auto (by content), csv or xlsx.",
            choices=("auto", "csv", "xlsx")),
    )

    def read(self, ctx: SourceContext) -> Iterator[Listing]:
        """Every row (or row and location) of every export file as a Listing."""
        opts = self.channel.options
        # Duplicates are found by row key: per-location keys would double the set.
        seen: set[str] = set()
        with ctx.files() as files:
            for sf in files:
                kind = "xlsx" if opts.get("format") == "xlsx" else sf.kind()
                if kind in ("html", "xml", "json"):
                    raise SourceError(sf.name, f"got {kind.upper()} where a CSV/TSV/XLSX "
                                               f"export was expected")
                is_header = header_test(opts)
                if kind == "xlsx":
                    header, rows = xlsx_rows(sf, opts.get("sheet"), is_header,
                                             opts.get("decimal_separator"))
                else:
                    header, rows = csvio.open_rows(sf, opts.get("encoding") or "auto",
                                                   opts.get("delimiter") or "auto", ctx.key_lost,
                                                   ragged="report", header_at=is_header)
                if not header:
                    continue
                convert = row_converter(header, sf.name, self.channel.name, ctx.now, opts)
                ctx.carries(*carried_fields(header, sf.name, opts))
                for line, cells in rows:
                    try:
                        key, listings = convert(line, cells)
                    except BadRecord as e:  # no key: the row may be any listing
                        ctx.key_lost(f"{sf.name}:{line}", str(e))
                        continue
                    if not listings:
                        continue  # a totals row
                    if key in seen:
                        ctx.bad(f"{sf.name}:{line}", f"duplicate key {key!r}; kept the first")
                        continue
                    seen.add(key)
                    yield from listings
