"""The master held in memory compactly: each record as its stored JSON body.

A run holds the whole master for as long as its channels are audited. As
``MasterRecord`` objects (a slotted dataclass with ``Money``/``Decimal`` prices,
attribute dicts, enum members and a string per field) that cost about 3 KB per
SKU; its stored body (``codec.body``: sorted keys, empty values left out) is a
few hundred bytes. ``CompactMaster`` keeps only the bodies and decodes a record
when it is read, with a small cache: checks read each master once per listing,
and a channel's listings of one SKU come close together, so a few entries suffice.

The body is exactly what the store writes (``codec.body``), so a master read from
a file is planned and written without being encoded again, and a master read
from the store is held as stored, without being decoded at all.
"""

from __future__ import annotations

import sys
import zlib
from datetime import datetime
from collections.abc import ItemsView, ValuesView
from typing import Iterable, Iterator, Mapping, Sequence, overload

import orjson

from auditor import codec
from auditor.model import Availability, MasterRecord, MasterStatus, Money

CACHE = 256  # decoded records kept (the most recently read)


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
        m = codec.unmoney(v)
        if len(_MONEY) >= _SHARED_MAX:
            _MONEY.clear()
        _MONEY[v] = m
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


def _decode(body: bytes | str) -> MasterRecord:
    """``codec.master_from_dict(orjson.loads(body))``, faster: the one decoder on a run's
    hot path (once per listing). Money and times are shared between records."""
    d = orjson.loads(body)
    get = d.get
    if (v := get("price")) is not None:
        d["price"] = _money(v)
    if (v := get("sale_price")) is not None:
        d["sale_price"] = _money(v)
    if (v := get("prices")) is not None:
        d["prices"] = {c: _money(x) for c, x in v.items()}
    if (v := get("sale_prices")) is not None:
        d["sale_prices"] = {c: _money(x) for c, x in v.items()}
    if (v := get("sale_start")) is not None:
        d["sale_start"] = _time(v)
    if (v := get("sale_end")) is not None:
        d["sale_end"] = _time(v)
    if (v := get("availability")) is not None:
        d["availability"] = _AVAILABILITY[v]
    if (v := get("status")) is not None:
        d["status"] = _STATUS[v]
    if (v := get("images")) is not None:
        d["images"] = tuple(v)
    return MasterRecord(**d)


class Packer:
    """Compresses bodies with a dictionary learnt from the first ``SAMPLE`` of them.

    A master's bodies share most of their text (field names, URL and image prefixes,
    brands, description phrases): raw deflate primed with a sample of them holds a
    body of 800 bytes in about 125, and inflates it in about 2 µs. The first bodies,
    read before the dictionary exists, are kept as they are (a leading ``r``); the
    rest compressed (a leading ``z``). Unpacking gives the exact bytes packed.
    """

    SAMPLE = 64
    __slots__ = ("zdict", "_sample", "_c", "_d")

    def __init__(self, zdict: bytes | None = None):
        self.zdict: bytes | None = None
        self._sample: list[bytes] = []
        if zdict is not None:
            self._prime(zdict)

    def _prime(self, zdict: bytes) -> None:
        self.zdict = zdict
        self._c = zlib.compressobj(6, zlib.DEFLATED, -15, 4, zlib.Z_DEFAULT_STRATEGY, zdict)
        self._d = zlib.decompressobj(-15, zdict)
        self._sample = []

    def pack(self, body: bytes) -> bytes:
        if self.zdict is None:
            self._sample.append(body)
            if len(self._sample) >= self.SAMPLE:
                self._prime(b"".join(self._sample)[-32768:])
            return b"r" + body
        c = self._c.copy()
        return b"z" + c.compress(body) + c.flush()

    def __reduce__(self):
        return (Packer, (self.zdict,))

    def unpack(self, packed: bytes) -> bytes:
        if packed[0] == 0x7A:  # "z"
            return self._d.copy().decompress(packed[1:])
        return packed[1:]


