"""Master import from PIM exports (CSV and JSON Lines).

Column convention (remappable with ``[master.columns]``):

``sku`` (required), ``title``, ``description``, ``brand``, ``gtin``, ``mpn``,
``price``, ``currency``, ``sale_price``, ``sale_start``, ``sale_end``,
``price_<CUR>`` / ``sale_price_<CUR>`` (prices in further currencies),
``quantity``, ``availability``, ``status`` (active, discontinued, draft),
``url``, ``group_id``, ``image_1`` .. ``image_n`` or ``images`` (``|``-separated).
A column ``<field>@<channel>`` is a value approved for that channel only. Every
other column is an attribute.

A file with errors is rejected whole, listing every error with its line and
column, unless ``skip_bad_rows`` is set.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from auditor import csvio, sources
from auditor.compact import CompactRecords
from auditor.errors import MasterImportError, SourceError
from auditor.model import MasterRecord, MasterStatus, Money, ModelError
from auditor.values import (normalize_currency, normalize_gtin, gtin_valid, parse_availability,
                            parse_datetime, parse_int, parse_money)

KNOWN = {"sku", "title", "description", "brand", "gtin", "mpn", "price", "currency",
         "sale_price", "sale_start", "sale_end", "quantity", "availability", "status", "url",
         "images", "group_id"}
_IMAGE_COL = re.compile(r"^image_?(\d+)$", re.I)
_CUR_PRICE = re.compile(r"^(sale_price|price)_([a-z]{3})$", re.I)


def master_reads(header: str) -> bool:
    """Whether the master reads a column of this name as a field of its own (not an
    attribute): a known field, ``image_<n>``, ``price_<CUR>`` or ``<field>@<channel>``."""
    return (header in KNOWN or bool(_IMAGE_COL.match(header) or _CUR_PRICE.match(header))
            or "@" in header)


@dataclass
class MasterImport:
    """The outcome of reading a master file."""

    source: str
    records: CompactRecords | list[MasterRecord]  # a CompactRecords when read from a file
    errors: list[tuple[str, str]] = field(default_factory=list)
    rows: int = 0
    sha256: str | None = None
    unchanged: bool = False  # same file and options as the snapshot in force: not re-read


def _attr_key(col: str) -> str:
    return re.sub(r"\s+", "_", col.strip().lower())


@dataclass(frozen=True)
class _Plan:
    """What each column of a header means, worked out once per file (not per row)."""

    currency_prices: tuple[tuple[str, str | None, bool, str], ...]  # col, code, is_sale, error
    images: tuple[tuple[int, str], ...]
    overrides: tuple[tuple[str, str, str], ...]  # col, field, channel
    attributes: tuple[tuple[str, str], ...]  # col, attribute key
    nested: tuple[str, ...]  # 'attributes' / 'overrides' objects (JSON Lines)


@lru_cache(maxsize=256)
def _plan(columns: tuple[str, ...]) -> _Plan:
    cur: list[tuple[str, str | None, bool, str]]
    cur, images, overrides, attributes, nested = [], [], [], [], []
    for col in columns:
        if col in KNOWN:
            continue
        m = _CUR_PRICE.match(col)
        if m:
            try:
                cur.append((col, normalize_currency(m.group(2)), m.group(1).lower() == "sale_price", ""))
            except ValueError as e:
                cur.append((col, None, False, str(e)))
            continue
        m = _IMAGE_COL.match(col)
        if m:
            images.append((int(m.group(1)), col))
        elif "@" in col:
            fld, _, channel = col.partition("@")
            overrides.append((col, fld.strip(), channel.strip()))
        elif col in ("attributes", "overrides"):
            nested.append(col)
        else:
            attributes.append((col, _attr_key(col)))
    return _Plan(tuple(cur), tuple(sorted(images)), tuple(overrides), tuple(attributes),
                 tuple(nested))


def build_record(row: Mapping[str, Any], opts: Mapping[str, Any],
                 problems: list[tuple[str, str]]) -> MasterRecord | None:
    """One master record from a row of our field names; problems as (column, reason)."""
    plan = _plan(tuple(row))
    default_cur = opts.get("default_currency")
    tz = opts.get("timezone") or "UTC"
    dfmt = opts.get("date_format")

    def text(name: str) -> str | None:
        v = row.get(name)
        if v is None:
            return None
        v = str(v).strip()
        return v or None

    sku = text("sku")
    if not sku:
        problems.append(("sku", "missing SKU"))
        return None
    kw: dict[str, Any] = {"sku": sku}
    for name in ("title", "description", "brand", "mpn", "url", "group_id"):
        kw[name] = text(name)
    currency = text("currency")
    if currency:
        try:
            currency = normalize_currency(currency)
        except ValueError as e:
            problems.append(("currency", str(e)))
            currency = None
    cur = currency or default_cur

    def money(col: str, explicit_cur: str | None = None) -> Money | None:
        raw = row.get(col)
        if raw is None or str(raw).strip() == "":
            return None
        try:
            if isinstance(raw, (int, float)) and not isinstance(raw, bool):
                raw = repr(raw)
            return master_price(str(raw), explicit_cur or cur, explicit_cur or currency,
                                "its column" if explicit_cur else "the row's currency column")
        except (ValueError, ModelError) as e:
            why = str(e)
            if not (explicit_cur or cur) and "has no currency" in why:  # name the master's key
                why = (f"price {str(raw)!r} has no currency, nor has the row, and [master] "
                       f"has no default_currency (set default_currency = \"EUR\" or the like)")
            problems.append((col, f"bad price {raw!r}: {why}"))
            return None

    kw["price"] = money("price")
    kw["sale_price"] = money("sale_price")
    for name in ("sale_start", "sale_end"):
        v = text(name)
        if v:
            try:
                kw[name] = parse_datetime(v, tz, dfmt)
            except ValueError as e:
                problems.append((name, str(e)))
    if kw.get("sale_start") and kw.get("sale_end") and kw["sale_end"] < kw["sale_start"]:
        problems.append(("sale_end", "sale ends before it starts"))
    prices: dict[str, Money] = {}
    sale_prices: dict[str, Money] = {}
    for col, code, is_sale, error in plan.currency_prices:
        if error:
            problems.append((col, error))
            continue
        mv = money(col, code)
        if mv is not None:
            (sale_prices if is_sale else prices)[code] = mv  # type: ignore[index]
    kw["prices"], kw["sale_prices"] = prices, sale_prices
    g = text("gtin")
    if g:
        try:
            norm = normalize_gtin(g)
            if norm and not gtin_valid(norm):
                problems.append(("gtin", f"GTIN {g} has a wrong check digit"))
            kw["gtin"] = norm
        except ValueError as e:
            problems.append(("gtin", str(e)))
    q = text("quantity")
    if q:
        try:
            kw["quantity"] = parse_int(q)
        except ValueError as e:
            problems.append(("quantity", str(e)))
    a = text("availability")
    if a:
        try:
            kw["availability"] = parse_availability(a)
        except ValueError as e:
            problems.append(("availability", str(e)))
    s = text("status")
    if s:
        try:
            kw["status"] = MasterStatus(s.lower())
        except ValueError:
            problems.append(("status", f"unknown status {s!r} (expected active, discontinued, draft)"))
    images: list[str] = []
    imgs = row.get("images")
    if isinstance(imgs, list):
        images += [str(u).strip() for u in imgs if str(u).strip()]
    elif imgs:
        images += [u.strip() for u in str(imgs).split("|") if u.strip()]
    for _, col in plan.images:
        v = row.get(col)
        if v is not None and str(v).strip():
            images.append(str(v).strip())
    attributes: dict[str, str] = {}
    overrides: dict[str, dict[str, str]] = {}
    for col, key in plan.attributes:
        v = row.get(col)
        if v is not None:
            sv = _attr_text(v)
            if sv:
                attributes[key] = sv
    for col, fld, channel in plan.overrides:
        v = row.get(col)
        if v is not None and str(v).strip():
            overrides.setdefault(channel, {})[fld] = str(v).strip()
    if "attributes" in plan.nested and isinstance(row.get("attributes"), dict):
        for k, av in row["attributes"].items():
            if av is not None and str(av).strip():
                attributes[_attr_key(k)] = _attr_text(av)
    if "overrides" in plan.nested and isinstance(row.get("overrides"), dict):
        for channel, vals in row["overrides"].items():
            for fld, ov in (vals or {}).items():
                overrides.setdefault(channel, {})[fld] = str(ov)
    for channel, vals in overrides.items():
        for fld, ov in vals.items():
            if fld in ("price", "sale_price"):
                try:
                    master_price(ov, cur, currency, "the row's currency column")
                except (ValueError, ModelError) as e:
                    problems.append((f"{fld}@{channel}", f"bad price {ov!r}: {e}"))
    kw["images"] = tuple(images)
    kw["attributes"] = attributes
    kw["overrides"] = overrides
    if problems:
        return None
    return MasterRecord(**kw)


_EXPONENT = re.compile(r"\d\s*[eE]\s*[-+]?\d")


def master_price(raw: str, currency: str | None, stated: str | None, where: str) -> Money:
    """A master price, strictly: the master is the truth every channel is held to.

    Refused: scientific notation (``1e3`` is not read as 1), a negative amount, and a
    currency in the cell that contradicts ``stated`` (the row's currency column, or
    the currency of a ``price_<CUR>`` column). ValueError says why."""
    if _EXPONENT.search(raw):
        raise ValueError("scientific notation is not a price (write the amount in full)")
    m = parse_money(raw, currency)
    if m.amount < 0:
        raise ValueError("a price cannot be negative")
    if stated and m.currency != stated:
        raise ValueError(f"the cell is in {m.currency} but {where} says {stated}")
    return m


def _attr_text(v: Any) -> str:
    if isinstance(v, list):
        return "|".join(str(x).strip() for x in v if str(x).strip())
    return str(v).strip()


def _remap(header: list[str], columns: Mapping[str, str]) -> list[str]:
    """Their column names -> ours, by the ``[master.columns]`` map (ours = theirs)."""
    theirs = {v: k for k, v in columns.items()}
    out = []
    for h in header:
        if h in theirs:
            out.append(theirs[h])
        else:
            low = h.strip().lower()
            out.append(low if (low in KNOWN or _IMAGE_COL.match(low) or _CUR_PRICE.match(low))
                       else h.strip())
    return out


def read_csv(sf: sources.SourceFile, opts: Mapping[str, Any], parts: bool = False
             ) -> MasterImport:
    """Read a CSV master export. ``parts``: a large local file may be read in parts by
    forked processes (``auditor.masterparts``), with the same result."""
    out = MasterImport(sf.name, CompactRecords())
    encoding = opts.get("encoding") or "auto"
    kind = sf.kind()
    if kind in ("xlsx", "html", "xml", "json"):
        hint = " (JSON Lines? set type = \"jsonl\")" if kind == "json" else \
            " (save it as CSV from the spreadsheet)" if kind == "xlsx" else ""
        raise MasterImportError(sf.name, [(f"{sf.name}:1", f"got {kind.upper()} where a CSV "
                                           f"master export was expected{hint}")])
    if parts:
        from auditor.masterparts import read_csv as read_in_parts

        in_parts = read_in_parts(sf, opts, MasterImport(sf.name, CompactRecords()),
                                 _Collector, _names)
        if in_parts is not None:
            return in_parts

    def on_error(loc: str, reason: str) -> None:
        out.errors.append((loc, reason))

    header, rows = csvio.open_rows(sf, encoding, opts.get("delimiter") or "auto", on_error)
    names = _names(sf.name, header, opts, out)
    _collect(out, ((line, dict(zip(names, cells, strict=False)), len(cells) != len(names))
                   for line, cells in rows), sf.name, opts)
    return out


def _names(name: str, header: list[str], opts: Mapping[str, Any], out: MasterImport
           ) -> list[str]:
    """Our field names for a CSV header; MasterImportError when it has no SKU column."""
    if not header:
        raise MasterImportError(name, [(f"{name}:1", "empty file: no header row")])
    names = _remap(header, opts.get("columns") or {})
    if "sku" not in names:
        raise MasterImportError(name, [(f"{name}:1", "no 'sku' column in header "
                                        f"({', '.join(header[:12])}); map one with "
                                        "[master.columns] sku = \"...\"")])
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        out.errors.append((f"{name}:1", f"duplicate column(s): {', '.join(sorted(dupes))}"))
    return names


def read_jsonl(sf: sources.SourceFile, opts: Mapping[str, Any]) -> MasterImport:
    out = MasterImport(sf.name, CompactRecords())
    columns = opts.get("columns") or {}
    theirs = {v: k for k, v in columns.items()}

    def rows() -> Iterator[tuple[int, dict, bool]]:
        with sf.open_text(opts.get("encoding") or "auto") as f:
            for n, line in enumerate(sources.bounded_lines(f, sf.limits.max_line, sf.name), 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    out.errors.append((f"{sf.name}:{n}", f"invalid JSON: {e.msg} at column {e.colno}"))
                    continue
                if not isinstance(obj, dict):
                    out.errors.append((f"{sf.name}:{n}", "expected a JSON object per line"))
                    continue
                yield n, {theirs.get(k, k): v for k, v in obj.items()}, False

    _collect(out, rows(), sf.name, opts)
    return out


def _collect(out: MasterImport, rows: Iterable[tuple[int, dict, bool]], name: str,
             opts: Mapping[str, Any]) -> None:
    _Collector(out, name, opts).collect(rows)


class _Collector:
    """Rows to records, as read in file order: each row's errors with its location, a
    SKU seen before reported and dropped (the first kept). ``row`` and ``add`` are the
    two halves, for rows read in parts (``auditor.masterparts``)."""

    def __init__(self, out: MasterImport, name: str, opts: Mapping[str, Any],
                 errors: list | None = None):
        self.out = out
        self.name = name
        self.opts = opts
        self.errors = out.errors if errors is None else errors
        self.seen: dict[str, int] = {}
        self.rows = 0

    def collect(self, rows: Iterable[tuple[int, dict, bool]]) -> None:
        append, row, add = self.out.records.append, self.row, self.add
        for line, data, ragged in rows:
            rec = row(line, data, ragged)
            if rec is not None and add(line, rec.sku):
                append(rec)

    def row(self, line: int, row: dict, ragged: bool) -> MasterRecord | None:
        """The row's record, or None (its errors reported)."""
        self.out.rows += 1
        self.rows += 1
        loc = f"{self.name}:{line}"
        if ragged:
            self.errors.append((loc, "row has a different number of columns than the header"))
            return None
        problems: list[tuple[str, str]] = []
        rec = build_record(row, self.opts, problems)
        for col, reason in problems:
            self.errors.append((f"{loc} column {col}", reason))
        return rec

    def add(self, line: int, sku: str) -> bool:
        """Whether ``sku`` (a record read on ``line``) is new; reported when it is not."""
        seen = self.seen
        if sku in seen:
            self.errors.append((f"{self.name}:{line} column sku",
                                f"duplicate SKU {sku!r} (first on line {seen[sku]})"))
            return False
        seen[sku] = line
        return True


