"""Plain-JSON encoding of model objects, for the store and for `--format json`."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import operator
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Mapping

import orjson

from auditor.model import (Availability, Finding, Link, LinkMethod, Listing, MasterRecord,
                           MasterStatus, Money, Outcome, Severity)


def _money(v: Money | None) -> str | None:
    return None if v is None else f"{v.amount} {v.currency}"


def _unmoney(v: str | None) -> Money | None:
    if not v:
        return None
    amount, cur = v.rsplit(" ", 1)
    return Money(Decimal(amount), cur)


unmoney = _unmoney  # "12.50 EUR" -> Money (auditor.compact decodes with it)


def _undt(v: str | None) -> datetime | None:
    return None if not v else datetime.fromisoformat(v)


_MONEY_FIELDS = ("price", "sale_price")


_FIELD_NAMES: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in (MasterRecord, Listing)}


# What a listing shows, in field order: where and when it was read (``fetched_at``,
# ``evidence``) is kept beside the body, so an unchanged listing has an unchanged body.
_BODY_FIELDS = {
    Listing: tuple(n for n in _FIELD_NAMES[Listing] if n not in ("fetched_at", "evidence")),
    MasterRecord: _FIELD_NAMES[MasterRecord],
}
_BODY_VALUES = {cls: operator.attrgetter(*names) for cls, names in _BODY_FIELDS.items()}
# Fields holding tuples or mappings: left out when empty (the others only when None).
_BODY_CONTAINERS = {
    cls: tuple(f.name for f in dataclasses.fields(cls) if f.name in _BODY_FIELDS[cls] and
               str(f.type).startswith(("tuple", "Mapping", "dict")))
    for cls in _BODY_FIELDS}
_BODY_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _body_function(cls: type) -> Callable[[Any], bytes]:
    """``body`` for instances of exactly ``cls``, written out field by field (generated
    once): the same bytes as the general path, in about half the time, which matters
    because every listing of every run is hashed by its body."""
    lines = ["def body_of(obj):", "    d = {}"]
    for name in _BODY_FIELDS[cls]:
        lines.append(f"    v = obj.{name}")
        if name in _BODY_CONTAINERS[cls]:
            lines.append("    if v is not None and not (v == () or v == {}):")
        else:
            lines.append("    if v is not None:")
        if name in _MONEY_FIELDS:
            lines.append(f"        d[{name!r}] = f'{{v.amount}} {{v.currency}}'")
        elif name in ("prices", "sale_prices"):
            lines.append(f"        d[{name!r}] = {{k: _money(m) for k, m in v.items()}}")
        else:
            lines.append(f"        d[{name!r}] = v")
    lines.append("    return dumps(d, default=_default, option=_BODY_OPTIONS)")
    scope: dict[str, Any] = {"_money": _money, "dumps": orjson.dumps, "_default": _default,
                             "_BODY_OPTIONS": _BODY_OPTIONS}
    exec("\n".join(lines), scope)  # noqa: S102 (our own field names, nothing read in)
    return scope["body_of"]


def body(obj: MasterRecord | Listing) -> bytes:
    """The stored JSON of a master record or of what a listing shows: sorted keys,
    empty values left out, money as ``"12.50 EUR"``. Byte for byte what earlier
    versions stored (tests keep that encoder as the reference), so stored hashes
    stay valid.

    The hot path of storing a million listings: orjson writes str, int, enums,
    datetimes, tuples and dicts itself; only money is formatted here.
    """
    cls = type(obj)
    if cls is Listing:
        return _listing_body(obj)
    if cls not in _BODY_FIELDS:  # a subclass (auditor.compact.CompactRecord)
        cls = MasterRecord if isinstance(obj, MasterRecord) else Listing
    d = {n: v for n, v in zip(_BODY_FIELDS[cls], _BODY_VALUES[cls](obj), strict=True)
         if v is not None}
    for name in _BODY_CONTAINERS[cls]:
        v = d.get(name)
        if v is not None and (v == () or v == {}):  # exactly what earlier versions left out
            del d[name]
    for name in _MONEY_FIELDS:
        m = d.get(name)
        if m is not None:
            d[name] = f"{m.amount} {m.currency}"
    for name in ("prices", "sale_prices"):
        m = d.get(name)
        if m is not None:
            d[name] = {k: _money(v) for k, v in m.items()}
    return orjson.dumps(d, default=_default, option=_BODY_OPTIONS)


def body_hash(body: bytes) -> bytes:
    """The hash the stores keep of a body (``body``), as 10 raw bytes: stored as its hex
    (``auditor.storage.sqlite.digest``)."""
    return hashlib.blake2b(body, digest_size=10).digest()


def _prices(v: Mapping[str, str]) -> dict[str, Money | None]:
    return {c: _unmoney(m) for c, m in v.items()}


# How a stored JSON value becomes a model value, by field name (others are as stored).
_DECODE: dict[str, Callable[[Any], Any]] = {
    "price": _unmoney, "sale_price": _unmoney, "prices": _prices, "sale_prices": _prices,
    "sale_start": _undt, "sale_end": _undt, "fetched_at": _undt,
    "availability": Availability, "status": MasterStatus, "images": tuple,
    "alternatives": lambda v: {k: tuple(x) for k, x in v.items()},
}


def _from_dict(cls, d: dict[str, Any]):
    decode = _DECODE.get
    return cls(**{k: (f(v) if (f := decode(k)) is not None else v) for k, v in d.items()})


def master_from_dict(d: dict[str, Any]) -> MasterRecord:
    return _from_dict(MasterRecord, d)


def listing_from_dict(d: dict[str, Any]) -> Listing:
    return _from_dict(Listing, d)


def listing_from_row(data: str | bytes, fetched_at: str | None, evidence: str | None
                     ) -> Listing:
    """A stored listing: its body plus where and when it was read (rows written before
    schema 3 keep both inside the body)."""
    d = orjson.loads(data)
    if fetched_at:
        d["fetched_at"] = fetched_at
    if evidence:
        d["evidence"] = evidence
    return listing_from_dict(d)


def finding_to_dict(f: Finding) -> dict[str, Any]:
    return {
        "fingerprint": f.fingerprint, "check": f.check, "channel": f.channel, "sku": f.sku,
        "listing_key": f.listing_key, "field": f.field, "outcome": f.outcome.value,
        "severity": f.severity.value, "expected": f.expected, "actual": f.actual,
        "score": f.score, "message": f.message, "details": dict(f.details),
    }


def finding_from_dict(d: dict[str, Any]) -> Finding:
    return Finding(check=d["check"], channel=d["channel"], sku=d.get("sku"), field=d["field"],
                   outcome=Outcome(d["outcome"]), severity=Severity(d["severity"]),
                   expected=d.get("expected"), actual=d.get("actual"), score=d.get("score"),
                   message=d.get("message") or "", listing_key=d.get("listing_key"),
                   details=d.get("details") or {})


def link_to_dict(link: Link) -> dict[str, Any]:
    return {"channel": link.channel, "listing_key": link.listing_key, "sku": link.sku,
            "method": link.method.value, "confidence": link.confidence,
            "candidates": list(link.candidates), "reason": link.reason,
            "evidence": dict(link.evidence)}


def link_from_dict(d: dict[str, Any]) -> Link:
    return Link(d["channel"], d["listing_key"], d.get("sku"), LinkMethod(d["method"]),
                float(d["confidence"]), tuple(d.get("candidates") or ()), d.get("reason"),
                d.get("evidence") or {})


def _default(o: Any) -> Any:
    if isinstance(o, Decimal):
        return str(o)
    if isinstance(o, datetime):
        return o.isoformat()
    if isinstance(o, enum.Enum):
        return o.value
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, Money):
        return _money(o)
    if hasattr(o, "items"):
        return dict(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# ``body`` of a listing, the hot path (see ``_body_function``).
_listing_body = _body_function(Listing)


_ORJSON_OPTIONS = (orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS
                   | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS)


def dumps(obj: Any) -> str:
    """Compact, stable JSON (sorted keys) that knows Decimal, datetime, enums and Money."""
    return orjson.dumps(obj, default=_default, option=_ORJSON_OPTIONS).decode()
