"""The master a distributed run audits against, packed once for all its workers.

Every job of a distributed run (``auditor.distributed``) needs the run's master, its
history and the linker's indexes. A worker used to load the master snapshot from the
store and build the indexes itself: at 250,000 SKUs about 30 CPU seconds per worker
(decoding and compacting every stored body, then the key indexes and the
title-matching index), paid again by every worker, before its first listing.

Now the run's master job pickles master, history and linker, and the first job that
needs the linker's other indexes builds them once (``Linker.prepare``, as a
single-process run does before it forks its channel workers), into the parts of one
pack (``dumps``), which the jobs' bookkeeping keeps for the run
(``RunJobs.save_pack``); a worker unpickles it (``loads``) in a few seconds. The pack
is the coordinator's own objects, so every worker links against the master in the
coordinator's order, as a single-process run does.

Compact records (``auditor.compact``) are pickled field by field with their packed
cold part and their shared packer (pickle's default for them would re-encode and
re-compress every record); everything else with pickle's own rules. Shared objects
(interned titles, one ``Money`` per price, one mapping per attribute set, the
packer) stay shared through pickle's memo. The pack is as trusted as the store
(whoever can write the job tables can write the findings too).
"""

from __future__ import annotations

import copyreg
import gc
import io
import pickle
from collections.abc import Iterable, Mapping
from typing import Any

from auditor import compact

_HOT_GET = tuple(compact._SLOT[n].__get__ for n in compact.HOT)
_HOT_SET = tuple(compact._SLOT[n].__set__ for n in compact.HOT)


def _record(values: tuple, cold: bytes | None, packer: compact.Packer
            ) -> compact.CompactRecord:
    """A compact record again, from its hot fields, packed cold part and packer."""
    r = compact._new(compact.CompactRecord)
    for put, v in zip(_HOT_SET, values, strict=True):
        put(r, v)
    compact._set_cold(r, cold)
    compact._set_packer(r, packer)
    return r


def _reduce_record(r: compact.CompactRecord) -> tuple:
    return (_record, (tuple(get(r) for get in _HOT_GET), compact._get_cold(r),
                      compact._get_packer(r)))


def _reduce_master(m: compact.CompactMaster) -> tuple:
    return (compact.CompactMaster, (m._recs, m._packer))


_DISPATCH: dict[type, Any] = {**copyreg.dispatch_table,
                              compact.CompactRecord: _reduce_record,
                              compact.CompactMaster: _reduce_master}


class _Pickler(pickle.Pickler):
    """Pickles objects of the pack's first part (``shared``) by reference: a later part
    refers to the master its worker already holds instead of carrying a copy."""

    def __init__(self, file: io.BytesIO, shared: Mapping[int, str]):
        super().__init__(file, pickle.HIGHEST_PROTOCOL)
        self.dispatch_table = _DISPATCH
        self._shared = shared

    def persistent_id(self, obj: Any) -> str | None:
        return self._shared.get(id(obj))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, shared: Mapping[str, Any]):
        super().__init__(file)
        self._shared = shared

    def persistent_load(self, pid: Any) -> Any:
        return self._shared[pid]


def _shared(master: Mapping[str, Any] | None) -> dict[str, Any]:
    """The master's objects a later part refers to: the master and its dict."""
    if master is None:
        return {}
    out = {"master": master}
    recs = getattr(master, "_recs", None)
    if recs is not None:
        out["records"] = recs
    return out


def dumps(obj: Any, master: Mapping[str, Any] | None = None) -> bytes:
    """One part of a pack: ``obj`` pickled; with ``master``, that master (the first
    part's) is referred to, not copied (``loads`` needs the same master then)."""
    buf = io.BytesIO()
    if master is None:
        p = pickle.Pickler(buf, pickle.HIGHEST_PROTOCOL)
        p.dispatch_table = _DISPATCH
    else:
        p = _Pickler(buf, {id(v): k for k, v in _shared(master).items()})
    was = gc.isenabled()
    gc.disable()
    try:
        p.dump(obj)
    finally:
        if was:
            gc.enable()
    return buf.getvalue()


def loads(data: bytes | memoryview, master: Mapping[str, Any] | None = None) -> Any:
    """The object of ``dumps`` (``master``: the one it was packed against). The
    collector is paused meanwhile: millions of objects that all stay alive would only
    make it scan them over and over (with it running, a 250,000-SKU pack loads six times
    slower)."""
    was = gc.isenabled()
    gc.disable()
    try:
        if master is None:
            return pickle.loads(data)
        return _Unpickler(io.BytesIO(data), _shared(master)).load()
    finally:
        if was:
            gc.enable()


def indexes(linker: Any, without: Iterable[str] = ()) -> dict[str, Any]:
    """The linker's built indexes (key kinds but ``without``, and the title-matching
    index) as a later part of the pack holds them (``install``)."""
    skip = set(without)
    return {"keys": {k: v for k, v in linker.index.items() if k not in skip},
            "title": linker._match_index}


def install(linker: Any, part: Mapping[str, Any]) -> None:
    """A worker's linker gets the indexes of a pack's later part (``indexes``): those it
    has not built itself."""
    for kind, index in part["keys"].items():
        if kind not in linker.index:
            dict.__setitem__(linker.index, kind, index)
    if linker._match_index is None and part["title"] is not None:
        linker._match_index = part["title"]


__all__ = ["dumps", "indexes", "install", "loads"]
