"""Reading a master CSV export on several cores (issue 20).

A large local CSV master is read in parts by forked processes, with the result of
reading it whole (``master.read_csv``): the same records in the same order, the same
stored hashes and packed bodies, the same errors with the same file:line locations.

1. This process reads the header and the first records until the compact records'
   packer has learnt its dictionary (``compact.Packer``; about a thousand records).
2. The rest of the file is cut into ``CHUNKS`` parts per process of about equal size,
   each beginning just after a line feed, which the processes claim as they become
   free (``_Claims``): this process from the front, reading on as one stream, as it
   always reads; the others (``parts`` - 1 forked processes) from its share's end on
   (``MAIN_SHARE``), then back into its share should they get there first. A process
   reads a part (``csvio.RowsAt``: rows from a byte offset, read as ``open_rows`` reads
   them), building each record and keeping it as ``compact.split`` gives it (hot
   fields' JSON, cold fields packed with that dictionary, body hash), with its errors,
   in batches of bytes it sends as soon as the part is read.
3. Once its own parts meet theirs, this process takes the parts in file order: their
   records and errors, each SKU checked against those read before (a SKU read twice is
   reported where it is read again, as when read whole), each compact record built
   (``CompactRecords.append_split``). While the next part is still being read, it reads
   the next part nobody has claimed itself rather than wait. So the processes end
   together, whichever is slower: no part's size is guessed from its rows.

A line feed inside a quoted field may fall where a part begins: its process then
starts mid-record. So every part is read on until the first record that starts at or
after the next part's beginning, and the next part's process remembers where its
first records started (``CHECKPOINTS``): its rows are taken from the record where the
previous part stopped; when it never started a record there, this process reads that
part itself. A process that fails (or dies) has its parts read here too; a part is
taken only once all its batches are here, so nothing is taken twice. A file that
cannot be read in parts as it would be read whole (a line over ``max_line_length``) is
read whole (``csvio.Unsplittable``).

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
import queue
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any, Callable, Mapping

from auditor import compact, csvio, sources
from auditor.forking import _leave_fork, die_with_parent

if TYPE_CHECKING:  # auditor.master calls this module and hands it these
    from auditor.master import MasterImport, _Collector

log = logging.getLogger("auditor.master")

MIN_BYTES = 8 << 20     # smaller files are read in one process
PARTS: int | None = None  # processes reading a file; None: the cores this process may use
MAX_PARTS = 8           # at most (this process builds every record: more gain little)
CHUNKS = 16             # parts of the file per process: whoever is free reads the next
MAIN_SHARE = 0.7        # this process's first share, of an equal one (it takes the rest)
CHECKPOINTS = 256       # record starts a part's process remembers
BATCH = 4096            # records and errors per batch sent
LOCK_WAIT = 30.0        # s: a claim's lock not had by then: a process died holding it

_HEAD, _BATCH = b"H", b"B"  # what a message of a part's process holds


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
    """The parts' claims are lost (a process died holding their lock): read the file again."""


@dataclass
class _Done:
    """What a part's process read: where it stopped, and where its records started."""

    pos: int                                  # the next record's start (or the file's end)
    n: int                                    # the number of the line before it
    rows: int
    checkpoints: list[tuple[int, int, int, int]]  # (pos, n, events before it, rows before it)
    batches: int
    cpu: float = 0.0                          # CPU seconds its reading took
    ended: float = 0.0                        # when it was read (time.time())


MAIN = -1        # a part's owner: this process
FREE = -2        # nobody yet


