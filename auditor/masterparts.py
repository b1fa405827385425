"""Reading a master CSV export on several cores (issue 20).

A large local CSV master is read in parts by forked processes, with the result of
reading it whole (``master.read_csv``): the same records in the same order, the same
stored hashes and packed bodies, the same errors with the same file:line locations.

1. This process reads the header and the first records until the compact records'
   packer has learnt its dictionary (``compact.Packer``; about a thousand records).
2. The rest of the file is cut into ``parts`` byte ranges of about equal size, each
   beginning just after a line feed. A forked process reads each range but the first
   (``csvio.RowsAt``: rows from a byte offset, read as ``open_rows`` reads them),
   building each record and keeping it as ``compact.split`` gives it (hot fields' JSON,
   cold fields packed with that dictionary, body hash), with its errors, in batches of
   bytes; this process reads the first range meanwhile, as it always reads.
3. In file order, this process takes each range's records and errors, checks each SKU
   against those read before (a SKU read twice is reported where it is read again, as
   when read whole) and builds its compact record (``CompactRecords.append_split``).

A line feed inside a quoted field may fall where a range begins: its process then
starts mid-record. So every range is read on until the first record that starts at or
after the next range's beginning, and the next range's process remembers where its
first records started (``CHECKPOINTS``): its rows are taken from the record where the
previous range stopped; when it never started a record there, this process reads that
range itself. A process that fails has its range read here too. A file that cannot
be read in parts as it would be read whole (a line over ``max_line_length``) is read
whole (``csvio.Unsplittable``).

Read whole: files under ``MIN_BYTES``, compressed files, URLs, encodings whose line
breaks are not the bytes CR / LF, JSON Lines, or where ``fork`` is not available.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import multiprocessing as mp
import os
import pickle
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from auditor import compact, csvio, sources
from auditor.forking import _leave_fork, die_with_parent

if TYPE_CHECKING:  # auditor.master calls this module and hands it these
    from auditor.master import MasterImport, _Collector

log = logging.getLogger("auditor.master")

MIN_BYTES = 8 << 20     # smaller files are read in one process
PARTS: int | None = None  # processes reading a file; None: the cores this process may use
MAX_PARTS = 8           # at most (this process builds every record: more gain little)
CHECKPOINTS = 256       # record starts a range's process remembers
BATCH = 4096            # records and errors per batch sent


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def read_csv(sf: sources.SourceFile, opts: Mapping[str, Any], out: "MasterImport",
             collector: "type[_Collector]", names: Callable[..., list[str]]
             ) -> "MasterImport | None":
    """``master.read_csv(sf, opts)`` read in parts into ``out`` (empty, its records a
    ``CompactRecords``), or None where it is read whole. ``collector`` and ``names`` are
    ``master._Collector`` and ``master._names`` (handed over: master imports this)."""
    parts = PARTS or min(cores(), MAX_PARTS)
    if parts < 2 or "fork" not in mp.get_all_start_methods():
        return None
    lay = csvio.layout(sf, opts.get("encoding") or "auto", opts.get("delimiter") or "auto",
                       strict=True)
    if lay is None or lay.size < MIN_BYTES:
        return None
    reader = _Reader(sf, lay, opts, parts, out, collector, names)
    try:
        return reader.read()
    except (csvio.Unsplittable, _Lost) as e:
        log.info("master read in one process: %s", e)
        return None
    finally:
        reader.stop_parts()


class _Lost(Exception):
    """A range's process died while its records were being taken: read the file again."""


@dataclass
class _Done:
    """What a range's process read: where it stopped, and where its records started."""

    pos: int                                  # the next record's start (or the file's end)
    n: int                                    # the number of the line before it
    rows: int
    checkpoints: list[tuple[int, int, int, int]]  # (pos, n, events before it, rows before it)
    batches: int


