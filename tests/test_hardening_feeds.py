"""Hostile feeds: endless lines, giant cells and compression bombs fail the source with a
clear reason in bounded memory and time (issue 21 item 2)."""

from __future__ import annotations

import gzip
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest

from auditor import csvio
from auditor.errors import MasterImportError, SourceError
from auditor.master import load_master
from auditor.model import SourceStatus
from auditor.sources import Limits, SourceFile
from tests.connector_helpers import read
from tests.test_auditor_runner import audit

MB = 1 << 20


def _gzip_endless(path: Path, head: bytes, total: int, fill: bytes = b"A") -> Path:
    """A gzip of ``head`` then ``total`` bytes of ``fill`` with no line break (a few hundred KB)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = fill * MB
    with open(path, "wb") as f:
        f.write(c.compress(head))
        for _ in range(total // MB):
            f.write(c.compress(chunk))
        f.write(c.flush())
    return path


def _bounded(fn):
    """Run ``fn``; return (exception, seconds, peak traced bytes)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the caller judges
        err = e
    else:
        err = None
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return err, seconds, peak


def test_gzip_of_one_endless_line_fails_in_bounded_memory(tmp_path):
    src = _gzip_endless(tmp_path / "pos.csv.gz", b"sku,title,price\n", 300 * MB)
    assert src.stat().st_size < 2 * MB
    err, seconds, peak = _bounded(lambda: read("tabular", str(src)))
    assert isinstance(err, SourceError), err
    assert "pos.csv.gz:2" in err.source and "max_line_length" in err.reason
    assert seconds < 5 and peak < 40 * MB, (seconds, peak)


def test_zip_of_one_endless_line_fails_in_bounded_memory(tmp_path):
    src = tmp_path / "pos.zip"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("export.csv", "w") as f:
            f.write(b"sku,title,price\n")
            for _ in range(300):
                f.write(b"B" * MB)
    # (with the ratio check on, the member is refused before it is opened: see below)
    err, seconds, peak = _bounded(lambda: read("tabular", str(src), max_compression_ratio=0))
    assert isinstance(err, SourceError), err
    assert err.source.endswith("pos.zip:2") and "max_line_length" in err.reason
    assert seconds < 5 and peak < 40 * MB, (seconds, peak)


def test_plain_csv_with_a_giant_row_fails_before_reading_it_whole(tmp_path):
    src = tmp_path / "pos.csv"
    with open(src, "wb") as f:
        f.write(b"sku,title,price\nA-1,Mug,9.99\n")
        for _ in range(60):
            f.write(b"C" * MB)
    err, seconds, peak = _bounded(lambda: read("tabular", str(src)))
    assert isinstance(err, SourceError) and err.source.endswith("pos.csv:3"), err
    assert peak < 40 * MB and seconds < 5, (seconds, peak)


def test_explicit_encoding_reads_lines_bounded_too(tmp_path):
    src = _gzip_endless(tmp_path / "pos.csv.gz", b"sku,title,price\n", 50 * MB)
    err, _, peak = _bounded(lambda: read("tabular", str(src), encoding="latin-1"))
    assert isinstance(err, SourceError) and "max_line_length" in err.reason
    assert peak < 40 * MB


def test_a_cell_over_max_field_length_fails_the_source(tmp_path):
    # A quoted cell of many short lines: no line is long, the cell is.
    body = "\n".join(["x" * 100] * 1000)
    src = tmp_path / "pos.csv"
    src.write_text(f'sku,title,price\nA-1,"{body}",9.99\n')
    with pytest.raises(SourceError) as e:
        read("tabular", str(src), max_field_length=50_000)
    assert e.value.source.endswith("pos.csv:2") and "max_field_length (50,000" in e.value.reason
    # under the default limit the same file reads
    listings, _ = read("tabular", str(src), currency="EUR")
    assert len(listings) == 1 and len(listings[0].title) > 90_000


def test_limits_are_configurable_and_lines_within_them_read(tmp_path):
    src = tmp_path / "pos.csv"
    src.write_text("sku,title,price\nA-1," + "t" * 300 + ",9.99\n")
    assert len(read("tabular", str(src), currency="EUR")[0]) == 1
    with pytest.raises(SourceError, match="max_line_length"):
        read("tabular", str(src), currency="EUR", max_line_length=200)


def test_decompressed_size_is_capped(tmp_path):
    rows = b"".join(b"SKU-%d,Mug %d,9.99\n" % (i, i) for i in range(60_000))
    src = tmp_path / "pos.csv.gz"
    src.write_bytes(gzip.compress(b"sku,title,price\n" + rows))
    with pytest.raises(SourceError, match=r"decompresses to more than max_source_bytes \(500,000"):
        read("tabular", str(src), max_source_bytes=500_000)
    assert len(read("tabular", str(src), currency="EUR")[0]) == 60_000


def test_plain_file_over_max_source_bytes_is_refused_at_once(tmp_path):
    src = tmp_path / "pos.csv"
    src.write_bytes(b"sku,title,price\n" + b"A-1,Mug,9.99\n" * 1000)
    with pytest.raises(SourceError, match="exceeds max_source_bytes"):
        SourceFile(str(src), src, Limits(max_bytes=1000)).open_binary()


