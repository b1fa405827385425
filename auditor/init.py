"""`auditor init [FILES...]`: a commented config.toml guessed from the files a user has.

Each file is looked at (its content, never only its name): an XML feed in Google's
namespace, an Amazon report (``seller-sku``), a Shopify export (``Handle`` and
``Variant ...``), a Square or Lightspeed export, a Meta catalog, or any other table.
The master is the file named with ``--master``, else the first file that is not a
known channel format. For tables, the column holding each of our fields is guessed
from its header (``Article No`` -> sku, ``VK`` -> price). Every guess is written as
a comment in the file and listed on the terminal, and the result is validated the
way ``auditor config check --offline`` does before it is written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from auditor import csvio
from auditor.errors import AuditorError, SourceError
from auditor.master import master_reads
from auditor.sources import SourceFile

# Our field -> header spellings that usually hold it (compared loosely: case, spaces,
# dashes and dots ignored), most specific first. German spellings are common in POS exports.
FIELD_HINTS: dict[str, tuple[str, ...]] = {
    "sku": ("sku", "skuid", "articleno", "articlenumber", "artnr", "artikelnr", "artikelnummer",
            "itemno", "itemnumber", "itemcode", "productcode", "productid", "variantsku",
            "customsku", "reference", "ref", "code"),
    "title": ("title", "name", "productname", "itemname", "productitle", "bezeichnung",
              "artikelname", "producttitle"),
    "description": ("description", "beschreibung", "longdescription", "body"),
    "brand": ("brand", "vendor", "manufacturer", "marke", "hersteller"),
    "gtin": ("gtin", "ean", "ean13", "upc", "barcode", "isbn"),
    "mpn": ("mpn", "manufacturersku", "manufacturerpartnumber", "partnumber"),
    "price": ("price", "retailprice", "unitprice", "salesprice", "vk", "vkpreis", "preis",
              "listprice", "rrp", "msrp"),
    "sale_price": ("saleprice", "specialprice", "aktionspreis", "aktion", "promoprice"),
    "currency": ("currency", "waehrung", "währung", "cur"),
    "quantity": ("quantity", "qty", "stock", "onhand", "qoh", "inventory", "bestand",
                 "menge", "stocklevel", "available"),
    "availability": ("availability", "stockstatus", "verfuegbarkeit", "verfügbarkeit"),
    "url": ("url", "link", "producturl"),
    "image": ("image", "imageurl", "imagelink", "image1", "bild", "picture"),
    "status": ("status",),
    "color": ("color", "colour", "farbe"),
    "size": ("size", "groesse", "größe", "grösse"),
}
# The master's standard column names (fields the import knows without a remap).
MASTER_FIELDS = ("sku", "title", "description", "brand", "gtin", "mpn", "price", "currency",
                 "sale_price", "quantity", "availability", "status", "url", "color", "size")
_CURRENCY_HINT = re.compile(r"(€|\bEUR\b)|(\$|\bUSD\b)|(£|\bGBP\b)|(\bCHF\b)")
_CURRENCIES = ("EUR", "USD", "GBP", "CHF")


def _key(h: str) -> str:
    return re.sub(r"[\s_\-.#/()]+", "", h.strip().lower())


# VAT rates a tax-inclusive channel may add to the master's net prices (standard and common
# reduced rates in Europe; a match needs most shared SKUs to agree on one).
VAT_RATES = ("0.19", "0.2", "0.21", "0.22", "0.23", "0.24", "0.25", "0.255", "0.27", "0.17",
             "0.16", "0.15", "0.1", "0.081", "0.077", "0.07", "0.055", "0.05", "0.09", "0.12",
             "0.13", "0.14", "0.18")
TAX_SAMPLE = 500      # channel rows compared with the master
TAX_MIN_SHARED = 5    # fewer SKUs both carry (with prices): no guess


@dataclass
class Guess:
    """What one file was taken for, and why."""

    path: Path
    role: str                       # "master" or "channel"
    kind: str                       # master type (csv, jsonl) or connector type
    name: str = ""                  # channel name
    options: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)   # our field -> their header
    notes: list[str] = field(default_factory=list)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)  # [channels.checks.X]
    tax_note: str = ""              # what was found about tax-inclusive prices


def _header_and_rows(path: Path, n: int = 50) -> tuple[list[str], list[list[str]], str]:
    """(header, first rows, kind) of a delimited or XLSX file."""
    sf = SourceFile(str(path), path)
    kind = sf.kind()
    if kind == "xlsx":
        from auditor.connectors.tabular import xlsx_rows

        header, rows = xlsx_rows(sf)
        first = []
        for _, cells in rows:
            first.append(cells)
            if len(first) >= n:
                break
        return header, first, "xlsx"
    if kind != "text":
        return [], [], kind
    header, rows = csvio.open_rows(sf, "auto", "auto", None)
    first = []
    for _, cells in rows:
        first.append(cells)
        if len(first) >= n:
            break
    return header, first, "text"


def guess_columns(header: list[str], fields: tuple[str, ...] = tuple(FIELD_HINTS)
                  ) -> dict[str, str]:
    """Our field -> the header most likely holding it (each header used once)."""
    keys = {_key(h): h for h in header if h.strip()}
    out: dict[str, str] = {}
    used: set[str] = set()
    for f in fields:
        for hint in FIELD_HINTS.get(f, (f,)):
            h = keys.get(hint)
            if h is not None and h not in used:
                out[f] = h
                used.add(h)
                break
    return out


def _guess_currency(header: list[str], rows: list[list[str]], column: str | None
                    ) -> str | None:
    if column is None or column not in header:
        return None
    i = header.index(column)
    seen: dict[str, int] = {}
    for r in rows:
        if i < len(r):
            m = _CURRENCY_HINT.search(r[i])
            if m and m.lastindex:
                cur = _CURRENCIES[m.lastindex - 1]
                seen[cur] = seen.get(cur, 0) + 1
    return max(seen, key=lambda c: seen[c]) if seen else None


def _decimal_comma(header: list[str], rows: list[list[str]], column: str | None) -> bool:
    if column is None or column not in header:
        return False
    i = header.index(column)
    return any(i < len(r) and re.search(r"\d,\d{2}\b", r[i]) and "." not in r[i].split(",")[-1]
               for r in rows)


def _channel_format(path: Path, header: list[str], kind: str) -> tuple[str, dict[str, Any], str]:
    """(connector type, options, why) of a file in a known channel format, else ("", ...)."""
    keys = {_key(h) for h in header}
    if kind == "xml":
        text = path.read_bytes()[:4096].decode("utf-8", "replace")
        if "base.google.com/ns/1.0" in text:
            if re.search(r"facebook|meta|instagram", path.name, re.I):
                return "meta_catalog", {}, "XML feed with g: elements, named like Meta's"
            return "google_merchant", {}, "XML feed in Google's g: namespace"
        return "", {}, ""
    if {"sellersku"} & keys or {"asin1", "itemname"} <= keys:
        return "amazon_listings", {}, "an Amazon report (seller-sku column)"
    if "handle" in keys and ({"variantsku", "variantprice"} & keys):
        return "shopify", {}, "a Shopify product export (Handle, Variant ... columns)"
    if {"token", "itemname", "variationname"} <= keys:
        return "tabular", {"preset": "square"}, "a Square item export (Token, Item Name)"
    if {"systemid", "customsku"} <= keys:
        return "tabular", {"preset": "lightspeed"}, "a Lightspeed export (System ID, Custom SKU)"
    feedish = {"id", "title", "price", "link"} <= keys and ({"availability", "imagelink"} & keys)
    if feedish:
        if "quantitytosellonfacebook" in keys or any(k.startswith("image0") for k in keys) or \
                re.search(r"facebook|meta|instagram", path.name, re.I):
            return "meta_catalog", {}, "a Meta catalog (id, title, price, link columns)"
        return "google_merchant", {}, "a Google Merchant feed (id, title, price, link columns)"
    return "", {}, ""


def _channel_name(path: Path, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9_-]+", "-", path.stem.lower()).strip("-_") or "channel"
    base = re.sub(r"^[^a-z0-9]+", "", base)[:50] or "channel"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def guess(paths: list[Path], master: Path | None = None) -> list[Guess]:
    """A guess per file: the master first, then the channels in the order given."""
    guesses: list[Guess] = []
    taken: set[str] = set()
    master_done = False
    for path in paths:
        if not path.is_file():
            raise AuditorError(f"{path}: no such file")
        try:
            header, rows, kind = _header_and_rows(path)
        except SourceError as e:
            raise AuditorError(f"{path}: cannot read: {e.reason}") from None
        is_master = master is not None and path.resolve() == master.resolve()
        if kind == "json" and not master_done and (master is None or is_master):
            first = path.read_text(encoding="utf-8", errors="replace").lstrip()[:1]
            if first == "{":
                guesses.append(Guess(path, "master", "jsonl",
                                     notes=["JSON Lines: one master record per line"]))
                master_done = True
                continue
        ctype, opts, why = ("", {}, "") if is_master else _channel_format(path, header, kind)
        if ctype:
            g = Guess(path, "channel", ctype, _channel_name(path, taken), dict(opts), notes=[why])
            if ctype in ("amazon_listings", "shopify") or opts.get("preset"):
                price_col = next((h for h in header if "price" in h.lower()), None)
                cur = _guess_currency(header, rows, price_col)
                if _decimal_comma(header, rows, price_col):
                    g.options["decimal_separator"] = ","
                    g.notes.append("decimal commas in prices")
                g.options["currency"] = cur or "EUR"
                g.notes.append(f"currency {g.options['currency']}: "
                               + ("seen in the price column" if cur else
                                  "a guess (this format writes prices without one): check it"))
            guesses.append(g)
            continue
        if not header:
            raise AuditorError(f"{path}: not a table, an XML feed or JSON Lines this auditor "
                               f"can guess (kind: {kind})")
        cols = guess_columns(header)
        if "sku" not in cols:
            raise AuditorError(f"{path}: no column looks like a SKU (header: "
                               f"{', '.join(header[:12])}); name one sku, or write the "
                               f"config by hand")
        if (master is None and not master_done and kind != "xlsx") or is_master:
            if kind == "xlsx":
                raise AuditorError(f"{path}: the master is read from CSV or JSON Lines: save "
                                   f"the workbook as CSV and name that file")
            g = Guess(path, "master", "csv", columns=cols)
            master_done = True
        else:
            g = Guess(path, "channel", "tabular", _channel_name(path, taken), columns=cols)
        cur = _guess_currency(header, rows, cols.get("price"))
        if "currency" not in cols:
            key = "default_currency" if g.role == "master" else "currency"
            g.options[key] = cur or "EUR"
            g.notes.append(f"{key} {g.options[key]}: " + (
                "seen in the price column" if cur else "no currency column or symbol seen: "
                                                       "a guess, check it"))
        if _decimal_comma(header, rows, cols.get("price")) and g.role == "channel":
            g.options["decimal_separator"] = ","
            g.notes.append("decimal commas in prices")
        unmapped = [h for h in header if h and h not in cols.values()
                    and not (g.role == "master" and master_reads(h))]
        if unmapped:
            g.notes.append("kept as attributes: " + ", ".join(unmapped[:12])
                           + (" ..." if len(unmapped) > 12 else ""))
        guesses.append(g)
    if not master_done:
        raise AuditorError("no file looks like a master export (a table with a SKU column "
                           "that is not a known channel format): name it with --master")
    guesses.sort(key=lambda g: g.role != "master")
    for g in guesses[1:]:
        if g.kind == "tabular" and not g.options.get("preset"):
            guess_tax(guesses[0], g)
            g.notes.append(g.tax_note)
    return guesses


def _money(text: str, currency: str, sep: str | None = None) -> Decimal | None:
    """The amount of a price cell in ``currency`` (None: empty, unreadable, another one)."""
    from auditor.values import parse_money

    if not text or not text.strip():
        return None
    try:
        m = parse_money(text, currency, sep)
    except (ValueError, ArithmeticError):
        return None
    return m.amount if m.currency == currency else None


def _channel_prices(g: Guess) -> dict[str, Decimal]:
    """SKU -> price of the channel's first ``TAX_SAMPLE`` rows with both."""
    header, rows, _ = _header_and_rows(g.path, TAX_SAMPLE)
    sku, price = g.columns.get("sku"), g.columns.get("price")
    if sku not in header or price not in header:
        return {}
    i, j = header.index(sku), header.index(price)  # type: ignore[arg-type]
    out: dict[str, Decimal] = {}
    cur, sep = g.options.get("currency") or "EUR", g.options.get("decimal_separator")
    for r in rows:
        if max(i, j) < len(r) and r[i].strip():
            amount = _money(r[j], cur, sep)
            if amount is not None and amount > 0:
                out[r[i].strip()] = amount
    return out