class _Part:
    """A forked process reading one range of the file."""

    def __init__(self, reader: "_Reader", start: int, end: int | None):
        self.start, self.end = start, end
        ctx = mp.get_context("fork")
        self.recv, send = ctx.Pipe(duplex=False)
        parent = os.getpid()

        def child() -> None:
            die_with_parent(parent)
            gc.freeze()  # what the parent holds is not ours to scan
            try:
                done, batches = reader.read_range(start, end)
            except BaseException as e:  # reported; the parent reads the range itself
                send.send((False, f"{e.__class__.__name__}: {e}"))
            else:
                send.send((True, done))
                for b in batches:
                    send.send_bytes(b)
            send.close()
            _leave_fork()

        self.proc = ctx.Process(target=child, daemon=True)
        self.proc.start()
        send.close()

    def ends_before(self, pos: int, n: int) -> bool:
        """Whether a record starting at ``pos`` is past the range."""
        return self.end is not None and pos >= self.end

    def result(self) -> _Done | None:
        """What the process read (its batches follow on ``recv``), or None if it failed."""
        try:
            ok, value = self.recv.recv()
        except (EOFError, OSError):
            ok, value = False, f"exited with code {self.proc.exitcode}"
        if not ok:
            log.warning("reading part of the master in another process failed (%s); "
                        "reading it here", value)
            return None
        return value

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
        self.proc.join()
        if not self.recv.closed:
            self.recv.close()


