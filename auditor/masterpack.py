"""The master a distributed run audits against, packed once for all its workers.

Every job of a distributed run (``auditor.distributed``) needs the run's master, its
history and the linker's indexes. A worker used to load the master snapshot from the
store and build the indexes itself: at 250,000 SKUs about 30 CPU seconds per worker
(decoding and compacting every stored body, then the key indexes and the
title-matching index), paid again by every worker, before its first listing.

Now the coordinator builds the indexes once (``Linker.prepare``, as a single-process
run does before it forks its channel workers) and pickles master, history and linker
into one pack (``dumps``), which the jobs' bookkeeping keeps for the run
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
from collections.abc import Mapping
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


def dumps(master: Mapping[str, Any], history: Any, linker: Any) -> bytes:
    """One pack of the run's master, history and (prepared) linker."""
    buf = io.BytesIO()
    p = pickle.Pickler(buf, pickle.HIGHEST_PROTOCOL)
    p.dispatch_table = _DISPATCH
    was = gc.isenabled()
    gc.disable()
    try:
        p.dump((master, history, linker))
    finally:
        if was:
            gc.enable()
    return buf.getvalue()


def loads(data: bytes | memoryview) -> tuple[Mapping[str, Any], Any, Any]:
    """(master, history, linker) from ``dumps``. The collector is paused meanwhile:
    millions of objects that all stay alive would only make it scan them over and over
    (with it running, a 250,000-SKU pack loads six times slower)."""
    was = gc.isenabled()
    gc.disable()
    try:
        master, history, linker = pickle.loads(data)
    finally:
        if was:
            gc.enable()
    return master, history, linker


__all__ = ["dumps", "loads"]
