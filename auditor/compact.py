"""The master held in memory compactly (issue 20): one small object per SKU.

A run holds the whole master for as long as its channels are audited, and its checks
read one master record per listing. As decoded ``MasterRecord`` objects (``Money``
and ``Decimal`` prices, datetimes, a dict per mapping, a string per field) that cost
about 3 KB per SKU; as stored bodies decoded on access it cost 10-14 µs per listing,
more than the checks themselves.

``CompactRecord`` is the middle way: a ``MasterRecord`` (a subclass, read the same
way) whose fields the checks read are plain objects shared between records (interned
strings, one ``Money`` per distinct price, one mapping per distinct set of attributes
or prices, read-only by convention), and whose other fields (``COLD``: description, MPN, URL,
images, group) are one body, raw-deflated with a dictionary learnt from the first
bodies (``Packer``), decoded when read. A lookup is a dict lookup; nothing is decoded
per listing. ``codec.body`` of a compact record is byte for byte its stored body.
"""

from __future__ import annotations

import operator
import sys
import zlib
from collections.abc import ItemsView, ValuesView
from dataclasses import fields as dc_fields
from datetime import datetime
from typing import Any, Iterable, Iterator, Mapping, Sequence, overload

import orjson

from auditor import codec
from auditor.model import Availability, MasterRecord, MasterStatus, Money

_MONEY: dict[str, Money] = {}        # "12.50 EUR" -> Money (immutable: shared by records)
_TIMES: dict[str, datetime] = {}      # ISO 8601 -> datetime (sale windows repeat)
_AVAILABILITY = {m.value: m for m in Availability}
_STATUS = {m.value: m for m in MasterStatus}
_SHARED_MAX = 1 << 16


def _money(v: str) -> Money | None:
    if not v:
        return None
    m = _MONEY.get(v)
    if m is None:
        new = codec.unmoney(v)
        if new is None:
            return None
        if len(_MONEY) >= _SHARED_MAX:
            _MONEY.clear()
        m = _MONEY[v] = new
    return m


def _time(v: str) -> datetime | None:
    if not v:
        return None
    t = _TIMES.get(v)
    if t is None:
        if len(_TIMES) >= _SHARED_MAX:
            _TIMES.clear()
        t = _TIMES[v] = datetime.fromisoformat(v)
    return t


