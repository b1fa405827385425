"""The master CSV read in parts by forked processes (auditor.masterparts): the result of
reading it whole, whatever the file holds and wherever the parts begin."""

import gzip
import logging
import os
import time
import re
from pathlib import Path

import pytest

from auditor import compact, masterparts
from auditor.errors import MasterImportError
from auditor.master import load_master

OPTS = {"type": "csv", "encoding": "auto", "delimiter": "auto", "columns": {},
        "default_currency": None, "skip_bad_rows": True, "timezone": "UTC"}


@pytest.fixture
def parts(monkeypatch):
    """Any file is read in parts; ``parts(n)`` sets how many (1: read whole)."""
    monkeypatch.setattr(masterparts, "MIN_BYTES", 0)

    def set_parts(n: int) -> None:
        monkeypatch.setattr(masterparts, "PARTS", n)
    return set_parts


def make(path: Path, n: int = 4000, *, nl: str = "\n", delim: str = ",", bom: bool = False,
         encoding: str = "utf-8", lines_per_description: int = 3, header: str = "sku") -> Path:
    """A master with what a real export holds: quoted fields spanning lines (some of
    whose lines look like records), bad cells, SKUs read twice far apart, blank lines,
    the header again, a ragged row, an unbalanced quote, non-ASCII text."""
    d = delim
    head = d.join([header, "title", "description", "brand", "gtin", "price", "currency",
                   "quantity", "Colour", "title@google"])
    out = [head]
    for i in range(n):
        sku = f"SKU-{i:05d}"
        if i % 131 == 130 and i > 1500:
            sku = f"SKU-{i - 1500:05d}"  # read again, in another part
        title = f"Gárden chair {i}" if i % 7 else f"Chair \"deluxe\" {i}, oak"
        if i % 3 == 0:
            desc_lines = [f"Line {k} of {i}" for k in range(lines_per_description)]
            desc_lines[1] = f'SKU-{i:05d}{d}fake{d}"row' if lines_per_description > 1 else ""
            desc = nl.join(desc_lines)
        else:
            desc = f"One line {i}"
        price = "abc" if i % 97 == 50 else f"{10 + i % 50}.99"
        cells = [sku, title, desc, "Acme", "", price, "EUR", str(i % 9), "Red", f"G {i}"]
        out.append(d.join('"' + c.replace('"', '""') + '"' if any(x in c for x in (d, '"', "\n", "\r"))
                          else c for c in cells))
        if i % 500 == 499:
            out.append("")
        if i == 2500:
            out.append(d.join(["RAGGED", "only", "three"]))
        if i == 3000:
            out.append(head)
        if i == 3500:
            out.append(d.join(["SKU-BROKEN", '"unbalanced title', "x", "Acme", "", "1.00",
                               "EUR", "1", "Red", "t"]))
    data = (nl.join(out) + nl).encode(encoding, errors="replace")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def same(a, b) -> None:
    """Two reads of a master: the same in every respect the rest of the run sees."""
    assert a.rows == b.rows
    assert a.errors == b.errors
    ra, rb = a.records, b.records
    assert len(ra) == len(rb) > 0
    assert list(ra) == list(rb)
    assert [compact._get_cold(x) for x in ra] == [compact._get_cold(x) for x in rb]
    assert bytes(ra._hashes) == bytes(rb._hashes)
    assert ra.packer.zdict == rb.packer.zdict
    assert list(ra.master().hashes()) == list(rb.master().hashes())  # type: ignore[union-attr]


def read(tmp_path: Path, path: Path, **opts):
    return load_master(dict(OPTS, source=str(path), **opts), tmp_path)


def read_both(tmp_path, path, parts, n, caplog=None, **opts):
    parts(1)
    whole = read(tmp_path, path, **opts)
    parts(n)
    if caplog is not None:
        caplog.clear()
    in_parts = read(tmp_path, path, **opts)
    return whole, in_parts


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_parts_give_the_whole_files_result(tmp_path, parts, caplog, n):
    caplog.set_level(logging.DEBUG, logger="auditor.master")
    path = make(tmp_path / "m.csv")
    whole, in_parts = read_both(tmp_path, path, parts, n, caplog)
    same(whole, in_parts)
    assert f"master read by {n} processes" in caplog.text
    # what the file holds is all there, reported as when read whole
    reasons = " ".join(r for _, r in whole.errors)
    assert "duplicate SKU 'SKU-0" in reasons and "bad price 'abc'" in reasons
    assert "unbalanced quote" in reasons and "different number of columns" in reasons
    assert any("(first on line" in r for _, r in whole.errors)
    assert whole.records[1].title == "Gárden chair 1"