class _Claims:
    """Who reads which part, in memory the processes share, under one lock.

    Parts ``[0, share)`` are this process's share: it claims them from the front (``a``
    up), the others from its end back (``b`` down) once they have claimed every part
    after it (``c`` up), so that the share's end is where they meet.
    """

    def __init__(self, parts: int, share: int):
        ctx = mp.get_context("fork")
        self.lock = ctx.Lock()
        self.parts = parts
        # a, b, c, then the owner of each part (part 0: this process's first)
        self.state = ctx.RawArray("i", [1, share, share, MAIN] + [FREE] * (parts - 1))

    def _acquire(self) -> None:
        if not self.lock.acquire(timeout=LOCK_WAIT):
            raise _Lost("a process reading part of it died holding a claim")

    def front(self) -> int | None:
        """This process's next part of its share, or None where the others have it."""
        self._acquire()
        try:
            st = self.state
            k = st[0]
            if k >= st[1]:
                return None
            st[0] = k + 1
            st[3 + k] = MAIN
            return k
        finally:
            self.lock.release()

    def owner(self, k: int, take: bool) -> int:
        """Part ``k``'s owner, after this process's share; with ``take``, a part nobody
        has claimed yet (the next after the others') is this process's from now."""
        self._acquire()
        try:
            st = self.state
            if take and st[2] == k < self.parts:
                st[2] = k + 1
                st[3 + k] = MAIN
            return st[3 + k]
        finally:
            self.lock.release()

    def next(self, me: int) -> int | None:
        """The next part nobody has claimed, after this process's share (for ``me``:
        another process; else this one), or for ``me`` one at its share's end."""
        self._acquire()
        try:
            st = self.state
            if st[2] < self.parts:
                k = st[2]
                st[2] = k + 1
            elif me != MAIN and st[0] < st[1]:
                k = st[1] = st[1] - 1
            else:
                return None
            st[3 + k] = me
            return k
        finally:
            self.lock.release()