class Packer:
    """Compresses bodies with a dictionary learnt from a sample of the first ones.

    A master's bodies share most of their text (field names, URL and image prefixes,
    brands, description phrases): raw deflate primed with a sample of them holds a
    body of 800 bytes in about 125, and inflates it in about 2 µs. The dictionary is
    learnt from ``SAMPLE`` bodies spread over the first ``LEARN`` (every 16th: a catalog
    lists a product's variants together, and a sample of many products compresses the
    rest about a fifth smaller than the first 64 bodies do). Bodies packed before it
    exists are kept as they are (a leading ``r``; ``repack`` compresses them once it
    does), the rest compressed (a leading ``z``). Unpacking gives the exact bytes packed.
    """

    SAMPLE = 64
    LEARN = 1024
    __slots__ = ("zdict", "_sample", "_seen", "_c", "_d")

    def __init__(self, zdict: bytes | None = None):
        self.zdict: bytes | None = None
        self._sample: list[bytes] = []
        self._seen = 0
        if zdict is not None:
            self._prime(zdict)

    def _prime(self, zdict: bytes) -> None:
        self.zdict = zdict
        self._c = zlib.compressobj(6, zlib.DEFLATED, -15, 4, zlib.Z_DEFAULT_STRATEGY, zdict)
        self._d = zlib.decompressobj(-15, zdict)
        self._sample = []

    def pack(self, body: bytes) -> bytes:
        if self.zdict is None:
            self._seen += 1
            if self._seen % (self.LEARN // self.SAMPLE) == 0:
                self._sample.append(body)
                if len(self._sample) >= self.SAMPLE:
                    self._prime(b"".join(self._sample)[-32768:])
            return b"r" + body
        c = self._c.copy()
        return b"z" + c.compress(body) + c.flush()

    def repack(self, packed: bytes) -> bytes:
        """``packed`` compressed, if it was kept as it was and the dictionary now exists."""
        if self.zdict is None or packed[0] != 0x72:  # "r"
            return packed
        return self.pack(packed[1:])

    def __reduce__(self):
        return (Packer, (self.zdict,))

    def unpack(self, packed: bytes) -> bytes:
        if packed[0] == 0x7A:  # "z"
            return self._d.copy().decompress(packed[1:])
        return packed[1:]


# --------------------------------------------------------------------------- records

# Fields no check reads on a listing's way through (the linker reads mpn and url once,
# when it indexes; the image check reads images): held packed, decoded when read.
COLD = ("description", "mpn", "url", "images", "group_id")
_FIELDS = tuple(f.name for f in dc_fields(MasterRecord))
HOT = tuple(n for n in _FIELDS if n not in COLD)
_SLOT = {n: vars(MasterRecord)[n] for n in _FIELDS}  # the slots' descriptors (bypass frozen)
_new = object.__new__
_LAST: tuple[Any, dict[str, Any]] = (None, {})  # the record whose cold fields were read last


class CompactRecord(MasterRecord):
    """A ``MasterRecord`` held compactly: the fields checks read are plain objects shared
    between records (interned strings, one ``Money`` per price, one mapping per distinct
    attribute set, read-only); the rest (``COLD``) are one packed body decoded when read.

    Reading it costs what reading a ``MasterRecord`` costs: a master lookup is a dict
    lookup, nothing is decoded per listing. ``==``, ``hash``, pickling, ``codec.body`` and
    ``dataclasses.replace`` (which gives a plain ``MasterRecord``) behave as for the record
    it holds; ``full()`` is that record.
    """

    # No slots of its own (issue 20): the packed body and its packer are held in two of
    # the cold fields' own slots (``_COLD_AT``, ``_PACKER_AT``), read through the
    # properties below, so a compact record is no larger than a ``MasterRecord``.
    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # Only ever built by ``_build``; a call (dataclasses.replace) makes a plain record.
        return MasterRecord(*args, **kwargs)

    def full(self) -> MasterRecord:
        return MasterRecord(*_values(self))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MasterRecord):
            return _values(self) == _values(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(_values(self))

    def __reduce__(self) -> Any:
        return (MasterRecord, _values(self))

    def __repr__(self) -> str:
        return repr(self.full())


_values = operator.attrgetter(*_FIELDS)
_COLD_AT, _PACKER_AT = "description", "url"  # the parent's slots holding them
_get_cold = _SLOT[_COLD_AT].__get__
_set_cold = _SLOT[_COLD_AT].__set__
_get_packer = _SLOT[_PACKER_AT].__get__
_set_packer = _SLOT[_PACKER_AT].__set__
CompactRecord._cold = property(  # type: ignore[attr-defined]
    _get_cold, doc="The COLD fields' JSON, packed (None when all are empty)")


def _cold(rec: CompactRecord) -> dict[str, Any]:
    global _LAST
    last = _LAST
    if last[0] is rec:
        return last[1]
    packed = _get_cold(rec)
    d = orjson.loads(_get_packer(rec).unpack(packed)) if packed is not None else {}
    if "images" in d:
        d["images"] = tuple(d["images"])
    _LAST = (rec, d)
    return d


def _cold_property(name: str, default: Any) -> property:
    def get(self: CompactRecord) -> Any:
        return _cold(self).get(name, default)
    return property(get, doc=f"``{name}``, decoded from the packed part when read")


for _name in COLD:
    setattr(CompactRecord, _name, _cold_property(_name, () if _name == "images" else None))

# Shared between records, like every mapping here: read them, never change them (a record
# is frozen; plain dicts, not proxies, so that they pickle and encode as before).
_EMPTY: Mapping[str, Any] = {}


class _Share:
    """Interning tables of one load: equal values become one object (dropped after)."""

    __slots__ = ("strs", "maps", "ints", "holder", "channels", "fields")

    def __init__(self) -> None:
        self.strs: dict[str, str] = {}
        self.maps: dict[tuple, Mapping[str, Any]] = {}
        self.ints: dict[int, int] = {}
        # Attribute mappings are made as the ``__dict__`` of an instance of a class of
        # their own: CPython's key-sharing dicts (PEP 412) then hold the attribute names
        # once for all of them (about 140 bytes for 7 attributes instead of 240). Each
        # is a plain ``dict`` (equal, pickled and encoded as one); past 30 distinct names
        # CPython gives plain dicts again. (A class per load: one load's names.)
        self.holder: type = type("_Attributes", (), {"__slots__": ("__dict__",)})
        self.channels: type = type("_Overrides", (), {"__slots__": ("__dict__",)})
        self.fields: type = type("_Override", (), {"__slots__": ("__dict__",)})

    def text(self, v: str | None) -> str | None:
        if v is None:
            return None
        return self.strs.setdefault(v, v)

    def attrs(self, v: Mapping[str, str] | None) -> Mapping[str, str]:
        if not v:
            return _EMPTY
        key = tuple(v.items())
        m = self.maps.get(key)
        if m is None:
            intern = sys.intern
            o = self.holder()
            d = o.__dict__
            for k, x in key:
                d[intern(k)] = intern(x)
            m = self.maps[key] = d
        return m

    def overrides(self, v: Mapping[str, Mapping[str, str]]) -> Mapping[str, Mapping[str, str]]:
        intern = sys.intern
        out = self.channels().__dict__
        for ch, fields in v.items():
            per = out[intern(ch)] = self.fields().__dict__
            for k, x in fields.items():
                per[intern(k)] = x
        return out

    def prices(self, v: Mapping[str, str] | None) -> Mapping[str, Money]:
        if not v:
            return _EMPTY
        key = ("$",) + tuple(v.items())
        m = self.maps.get(key)
        if m is None:
            m = self.maps[key] = {sys.intern(c): _money(x) for c, x in v.items()}
        return m

    def integer(self, v: int | None) -> int | None:
        if v is None or -5 <= v <= 256:
            return v
        return self.ints.setdefault(v, v)


def _build(d: dict[str, Any], packer: "Packer", share: _Share) -> CompactRecord:
    """A compact record from a stored body decoded by orjson (``d`` is consumed)."""
    cold = {k: d.pop(k) for k in COLD if k in d}
    return _build_hot(d, packer.pack(orjson.dumps(cold)) if cold else None, packer, share)


def split(rec: MasterRecord, packer: Packer) -> tuple[bytes, bytes | None, bytes]:
    """What ``CompactRecords.append(rec)`` keeps of ``rec``, as bytes: its hot fields'
    JSON, its cold fields packed by ``packer`` and its body's stored hash. A process
    reading part of a master file sends these; ``CompactRecords.append_split`` takes
    them (the same record, packed alike when ``packer`` has the same dictionary)."""
    body = codec.body(rec)
    d = orjson.loads(body)
    cold = {k: d.pop(k) for k in COLD if k in d}
    return (orjson.dumps(d), packer.pack(orjson.dumps(cold)) if cold else None,
            codec.body_hash(body))


def _build_hot(d: dict[str, Any], packed: bytes | None, packer: "Packer", share: _Share
               ) -> CompactRecord:
    """A compact record from its hot fields (``d``) and its packed cold ones."""
    r = _new(CompactRecord)
    _set_cold(r, packed)
    _set_packer(r, packer)
    get = d.get
    _PUT_SKU(r, sys.intern(d["sku"]))
    _PUT_TITLE(r, share.text(get("title")))
    _PUT_BRAND(r, share.text(get("brand")))
    _PUT_GTIN(r, get("gtin"))
    v = get("price")
    _PUT_PRICE(r, _money(v) if v else None)
    v = get("sale_price")
    _PUT_SALE_PRICE(r, _money(v) if v else None)
    v = get("sale_start")
    _PUT_SALE_START(r, _time(v) if v else None)
    v = get("sale_end")
    _PUT_SALE_END(r, _time(v) if v else None)
    _PUT_PRICES(r, share.prices(get("prices")))
    _PUT_SALE_PRICES(r, share.prices(get("sale_prices")))
    _PUT_QUANTITY(r, share.integer(get("quantity")))
    v = get("availability")
    _PUT_AVAILABILITY(r, _AVAILABILITY[v] if v else None)
    v = get("status")
    _PUT_STATUS(r, _STATUS[v] if v else MasterStatus.ACTIVE)
    _PUT_ATTRIBUTES(r, share.attrs(get("attributes")))
    v = get("overrides")  # per SKU: channel -> field -> value, as key-sharing dicts
    _PUT_OVERRIDES(r, share.overrides(v) if v else _EMPTY)
    return r


# The hot fields' slot setters, bound once (``_build_hot`` runs once per record).
(_PUT_SKU, _PUT_TITLE, _PUT_BRAND, _PUT_GTIN, _PUT_PRICE, _PUT_SALE_PRICE, _PUT_SALE_START,
 _PUT_SALE_END, _PUT_PRICES, _PUT_SALE_PRICES, _PUT_QUANTITY, _PUT_AVAILABILITY, _PUT_STATUS,
 _PUT_ATTRIBUTES, _PUT_OVERRIDES) = (_SLOT[n].__set__ for n in (
    "sku", "title", "brand", "gtin", "price", "sale_price", "sale_start", "sale_end", "prices",
    "sale_prices", "quantity", "availability", "status", "attributes", "overrides"))


def _early(early: list[CompactRecord], rec: CompactRecord, packer: Packer
           ) -> list[CompactRecord] | None:
    """Keep ``rec`` while the packer has no dictionary; once it has, compress the kept
    records' bodies with it and stop keeping (None)."""
    early.append(rec)
    if packer.zdict is None:
        return early
    for r in early:
        packed = _get_cold(r)
        if packed is not None:
            _set_cold(r, packer.repack(packed))
    return None


def _known() -> None:
    """Fail at import, not in a run, when MasterRecord gains a field ``_build`` misses."""
    missing = set(HOT) - {"sku", "title", "brand", "gtin", "price", "sale_price", "sale_start",
                          "sale_end", "prices", "sale_prices", "quantity", "availability",
                          "status", "attributes", "overrides"}
    if missing:
        raise RuntimeError(f"auditor.compact does not hold MasterRecord fields {missing}")


_known()


HASH_SIZE = 10  # bytes of codec.body_hash


class CompactMaster(Mapping[str, MasterRecord]):
    """SKU -> ``MasterRecord``, each held as a ``CompactRecord``.

    A drop-in for the ``dict`` a run used to hold: ``master[sku]`` (a dict lookup),
    ``in``, ``len``, iteration, ``items()`` and ``==`` behave the same. ``body(sku)`` is
    the stored JSON (bytes), identical to ``codec.body`` of the record.
    """

    __slots__ = ("_recs", "_packer", "get", "_hashes")

    def __init__(self, recs: dict[str, CompactRecord] | None = None,
                 packer: Packer | None = None, hashes: bytes | None = None):
        """``recs``: SKU -> compact record (shared, not copied); ``hashes``: the stored
        hash of each record's body (``codec.body_hash``, 10 bytes each, in ``recs``'
        order), when known."""
        self._recs: dict[str, CompactRecord] = recs if recs is not None else {}
        self._packer = packer if packer is not None else Packer()
        self.get = self._recs.get  # type: ignore[method-assign,assignment]  # per listing
        self._hashes = hashes if hashes is not None and \
            len(hashes) == HASH_SIZE * len(self._recs) else None

    def hashes(self) -> Iterator[tuple[str, str]] | None:
        """(SKU, the hash a store keeps of its body, hex) of every record in order, as
        computed when the master file was read (``CompactRecords``); None when not known.
        A master import compares them with the stored ones without encoding a body
        (``SQLiteStore.plan_master``)."""
        h = self._hashes
        if h is None:
            return None
        size = HASH_SIZE
        return ((sku, h[i:i + size].hex()) for i, sku in zip(range(0, len(h), size),
                                                                self._recs, strict=True))

    @classmethod
    def of(cls, records: Iterable[MasterRecord]) -> "CompactMaster":
        """From records (a later record of the same SKU replaces an earlier one)."""
        return cls.from_bodies((rec.sku, codec.body(rec)) for rec in records)

    @classmethod
    def from_bodies(cls, rows: Iterable[tuple[str, bytes | str]]) -> "CompactMaster":
        """From (SKU, stored JSON) pairs, as a store reads them."""
        out = cls()
        share, packer, recs = _Share(), out._packer, out._recs
        loads = orjson.loads
        early: list[CompactRecord] | None = [] if packer.zdict is None else None
        for _sku, data in rows:
            rec = _build(loads(data), packer, share)
            recs[rec.sku] = rec
            if early is not None:
                early = _early(early, rec, packer)
        return out

    def add(self, rec: MasterRecord) -> None:
        """Add or replace one record."""
        self._hashes = None
        c = _build(orjson.loads(codec.body(rec)), self._packer, _Share())
        self._recs[c.sku] = c

    def body(self, sku: str) -> bytes:
        """The record's stored JSON (``codec.body``)."""
        return codec.body(self._recs[sku])

    def bodies(self) -> Iterator[tuple[str, bytes]]:
        """(SKU, stored JSON) of every record, in insertion order."""
        body = codec.body
        return ((sku, body(rec)) for sku, rec in self._recs.items())

    def __getitem__(self, sku: str) -> MasterRecord:
        return self._recs[sku]

    def __contains__(self, sku: object) -> bool:
        return sku in self._recs

    def __iter__(self) -> Iterator[str]:
        return iter(self._recs)

    def __len__(self) -> int:
        return len(self._recs)

    def records(self) -> Iterator[tuple[str, MasterRecord]]:
        """Every (SKU, record)."""
        return iter(self._recs.items())

    def items(self) -> ItemsView[str, MasterRecord]:  # type: ignore[override]
        return self._recs.items()  # type: ignore[return-value]

    def values(self) -> ValuesView[MasterRecord]:  # type: ignore[override]
        return self._recs.values()  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"<CompactMaster of {len(self._recs)} records>"

    def __reduce__(self) -> Any:
        return (CompactMaster.from_bodies, (list(self.bodies()),))


class CompactRecords(Sequence[MasterRecord]):
    """A list of master records held compactly (a master file as read)."""

    __slots__ = ("_recs", "_packer", "_share", "_early", "_hashes")

    def __init__(self, records: Iterable[MasterRecord] = ()):
        self._recs: list[CompactRecord] = []
        self._packer = Packer()
        self._share = _Share()
        self._early: list[CompactRecord] | None = []
        # The stored hash of each record's body, made while the body is at hand (10
        # bytes a record): importing the file then encodes no unchanged record again.
        self._hashes = bytearray()
        for rec in records:
            self.append(rec)

    def append(self, rec: MasterRecord) -> None:
        body = codec.body(rec)
        self._hashes += codec.body_hash(body)
        c = _build(orjson.loads(body), self._packer, self._share)
        self._recs.append(c)
        if self._early is not None:
            self._early = _early(self._early, c, self._packer)

    def append_split(self, hot: bytes, packed: bytes | None, body_hash: bytes) -> None:
        """Append a record given as ``split`` gives it (packed with this list's packer's
        dictionary, or another with the same one)."""
        self._hashes += body_hash
        c = _build_hot(orjson.loads(hot), packed, self._packer, self._share)
        self._recs.append(c)
        if self._early is not None:
            self._early = _early(self._early, c, self._packer)

    @property
    def packer(self) -> Packer:
        """The packer of the records' cold fields (its dictionary is learnt from the first
        records appended)."""
        return self._packer

    @overload
    def __getitem__(self, i: int) -> MasterRecord: ...
    @overload
    def __getitem__(self, i: slice) -> list[MasterRecord]: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return list(self._recs[i])
        return self._recs[i]

    def __len__(self) -> int:
        return len(self._recs)

    def __iter__(self) -> Iterator[MasterRecord]:
        return iter(self._recs)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (CompactRecords, list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    def master(self) -> CompactMaster:
        """By SKU, sharing the records (nothing is decoded or encoded again); the
        interning tables of the read are dropped."""
        self._share = _Share()
        recs = {rec.sku: rec for rec in self._recs}
        # (a SKU read twice: the hashes no longer follow the records, and are not kept)
        return CompactMaster(recs, self._packer,
                             bytes(self._hashes) if len(recs) == len(self._recs) else None)


def compact(master: Mapping[str, MasterRecord]) -> CompactMaster:
    """``master`` as a ``CompactMaster`` (itself when it already is one)."""
    if isinstance(master, CompactMaster):
        return master
    return CompactMaster.from_bodies((sku, codec.body(rec)) for sku, rec in master.items())


def body_of(records: Mapping[str, MasterRecord], sku: str) -> bytes:
    """The stored JSON of ``records[sku]``, without decoding when it is held compactly."""
    if isinstance(records, CompactMaster):
        return records.body(sku)
    return codec.body(records[sku])