def test_a_part_beginning_inside_a_quoted_field(tmp_path, parts, caplog, monkeypatch):
    """Every description spans 40 lines: each part begins inside one; its process takes
    its rows from where the part before really ends (in small batches: the ones before
    are skipped)."""
    caplog.set_level(logging.DEBUG, logger="auditor.master")
    monkeypatch.setattr(masterparts, "BATCH", 7)
    path = make(tmp_path / "m.csv", 3000, lines_per_description=40)
    resynced = 0
    for n in (2, 3, 4, 6):
        whole, in_parts = read_both(tmp_path, path, parts, n, caplog)
        same(whole, in_parts)
        resynced += caplog.text.count("taken from the record at byte")
        assert "master read by" in caplog.text
    assert resynced > 0


def test_a_part_whose_process_never_started_a_record_there_is_read_here(
        tmp_path, parts, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="auditor.master")
    monkeypatch.setattr(masterparts, "CHECKPOINTS", 1)  # only where it began
    path = make(tmp_path / "m.csv", 3000, lines_per_description=40)
    whole, in_parts = read_both(tmp_path, path, parts, 3, caplog)
    same(whole, in_parts)
    assert "began inside a record: read here" in caplog.text


def test_a_failing_part_is_read_here(tmp_path, parts, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="auditor.master")
    path = make(tmp_path / "m.csv")
    real = masterparts._Reader.read_range
    here = os.getpid()
    tried = tmp_path / "another process tried"

    def flaky(self, start, end, *args, **kw):
        if os.getpid() != here:  # every part another process reads fails
            tried.touch()
            raise RuntimeError("disk on fire")
        # This process reads ahead when the others are slow to start (a loaded machine):
        # it waits (at most 20 s) for one of them to try a part, so that one does.
        for _ in range(200):
            if tried.exists():
                break
            time.sleep(0.1)
        return real(self, start, end, *args, **kw)

    monkeypatch.setattr(masterparts._Reader, "read_range", flaky)
    whole, in_parts = read_both(tmp_path, path, parts, 3, caplog)
    same(whole, in_parts)
    assert "disk on fire" in caplog.text


@pytest.mark.parametrize("kind", ["crlf", "cr", "bom-semicolon", "cp1252", "remapped"])
def test_line_ends_charsets_delimiters_and_column_maps(tmp_path, parts, kind):
    opts: dict = {}
    if kind == "crlf":
        path = make(tmp_path / "m.csv", nl="\r\n")
    elif kind == "cr":  # old Mac line ends: a line feed nowhere, so read whole
        path = make(tmp_path / "m.csv", 1500, nl="\r")
    elif kind == "bom-semicolon":
        path = make(tmp_path / "m.csv", delim=";", bom=True)
    elif kind == "cp1252":
        path = make(tmp_path / "m.csv", encoding="cp1252")
    else:
        path = make(tmp_path / "m.csv", header="Artikelnummer")
        opts = {"columns": {"sku": "Artikelnummer"}}
    whole, in_parts = read_both(tmp_path, path, parts, 3, **opts)
    same(whole, in_parts)
    assert whole.records[1].title == "Gárden chair 1"


def test_explicit_encoding_reports_bad_bytes_on_their_lines(tmp_path, parts):
    path = make(tmp_path / "m.csv", encoding="cp1252")  # read as UTF-8: bad bytes
    whole, in_parts = read_both(tmp_path, path, parts, 4, encoding="utf-8")
    same(whole, in_parts)
    bad = [loc for loc, r in whole.errors if "not valid utf-8" in r]
    assert len(bad) > 100 and bad[-1].startswith(f"{path}:")


def test_rejected_file_lists_the_same_errors(tmp_path, parts):
    path = make(tmp_path / "m.csv")
    got = []
    for n in (1, 3):
        parts(n)
        with pytest.raises(MasterImportError) as e:
            read(tmp_path, path, skip_bad_rows=False)
        got.append((e.value.errors, e.value.total_rows))
    assert got[0] == got[1] and len(got[0][0]) > 50


def test_over_the_limits(tmp_path, parts, caplog):
    """A line over max_line_length: read whole (which fails naming it); a cell over
    max_field_length in a later part fails naming the same line as read whole."""
    caplog.set_level(logging.INFO, logger="auditor.master")
    path = make(tmp_path / "m.csv")
    text = path.read_text()
    long_cell = "x" * 3000
    lines = text.split("\n")
    lines[-100] = f'SKU-LONG,"{long_cell}",d,Acme,,1.00,EUR,1,Red,t'
    path.write_text("\n".join(lines))
    msgs = []
    for n in (1, 3):
        parts(n)
        with pytest.raises(MasterImportError) as e:
            read(tmp_path, path, max_field_length=2000)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1] and "max_field_length" in msgs[0]
    msgs = []
    for n in (1, 3):
        parts(n)
        with pytest.raises(MasterImportError) as e:
            read(tmp_path, path, max_line_length=2000)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1] and "max_line_length" in msgs[0]
    assert "master read in one process: " in caplog.text