def test_zip_member_declaring_more_than_the_cap_is_refused(tmp_path):
    src = tmp_path / "feed.zip"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("feed.csv", b"sku,title\n" + b"A,B\n" * 50_000)
    with pytest.raises(SourceError, match="zip member of 200,010 bytes exceeds"):
        SourceFile(str(src), src, Limits(max_bytes=100_000)).open_binary()


def test_master_jsonl_with_an_endless_line_is_rejected(tmp_path):
    src = _gzip_endless(tmp_path / "master.jsonl.gz", b'{"sku": "A"}\n{"sku": "', 30 * MB)
    with pytest.raises(MasterImportError, match="max_line_length"):
        load_master({"type": "jsonl", "source": str(src)}, tmp_path)


def test_master_csv_with_an_endless_line_is_rejected(tmp_path):
    src = _gzip_endless(tmp_path / "master.csv.gz", b"sku,title\n", 30 * MB)
    with pytest.raises(MasterImportError, match="max_line_length"):
        load_master({"type": "csv", "source": str(src)}, tmp_path)


def test_open_rows_reports_the_line(tmp_path):
    src = tmp_path / "x.csv"
    src.write_text("a,b\n1,2\n3," + "y" * 5000 + "\n")
    header, rows = csvio.open_rows(SourceFile(str(src), src, Limits(max_line=1000)))
    with pytest.raises(SourceError) as e:
        list(rows)
    assert e.value.source == f"{src}:3"


def test_a_bomb_in_a_run_fails_the_source_and_concludes_nothing(mini_world):
    audit(mini_world)[1].close()
    _gzip_endless(mini_world / "google.xml", b"id\ttitle\tprice\n", 100 * MB)
    report, store = audit(mini_world)
    ch = report.channels[0]
    assert ch.status is SourceStatus.FAILED and "max_line_length" in ch.message
    assert ch.resolved == 0 and report.exit_code == 2
    assert {f.sku for f in store.findings(state="open")} >= {"TS-BLU-M"}
    assert not [f for f in store.findings(state="open") if f.check == "presence"]
    store.close()


@pytest.mark.parametrize("ctype", ["google_merchant", "meta_catalog"])
@pytest.mark.parametrize("gz", [False, True])
def test_xml_feed_ending_early_is_a_failed_read(tmp_path, ctype, gz):
    """Every item complete, the root never closed (a cut download): the read fails."""
    items = "".join(f"<item><g:id>S{i}</g:id><title>T{i}</title><g:price>1.00 EUR</g:price>"
                    f"</item>\n" for i in range(50))
    xml = ('<?xml version="1.0"?><rss xmlns:g="http://base.google.com/ns/1.0" version="2.0">'
           f"<channel>{items}").encode()
    src = tmp_path / ("feed.xml.gz" if gz else "feed.xml")
    src.write_bytes(gzip.compress(xml) if gz else xml)
    with pytest.raises(SourceError, match="Premature end of data"):
        read(ctype, str(src))


def test_gzip_bomb_of_valid_rows_fails_on_its_compression_ratio(tmp_path, monkeypatch):
    """Short, valid rows repeated: no line or cell is long, yet a small gzip unpacks to
    gigabytes. The ratio check stops it (past 16 MiB at 100:1; 1 MiB and 20:1 here, to keep
    the test short)
    instead of parsing for an hour."""
    from auditor import sources
    monkeypatch.setattr(sources, "RATIO_FROM", MB)
    src = tmp_path / "pos.csv.gz"
    c = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    row = b"SKU-1,Mug,9.99\n" * 70_000  # ~1 MB
    with open(src, "wb") as f:
        f.write(c.compress(b"sku,title,price\n"))
        for _ in range(100):  # 100 MB in about 200 KB
            f.write(c.compress(row))
        f.write(c.flush())
    err, seconds, peak = _bounded(lambda: read("tabular", str(src), currency="EUR",
                                                max_compression_ratio=20))
    assert isinstance(err, SourceError) and "max_compression_ratio 20:1" in err.reason, err
    # (a few hundred thousand rows read under tracemalloc on a busy machine, not 100 MB)
    assert seconds < 60 and peak < 40 * MB, (seconds, peak)
    # the same rows in a file that compresses like a real feed read fine
    real = tmp_path / "real.csv.gz"
    real.write_bytes(gzip.compress(b"sku,title,price\n" + b"".join(
        b"SKU-%d,Mug %d,%d.99\n" % (i, i * 7919 % 100003, i % 97) for i in range(120_000))))
    assert len(read("tabular", str(real), currency="EUR", max_compression_ratio=20)[0]) == 120_000


def test_zip_member_over_the_ratio_is_refused_at_once(tmp_path):
    src = tmp_path / "feed.zip"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("feed.csv", "w") as f:
            for _ in range(80):
                f.write(b"A,B\n" * (MB // 4))
    with pytest.raises(SourceError, match="over max_compression_ratio"):
        SourceFile(str(src), src, Limits()).open_binary()
    SourceFile(str(src), src, Limits(max_ratio=0)).open_binary().close()  # 0 = off