class CompactMaster(Mapping[str, MasterRecord]):
    """SKU -> ``MasterRecord``, held as stored bodies and decoded on access.

    A drop-in for the ``dict`` a run used to hold: ``master[sku]``, ``in``, ``len``,
    iteration, ``items()`` and ``==`` behave the same. ``body(sku)`` is the stored
    JSON (bytes), identical to ``codec.body(master[sku])``.
    """

    __slots__ = ("_bodies", "_cache", "_packer")

    def __init__(self, bodies: dict[str, bytes] | None = None, packer: Packer | None = None):
        """``bodies``: SKU -> body as packed by ``packer`` (both shared, not copied)."""
        self._bodies: dict[str, bytes] = bodies if bodies is not None else {}
        self._packer = packer if packer is not None else Packer()
        self._cache: dict[str, MasterRecord] = {}

    @classmethod
    def of(cls, records: Iterable[MasterRecord]) -> "CompactMaster":
        """From records (a later record of the same SKU replaces an earlier one)."""
        out = cls()
        for rec in records:
            out.add(rec)
        return out

    @classmethod
    def from_bodies(cls, rows: Iterable[tuple[str, bytes | str]]) -> "CompactMaster":
        """From (SKU, stored JSON) pairs, as a store reads them: nothing is decoded."""
        intern = sys.intern
        out = cls()
        pack = out._packer.pack
        out._bodies = {intern(sku): pack(data.encode() if isinstance(data, str) else bytes(data))
                       for sku, data in rows}
        return out

    def add(self, rec: MasterRecord) -> None:
        sku = sys.intern(rec.sku)
        self._bodies[sku] = self._packer.pack(codec.body(rec))
        self._cache.pop(sku, None)

    def body(self, sku: str) -> bytes:
        """The record's stored JSON (``codec.body``), without decoding it."""
        return self._packer.unpack(self._bodies[sku])

    def bodies(self) -> Iterator[tuple[str, bytes]]:
        """(SKU, stored JSON) of every record, in insertion order."""
        unpack = self._packer.unpack
        return ((sku, unpack(z)) for sku, z in self._bodies.items())

    def __getitem__(self, sku: str) -> MasterRecord:
        cache = self._cache
        rec = cache.get(sku)
        if rec is None:
            # KeyError when the SKU is not in the master
            rec = _decode(self._packer.unpack(self._bodies[sku]))
            if len(cache) >= CACHE:
                cache.clear()  # cheaper than LRU bookkeeping on every read
            cache[sku] = rec
        return rec

    def get(self, sku, default=None):  # type: ignore[override]
        return self[sku] if sku in self._bodies else default

    def __contains__(self, sku: object) -> bool:
        return sku in self._bodies

    def __iter__(self) -> Iterator[str]:
        return iter(self._bodies)

    def __len__(self) -> int:
        return len(self._bodies)

    def records(self) -> Iterator[tuple[str, MasterRecord]]:
        """Every (SKU, record), each decoded once and not cached (a whole-master pass)."""
        unpack = self._packer.unpack
        for sku, data in self._bodies.items():
            yield sku, _decode(unpack(data))

    def items(self) -> "_Items":  # type: ignore[override]
        return _Items(self)

    def values(self) -> "_Values":  # type: ignore[override]
        return _Values(self)

    def __repr__(self) -> str:
        return f"<CompactMaster of {len(self._bodies)} records>"

    def __reduce__(self):
        return (CompactMaster, (self._bodies, self._packer))


class _Items(ItemsView):
    """Whole-master passes (indexing, ``==``) decode each record once, bypassing the cache."""

    def __iter__(self):
        return self._mapping.records()


class _Values(ValuesView):
    def __iter__(self):
        return (rec for _sku, rec in self._mapping.records())


class CompactRecords(Sequence[MasterRecord]):
    """A list of master records held as stored bodies (a master file as read):
    ``append``, ``len``, indexing and iteration decode on access."""

    __slots__ = ("_skus", "_bodies", "_packer")

    def __init__(self, records: Iterable[MasterRecord] = ()):
        self._skus: list[str] = []
        self._bodies: list[bytes] = []  # packed
        self._packer = Packer()
        for rec in records:
            self.append(rec)

    def append(self, rec: MasterRecord) -> None:
        self._skus.append(sys.intern(rec.sku))
        self._bodies.append(self._packer.pack(codec.body(rec)))

    @overload
    def __getitem__(self, i: int) -> MasterRecord: ...
    @overload
    def __getitem__(self, i: slice) -> list[MasterRecord]: ...

    def __getitem__(self, i):
        unpack = self._packer.unpack
        if isinstance(i, slice):
            return [_decode(unpack(b)) for b in self._bodies[i]]
        return _decode(unpack(self._bodies[i]))

    def __len__(self) -> int:
        return len(self._bodies)

    def __iter__(self) -> Iterator[MasterRecord]:
        unpack = self._packer.unpack
        return (_decode(unpack(b)) for b in self._bodies)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (CompactRecords, list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    def master(self) -> CompactMaster:
        """By SKU, sharing the bodies (nothing is decoded or encoded again)."""
        return CompactMaster(dict(zip(self._skus, self._bodies)), self._packer)


def compact(master: Mapping[str, MasterRecord]) -> CompactMaster:
    """``master`` as a ``CompactMaster`` (itself when it already is one)."""
    if isinstance(master, CompactMaster):
        return master
    out = CompactMaster()
    pack, bodies = out._packer.pack, out._bodies
    for sku, rec in master.items():
        bodies[sys.intern(sku)] = pack(codec.body(rec))
    return out


def body_of(records: Mapping[str, MasterRecord], sku: str) -> bytes:
    """The stored JSON of ``records[sku]``, without decoding when it is held compactly."""
    if isinstance(records, CompactMaster):
        return records.body(sku)
    return codec.body(records[sku])