def test_small_compressed_or_remote_files_are_read_whole(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="auditor.master")
    monkeypatch.setattr(masterparts, "PARTS", 3)
    path = make(tmp_path / "m.csv")
    assert path.stat().st_size < masterparts.MIN_BYTES
    read(tmp_path, path)
    monkeypatch.setattr(masterparts, "MIN_BYTES", 0)
    gz = tmp_path / "m.csv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert len(read(tmp_path, gz).records) > 3000
    assert "parts" not in caplog.text
    read(tmp_path, path)
    assert "master read by 3 processes" in caplog.text


def test_unchanged_master_is_not_read_again(tmp_path, parts):
    parts(3)
    path = make(tmp_path / "m.csv")
    first = read(tmp_path, path)
    again = load_master(dict(OPTS, source=str(path)), tmp_path, unchanged_sha=first.sha256)
    assert again.unchanged and not again.records


def test_a_run_reads_its_master_in_parts(mini_world, parts, caplog):
    """``auditor run`` (runner.read_master -> load_master) takes the same path: the stored
    snapshot and the run's import summary are those of a whole read."""
    from auditor.config import load_config
    from auditor.runner import run_audit
    from auditor.storage import open_store
    from tests.conftest import NOW

    caplog.set_level(logging.INFO, logger="auditor.master")
    make(mini_world / "master.csv")
    cfg_path = mini_world / "config.toml"
    cfg_path.write_text(cfg_path.read_text().replace('source = "master.csv"',
                                                     'source = "master.csv"\nskip_bad_rows = true'))
    got = []
    for n, db in ((1, "whole.db"), (3, "parts.db")):
        parts(n)
        cfg_path.write_text(cfg_path.read_text().replace(
            'path = "auditor.db"' if n == 1 else 'path = "whole.db"', f'path = "{db}"'))
        cfg = load_config(cfg_path)
        store = open_store(cfg.store_url)
        try:
            report = run_audit(cfg, store, now=NOW)
            master = store.current_master()
            got.append((report.master["records"], report.master["skipped_rows"],
                        report.master["errors"], list(master.bodies())))
        finally:
            store.close()
    assert got[0] == got[1] and got[0][0] > 3000
    assert "master read by 3 processes" in caplog.text


def test_a_part_dying_while_its_records_are_sent(tmp_path, parts, caplog, monkeypatch):
    """A part is taken only once all its batches are here: a process that stops
    sending mid-part has its parts read here."""
    caplog.set_level(logging.INFO, logger="auditor.master")
    path = make(tmp_path / "m.csv")
    real = masterparts._Reader.read_range
    here = os.getpid()

    def cut(self, start, end, *args, **kw):
        done, batches = real(self, start, end, *args, **kw)
        if os.getpid() == here:
            return done, batches
        assert done.batches > 1
        return done, batches[:1]  # says more batches follow, sends the first only

    monkeypatch.setattr(masterparts._Reader, "read_range", cut)
    monkeypatch.setattr(masterparts, "BATCH", 10)
    whole, in_parts = read_both(tmp_path, path, parts, 2, caplog)
    same(whole, in_parts)
    assert "failed (its part ended early); reading it here" in caplog.text


def test_whoever_is_free_reads_the_next_part(tmp_path, parts, caplog, monkeypatch):
    """The other process slowed down: this one reads parts ahead instead of waiting,
    and the records are still the whole read's, in file order."""
    import time

    caplog.set_level(logging.INFO, logger="auditor.master")
    path = make(tmp_path / "m.csv")
    real = masterparts._Reader.read_range
    here = os.getpid()

    def slow(self, start, end, *args, **kw):
        if os.getpid() != here:
            time.sleep(0.05)
        return real(self, start, end, *args, **kw)

    monkeypatch.setattr(masterparts._Reader, "read_range", slow)
    whole, in_parts = read_both(tmp_path, path, parts, 2, caplog)
    same(whole, in_parts)
    ahead = re.search(r"then (\d+) ahead", caplog.text)
    assert ahead and int(ahead.group(1)) > 0


def test_a_process_killed_mid_read(tmp_path, parts, caplog, monkeypatch):
    """SIGKILL-ed after sending some parts: what it sent whole is taken, the rest of its
    parts are read here, nothing twice."""
    import signal

    caplog.set_level(logging.INFO, logger="auditor.master")
    path = make(tmp_path / "m.csv", 6000)
    real = masterparts._Reader.read_range
    here = os.getpid()
    calls = []

    def killed(self, start, end, *args, **kw):
        if os.getpid() != here:
            calls.append(start)
            if len(calls) == 4:
                os.kill(os.getpid(), signal.SIGKILL)
        return real(self, start, end, *args, **kw)

    monkeypatch.setattr(masterparts._Reader, "read_range", killed)
    whole, in_parts = read_both(tmp_path, path, parts, 3, caplog)
    same(whole, in_parts)
    assert caplog.text.count("reading it here") == 2  # both others killed at their 4th