class _Reader:
    def __init__(self, sf: sources.SourceFile, lay: csvio.Layout, opts: Mapping[str, Any],
                 parts: int, out: "MasterImport", collector: "type[_Collector]",
                 names: Callable[..., list[str]]):
        self.sf, self.lay, self.opts, self.parts = sf, lay, opts, parts
        assert isinstance(out.records, compact.CompactRecords)
        self.records: compact.CompactRecords = out.records
        self.out = out
        self.collector, self.names_of = collector, names
        self.names: list[str] = []
        self.ranges: list[_Part] = []

    def _rows(self, ra: csvio.RowsAt) -> Any:
        names = self.names
        width = len(names)
        return ((line, dict(zip(names, cells, strict=False)), len(cells) != width)
                for line, cells in ra.rows)

    def read(self) -> "MasterImport":
        lay, out = self.lay, self.out
        col = self.collector(out, lay.name, self.opts)
        packer = self.records.packer
        first_end: list[int | None] = [None]
        forked = False

        def report(loc: str, reason: str) -> None:
            out.errors.append((loc, reason))

        def stop(pos: int, n: int) -> bool:
            nonlocal forked
            if not forked:
                if packer.zdict is None:
                    return False
                forked = True  # the dictionary is known: the ranges' processes can pack
                first_end[0] = self._fork(pos)
            end = first_end[0]
            return end is not None and pos >= end

        t0 = time.perf_counter()
        ra = csvio.RowsAt(lay, 0, 0, report, stop)
        self.names = self.names_of(lay.name, lay.header, self.opts, out)
        col.collect(self._rows(ra))
        pos, n = ra.pos, ra.n
        t_first = time.perf_counter() - t0
        taken = 0
        cpu_take = 0.0
        for part in self.ranges:
            if part.end is not None and pos >= part.end:  # read already by the one before
                part.stop()
                continue
            done = part.result()
            cp = None if done is None else next(
                (c for c in done.checkpoints if c[0] == pos and c[1] == n), None)
            if done is None or cp is None:
                if done is not None:
                    log.info("master range at byte %d began inside a record: read here",
                             part.start)
                part.stop()
                ra = csvio.RowsAt(lay, pos, n, report, part.ends_before)
                col.collect(self._rows(ra))
                pos, n = ra.pos, ra.n
                continue
            if cp is not done.checkpoints[0]:
                log.debug("master range at byte %d began inside a record: taken from the "
                          "record at byte %d", part.start, cp[0])
            t_take = time.process_time()
            self._take(part, done, cp, col)
            cpu_take += time.process_time() - t_take
            out.rows += done.rows - cp[3]
            pos, n = done.pos, done.n
            part.stop()
            taken += 1
        if self.ranges:
            log.info("master read in %d parts (%d by other processes; first part %.1f s, "
                     "all %.1f s; taking the other parts' records %.1f CPU s)",
                     len(self.ranges) + 1, taken, t_first, time.perf_counter() - t0, cpu_take)
        return out

    def _fork(self, pos: int) -> int | None:
        """Start a process per range after ``pos`` but the first; the first's end."""
        size = self.lay.size
        bounds: list[int] = []
        with open(self.lay.path, "rb") as f:
            for k in range(1, self.parts):
                at = max(pos + (size - pos) * k // self.parts, bounds[-1] if bounds else pos)
                f.seek(at)
                while True:
                    chunk = f.read(1 << 16)
                    if not chunk:
                        at = size
                        break
                    i = chunk.find(b"\n")
                    if i >= 0:
                        at += i + 1
                        break
                    at += len(chunk)
                if at >= size:
                    break
                if not bounds or at > bounds[-1]:
                    bounds.append(at)
        if not bounds:
            return None
        ends: list[int | None] = [*bounds[1:], None]
        try:
            for start, end in zip(bounds, ends, strict=True):
                self.ranges.append(_Part(self, start, end))
        except Exception as e:  # no process: the rest is read here
            log.warning("master read in one process: cannot start another (%s)", e)
            self.stop_parts()
            return None
        return bounds[0]

    def read_range(self, start: int, end: int | None
                   ) -> tuple[_Done, list[bytes]]:
        """In a range's process: read from ``start`` until the first record starting at
        or after ``end``, as records kept as ``compact.split`` gives them, and errors."""
        lay = self.lay
        packer = self.records.packer
        batches: list[bytes] = []
        events: list[tuple] = []
        sent = 0
        checkpoints: list[tuple[int, int, int, int]] = []
        col = self.collector(dataclasses.replace(self.out, records=[], errors=[], rows=0),
                             lay.name, self.opts, errors=events)

        def stop(pos: int, n: int) -> bool:
            if len(checkpoints) < CHECKPOINTS:
                checkpoints.append((pos, n, sent + len(events), col.rows))
            return end is not None and pos >= end

        def report(loc: str, reason: str) -> None:
            events.append((loc, reason))

        ra = csvio.RowsAt(lay, start, _lines_before(lay, start), report, stop)
        split, row = compact.split, col.row
        for line, data, ragged in self._rows(ra):
            rec = row(line, data, ragged)
            if rec is not None:
                events.append((line, rec.sku, *split(rec, packer)))
            if len(events) >= BATCH:
                batches.append(pickle.dumps(events, pickle.HIGHEST_PROTOCOL))
                sent += len(events)
                events = []
                col.errors = events
        if events:
            batches.append(pickle.dumps(events, pickle.HIGHEST_PROTOCOL))
            sent += len(events)
        checkpoints.append((ra.pos, ra.n, sent, col.rows))
        return _Done(ra.pos, ra.n, col.rows, checkpoints, len(batches)), batches

    def _take(self, part: _Part, done: _Done, cp: tuple[int, int, int, int],
              col: "_Collector") -> None:
        """Add a range's records and errors from checkpoint ``cp`` on."""
        skip = cp[2]
        errors = self.out.errors
        append, add = self.records.append_split, col.add
        for _ in range(done.batches):
            try:
                events = pickle.loads(part.recv.recv_bytes())
            except (EOFError, OSError) as e:
                raise _Lost(f"a process reading part of it died ({e!r})") from None
            if skip >= len(events):
                skip -= len(events)
                continue
            if skip:
                events = events[skip:]
                skip = 0
            for ev in events:
                if len(ev) == 2:
                    errors.append(ev)
                elif add(ev[0], ev[1]):
                    append(ev[2], ev[3], ev[4])

    def stop_parts(self) -> None:
        for part in self.ranges:
            part.stop()
        self.ranges = []


def _lines_before(lay: csvio.Layout, offset: int) -> int:
    """The number of lines before byte ``offset`` (a line's start), as ``ByteLines``
    counts them: line feeds, and with universal newlines lone carriage returns too."""
    n = 0
    cr_end = False
    with open(lay.path, "rb") as f:
        left = offset
        while left > 0:
            chunk = f.read(min(left, 1 << 23))
            if not chunk:
                break
            left -= len(chunk)
            n += chunk.count(b"\n")
            if not lay.strict:
                n += chunk.count(b"\r") - chunk.count(b"\r\n")
                if cr_end and chunk[:1] == b"\n":
                    n -= 1  # a CR LF cut between two chunks
                cr_end = chunk[-1:] == b"\r"
    return n