def _master_prices(master: Guess, skus: set[str], currency: str | None
                   ) -> dict[str, list[Decimal]]:
    """SKU -> the master's price and sale price (in ``currency``) for ``skus``."""
    if master.kind != "csv":
        return {}
    cols = master.columns
    sf = SourceFile(str(master.path), master.path)
    header, rows = csvio.open_rows(sf, "auto", "auto", None)
    if cols.get("sku") not in header or cols.get("price") not in header:
        return {}
    i = header.index(cols["sku"])
    where = [header.index(cols[f]) for f in ("price", "sale_price") if cols.get(f) in header]
    c = header.index(cols["currency"]) if cols.get("currency") in header else None
    default = master.options.get("default_currency")
    out: dict[str, list[Decimal]] = {}
    for _, r in rows:
        if i >= len(r) or r[i].strip() not in skus:
            continue
        cur = (r[c].strip().upper() if c is not None and c < len(r) and r[c].strip()
               else default)
        if currency and cur and cur != currency:
            continue
        amounts = [a for k in where
                   if k < len(r) and (a := _money(r[k], cur or currency or "EUR")) is not None]
        if amounts:
            out[r[i].strip()] = amounts
            if len(out) == len(skus):
                break
    return out


def guess_tax(master: Guess, g: Guess) -> None:
    """Whether a table channel shows the master's net prices or gross ones (net x (1 +
    VAT)): compares the prices of the SKUs both carry with the master's price and sale
    price, net and at each of ``VAT_RATES``, and takes the reading most of them match
    (within a cent of rounding). Sets ``g.checks["price"]`` for a gross reading; says in
    ``g.tax_note`` what it found, or that it cannot tell."""
    channel = _channel_prices(g)
    master_prices = _master_prices(master, set(channel), g.options.get("currency")) \
        if channel else {}
    shared = [(channel[k], m) for k, m in master_prices.items()]
    how = ("add [channels.checks.price] with tax_inclusive = true and vat_rate = \"19%\" "
           "if this channel shows prices with VAT")
    if len(shared) < TAX_MIN_SHARED:
        g.tax_note = (f"tax-inclusive prices: cannot tell ({len(shared)} SKU(s) with a price "
                      f"in both this file and the master, {TAX_MIN_SHARED} needed): {how}")
        return
    cent = Decimal("0.01")
    counts: dict[Decimal, int] = {}
    for rate in [Decimal(0), *map(Decimal, VAT_RATES)]:
        factor = 1 + rate
        slack = cent / 2 * factor + cent / 2  # the net and the gross were each rounded
        counts[rate] = sum(1 for price, nets in shared
                           if any(abs(price - n * factor) <= slack for n in nets))
    ranked = sorted(counts, key=lambda r: (-counts[r], r))
    best, second = ranked[0], ranked[1]
    n, total = counts[best], len(shared)
    if n * 2 <= total or n < 2 * counts[second]:
        g.tax_note = (f"tax-inclusive prices: cannot tell (of {total} SKUs in both files, at "
                      f"most {n} match the master's prices net or with one VAT rate): {how}")
        return
    if best == 0:
        g.tax_note = (f"prices without VAT: {n} of {total} SKUs in both files show the "
                      f"master's net price (tax_inclusive left false)")
        return
    from auditor.checks.price import percent

    g.checks["price"] = {"tax_inclusive": True, "vat_rate": percent(best)}
    g.tax_note = (f"prices with VAT guessed: {n} of {total} SKUs in both files show the "
                  f"master's price x {1 + best} (VAT {percent(best)}); check the rate")