_READ_OPTIONS = ("type", "encoding", "delimiter", "columns", "default_currency", "skip_bad_rows",
                 "date_format", "timezone")


def load_master(opts: Mapping[str, Any], base_dir: Path, policy=None, headers=None,
                auth=None, unchanged_sha: str | None = None) -> MasterImport:
    """Read the configured master source; raise MasterImportError unless it is clean.

    With ``skip_bad_rows`` the good records are returned and ``errors`` lists the rest.
    The digest covers the file and the options that shape its reading; when it equals
    ``unchanged_sha`` the file is not parsed again (``unchanged`` is set).
    """
    source = opts["source"]
    try:
        with sources.resolve(source, base_dir, policy, headers, auth,
                             limits=sources.Limits.from_options(opts)) as files:
            sf = files[0]
            h = hashlib.sha256(json.dumps({k: opts.get(k) for k in _READ_OPTIONS},
                                          sort_keys=True, default=str).encode())
            with open(sf.path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            if unchanged_sha and h.hexdigest() == unchanged_sha:
                return MasterImport(sf.name, [], sha256=unchanged_sha, unchanged=True)
            try:
                result = read_jsonl(sf, opts) if opts.get("type") == "jsonl" else \
                    read_csv(sf, opts, parts=not sources.is_url(source))
            except (EOFError, OSError) as e:
                raise MasterImportError(sf.name, [(sf.name, f"cannot read: {e}")]) from None
            result.sha256 = h.hexdigest()
    except SourceError as e:
        raise MasterImportError(e.source, [(e.source, e.reason)]) from None
    if result.errors and not opts.get("skip_bad_rows"):
        raise MasterImportError(result.source, result.errors, result.rows)
    if not result.records:
        raise MasterImportError(result.source, result.errors or
                                [(result.source, "no master records in file")], result.rows)
    return result