class _Part:
    """A forked process reading parts of the file as it claims them (``_Claims``); it
    sends each one's number and ``_Done``, then its batches, as soon as it is read."""

    def __init__(self, reader: "_Reader", me: int):
        ctx = mp.get_context("fork")
        self.recv, send = ctx.Pipe(duplex=False)
        self.dead = False
        parent = os.getpid()

        def child() -> None:
            die_with_parent(parent)
            gc.freeze()  # what the parent holds is not ours to scan
            out: queue.SimpleQueue = queue.SimpleQueue()

            def sender() -> None:  # its sends wait for the parent: reading goes on
                for item in iter(out.get, None):
                    send.send_bytes(item)

            t = threading.Thread(target=sender, daemon=True)
            t.start()
            try:
                reader.read_parts(me, out)
            except BaseException as e:  # reported; the parent reads its parts itself
                out.put(_HEAD + pickle.dumps((None, f"{e.__class__.__name__}: {e}")))
            out.put(None)
            t.join()
            send.close()
            _leave_fork()

        self.proc = ctx.Process(target=child, daemon=True)
        self.proc.start()
        send.close()

    def receive(self) -> tuple[int, _Done, list] | None:
        """The next part the process read, with its batches; None once it failed or
        died (what it sent whole before stays good)."""
        try:
            msg = self.recv.recv_bytes()
            if msg[:1] != _HEAD:
                raise EOFError("a batch where a part was expected")
            k, done = pickle.loads(msg[1:])
            if k is None:
                raise EOFError(done)
            batches = []
            for _ in range(done.batches):
                msg = self.recv.recv_bytes()
                if msg[:1] != _BATCH:
                    raise EOFError("its part ended early")
                batches.append(msg)
        except (EOFError, OSError) as e:
            self.dead = True
            log.warning("reading part of the master in another process failed (%s); "
                        "reading it here", str(e) or f"exited with code {self.proc.exitcode}")
            return None
        return k, done, batches

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
        self.others: list[_Part] = []
        self.starts: list[int] = []
        self.ends: list[int | None] = []
        self.claims: _Claims | None = None
        self.lines = {0: 0}  # line numbers known at byte offsets (lines' starts)
        self.ready: dict[int, tuple[_Done, list]] = {}  # parts read, not yet taken

    def _rows(self, ra: csvio.RowsAt) -> Any:
        names = self.names
        width = len(names)
        return ((line, dict(zip(names, cells, strict=False)), len(cells) != width)
                for line, cells in ra.rows)

    def read(self) -> "MasterImport":
        lay, out = self.lay, self.out
        col = self.collector(out, lay.name, self.opts)
        packer = self.records.packer
        end: int | None = None
        forked = False
        mine = 1

        def report(loc: str, reason: str) -> None:
            out.errors.append((loc, reason))

        def stop(pos: int, n: int) -> bool:
            nonlocal forked, end, mine
            if not forked:
                if packer.zdict is None:
                    return False
                forked = True  # the dictionary is known: the other processes can pack
                end = self._fork(pos)
            while end is not None and pos >= end:
                assert self.claims is not None
                k = self.claims.front()
                if k is None:
                    return True
                end = self.ends[k]
                mine += 1
            return False

        t0, c0 = time.perf_counter(), time.process_time()
        ra = csvio.RowsAt(lay, 0, 0, report, stop)
        self.names = self.names_of(lay.name, lay.header, self.opts, out)
        col.collect(self._rows(ra))
        pos, n = ra.pos, ra.n
        t_first, c_first = time.perf_counter() - t0, time.process_time() - c0
        stats = {"taken": 0, "here": 0, "ahead": 0, "cpu_ahead": 0.0, "cpu_take": 0.0,
                 "cpu_others": 0.0, "waited": 0.0, "last": 0.0}
        for k in range(mine, len(self.starts)):
            end = self.ends[k]
            got = self._part(k, stats)
            if end is not None and pos >= end:  # read already by the one before
                continue
            cp = None if got is None else next(
                (c for c in got[0].checkpoints if c[0] == pos and c[1] == n), None)
            if got is None or cp is None:
                if got is not None:
                    log.info("master part at byte %d began inside a record: read here",
                             self.starts[k])
                pos, n = self._read_here(col, pos, n, end, report)
                stats["here"] += 1
                continue
            done, batches = got
            if cp is not done.checkpoints[0]:
                log.debug("master part at byte %d began inside a record: taken from the "
                          "record at byte %d", self.starts[k], cp[0])
            t_take = time.process_time()
            self._take(batches, cp, col)
            stats["cpu_take"] += time.process_time() - t_take
            out.rows += done.rows - cp[3]
            pos, n = done.pos, done.n
            stats["taken"] += 1
        if self.others:
            log.info("master read by %d processes in %d parts (this one read %d in %.1f CPU "
                     "s, in %.1f s, then %d ahead in %.1f CPU s and %d in place; the others "
                     "%d in %.1f CPU s, the last %.1f s after the start; taking the parts "
                     "read apart %.1f CPU s, waiting for them %.1f s; all %.1f s)",
                     len(self.others) + 1, len(self.starts), mine, c_first, t_first,
                     stats["ahead"], stats["cpu_ahead"], stats["here"],
                     stats["taken"] - stats["ahead"], stats["cpu_others"],
                     max(0.0, stats["last"] - (time.time() - (time.perf_counter() - t0))),
                     stats["cpu_take"], stats["waited"], time.perf_counter() - t0)
        return out

    def _read_here(self, col: "_Collector", pos: int, n: int, end: int | None,
                   report: Callable[[str, str], None]) -> tuple[int, int]:
        """Read a part in place, from ``pos`` (after line ``n``) up to ``end``."""
        ra = csvio.RowsAt(self.lay, pos, n, report,
                          lambda p, _n: end is not None and p >= end)
        col.collect(self._rows(ra))
        return ra.pos, ra.n

    def _part(self, k: int, stats: dict[str, Any]) -> tuple[_Done, list] | None:
        """Part ``k`` read by another process or ahead by this one, once all of it is
        here; None: read it in place (nobody else has, or its process failed).

        Waiting for it, this process receives what the others send and reads ahead the
        next part nobody has claimed; it blocks only when there is none."""
        assert self.claims is not None
        while k not in self.ready:
            who = self.claims.owner(k, take=True)
            if who == MAIN or self.others[who].dead:
                return None
            alive = {p.recv: p for p in self.others if not p.dead}
            t = time.perf_counter()
            ready = wait(list(alive), timeout=0)
            if not ready:
                j = self.claims.next(MAIN)
                if j is not None:
                    c0 = time.process_time()
                    done, batches = self.read_range(self.starts[j], self.ends[j],
                                                    self._lines_at(self.starts[j]), pickled=False)
                    stats["cpu_ahead"] += time.process_time() - c0
                    stats["ahead"] += 1
                    self.ready[j] = (done, batches)
                    continue
                ready = [self.others[who].recv]
            for conn in ready:
                got = alive[conn].receive()  # type: ignore[index]
                if got is not None:
                    j, done, batches = got
                    self.ready[j] = (done, batches)
                    stats["cpu_others"] += done.cpu
                    stats["last"] = max(stats["last"], done.ended)
            stats["waited"] += time.perf_counter() - t
        return self.ready.pop(k)

    def _fork(self, pos: int) -> int | None:
        """Cut the rest of the file after ``pos`` into parts, start the other processes;
        the end of this process's first part (None: it reads on to the end)."""
        size = self.lay.size
        want = CHUNKS * self.parts
        bounds: list[int] = []
        with open(self.lay.path, "rb") as f:
            for k in range(1, want):
                at = max(pos + (size - pos) * k // want, bounds[-1] if bounds else pos)
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
        self.starts = [pos, *bounds]
        self.ends = [*bounds, None]
        parts = len(self.starts)
        share = max(1, min(parts - 1, round(parts * MAIN_SHARE / self.parts)))
        self.claims = _Claims(parts, share)
        try:
            for me in range(min(self.parts - 1, parts - 1)):
                self.others.append(_Part(self, me))
        except Exception as e:  # no process: the rest is read here
            log.warning("master read in one process: cannot start another (%s)", e)
            self.stop_parts()
            return None
        return self.ends[0]

    def _lines_at(self, start: int) -> int:
        """The number of lines before byte ``start`` (a line's start), counted from the
        nearest offset whose number is known."""
        lines = self.lines
        near = min(lines, key=lambda o: abs(o - start))
        lines[start] = (lines[near] + _lines_between(self.lay, near, start) if near <= start
                        else lines[near] - _lines_between(self.lay, start, near))
        return lines[start]

    def read_parts(self, me: int, out: queue.SimpleQueue) -> None:
        """In another process: read the parts it claims, putting each one's number and
        ``_Done``, then its batches, on ``out``."""
        assert self.claims is not None
        while (k := self.claims.next(me)) is not None:
            c0 = time.process_time()
            done, batches = self.read_range(self.starts[k], self.ends[k],
                                            self._lines_at(self.starts[k]))
            done.cpu, done.ended = time.process_time() - c0, time.time()
            out.put(_HEAD + pickle.dumps((k, done), pickle.HIGHEST_PROTOCOL))
            for b in batches:
                out.put(b)

    def read_range(self, start: int, end: int | None, lines: int, pickled: bool = True
                   ) -> tuple[_Done, list]:
        """Read from ``start`` (after line ``lines``) until the first record starting at
        or after ``end``, as records kept as ``compact.split`` gives them, and errors, in
        batches (``pickled``: as bytes to send, marked ``_BATCH``)."""
        lay = self.lay
        packer = self.records.packer
        batches: list = []
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

        def flush() -> None:
            nonlocal sent
            batches.append(_BATCH + pickle.dumps(events, pickle.HIGHEST_PROTOCOL)
                           if pickled else events)
            sent += len(events)

        ra = csvio.RowsAt(lay, start, lines, report, stop)
        split, row = compact.split, col.row
        for line, data, ragged in self._rows(ra):
            rec = row(line, data, ragged)
            if rec is not None:
                events.append((line, rec.sku, *split(rec, packer)))
            if len(events) >= BATCH:
                flush()
                events = []
                col.errors = events
        if events:
            flush()
        checkpoints.append((ra.pos, ra.n, sent, col.rows))
        return _Done(ra.pos, ra.n, col.rows, checkpoints, len(batches)), batches

    def _take(self, batches: list, cp: tuple[int, int, int, int], col: "_Collector") -> None:
        """Add a part's records and errors from checkpoint ``cp`` on."""
        skip = cp[2]
        errors = self.out.errors
        append, add = self.records.append_split, col.add
        for batch in batches:
            events = pickle.loads(memoryview(batch)[1:]) if isinstance(batch, bytes) else batch
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
        for part in self.others:
            part.stop()
        self.others = []


def _lines_between(lay: csvio.Layout, start: int, end: int) -> int:
    """The number of lines between bytes ``start`` and ``end`` (lines' starts), as
    ``ByteLines`` counts them: line feeds, and with universal newlines lone carriage
    returns too."""
    n = 0
    cr_end = False
    with open(lay.path, "rb") as f:
        f.seek(start)
        left = end - start
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