def _toml(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())


def render(guesses: list[Guess], base: Path) -> str:
    """The commented config.toml for these guesses."""
    lines = [
        "# omni-auditor configuration, written by `auditor init` from the files it was given.",
        "# Every guess is said in a comment: check them, then run",
        "#   auditor config check      (validates this file and opens every source)",
        "#   auditor run               (one audit)",
        "# Every key, its default and meaning: auditor config options",
        "",
        "[store]",
        'path = "auditor.db"                 # SQLite database, next to this file',
        "",
    ]
    for g in guesses:
        where = _rel(g.path, base)
        if g.role == "master":
            lines += ["[master]                             # the PIM export: the approved truth",
                      f"type = {_toml(g.kind)}",
                      f"source = {_toml(where)}",
                      '# schedule = "0 5 * * *"           # for `auditor serve`: import it daily '
                      'at 05:00 (cron)']
            for k, v in g.options.items():
                lines.append(f"{k} = {_toml(v)}")
            lines += [f"# {n}" for n in g.notes]
            remap = {f: h for f, h in g.columns.items() if h != f and f in MASTER_FIELDS}
            img = g.columns.get("image")
            if img and img != "images" and not re.match(r"^image_?\d+$", img, re.I):
                remap["images"] = img  # one URL, or several separated by |
            if remap:
                lines += ["[master.columns]                     # guessed: our field = "
                          "\"their column\""]
                lines += [f"{f} = {_toml(h)}" for f, h in remap.items()]
            lines.append("")
            continue
        lines += ["[[channels]]",
                  f"name = {_toml(g.name)}",
                  f"type = {_toml(g.kind)}                # guessed: {g.notes[0] if g.notes else ''}"
                  if g.kind != "tabular" or g.options.get("preset") else
                  f"type = {_toml(g.kind)}                # a table with a column map",
                  f"source = {_toml(where)}",
                  '# schedule = "0 */4 * * *"         # for `auditor serve`: audit it every '
                  'four hours (cron)']
        for k, v in g.options.items():
            lines.append(f"{k} = {_toml(v)}")
        lines += [f"# {n}" for n in (g.notes[1:] if g.kind != "tabular" or
                                      g.options.get("preset") else g.notes)
                  if n != g.tax_note]
        if g.kind == "tabular" and not g.options.get("preset"):
            cols = {f: h for f, h in g.columns.items() if f != "currency"}
            if f := cols.pop("image", None):
                cols["image"] = f
            body = ", ".join(f"{f} = {_toml(h)}" for f, h in cols.items())
            lines.append(f"columns = {{ {body} }}   # guessed: our field = \"their header\"")
        if g.tax_note:
            lines.append(f"# {g.tax_note}")
        for check, opts in g.checks.items():
            lines.append(f"[channels.checks.{check}]")
            lines += [f"{k} = {_toml(v)}" for k, v in opts.items()]
        lines.append("")
    return "\n".join(lines)


def write_config(paths: list[Path], output: Path, master: Path | None = None,
                 force: bool = False) -> tuple[Path, list[Guess]]:
    """Guess, render, validate and write; refuse to overwrite without ``force``."""
    from auditor.config import parse_config
    import tomllib

    if output.exists() and not force:
        raise AuditorError(f"{output} exists: pass --force to overwrite it, or --output "
                           f"another file")
    guesses = guess(paths, master)
    text = render(guesses, output.parent if str(output.parent) else Path("."))
    parse_config(tomllib.loads(text), output)  # raises ConfigError: a bug in the guesses
    output.write_text(text, encoding="utf-8")
    return output, guesses
