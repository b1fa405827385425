"""Sources: paths, globs, URLs, archives, encodings, delimiters, and failed sources in a run."""

from __future__ import annotations

import gzip
import io
import logging
import os
import time
import zipfile
from pathlib import Path

import pytest

from auditor import csvio, sources
from auditor.config import parse_config
from auditor.errors import SourceError
from auditor.http import FetchPolicy
from auditor.runner import run_audit
from auditor.storage import open_store
from connector_helpers import HTTP_LOCAL, serve

ROWS = "id;title;price\n1;Café;1,50 EUR\n2;Crème;2,50 EUR\n"


def _rows(path: Path, **kw) -> tuple[list[str], list[tuple[int, list[str]]], list]:
    errors: list = []
    header, rows = csvio.open_rows(sources.SourceFile(str(path), path),
                                   on_error=lambda loc, r: errors.append((loc, r)), **kw)
    return header, list(rows), errors


@pytest.mark.parametrize("encoding,bom", [("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"),
                                          ("cp1252", b""), ("latin-1", b""),
                                          ("utf-16", b"")])
def test_encodings_are_detected(tmp_path, encoding, bom):
    p = tmp_path / "f.csv"
    p.write_bytes(bom + ROWS.encode(encoding))
    header, rows, errors = _rows(p)
    assert header == ["id", "title", "price"]
    assert [c for _, c in rows] == [["1", "Café", "1,50 EUR"], ["2", "Crème", "2,50 EUR"]]
    assert errors == []


@pytest.mark.parametrize("delim", [",", ";", "\t", "|"])
def test_delimiters_are_sniffed(tmp_path, delim):
    p = tmp_path / "f.csv"
    p.write_text(f"id{delim}title{delim}price\n1{delim}\"A{delim} B\"{delim}3\n",
                 encoding="utf-8")
    header, rows, _ = _rows(p)
    assert header == ["id", "title", "price"] and rows == [(2, ["1", f"A{delim} B", "3"])]


def test_quoting_errors_cost_one_row(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text('id,title,price\n1,"ok",1\n2,"unclosed,2\n3,fine,3\n4,"multi\nline",4\n'
                 '5,x,5,surplus\n6,short\n', encoding="utf-8")
    header, rows, errors = _rows(p, ragged="report")
    assert rows == [(2, ["1", "ok", "1"]), (4, ["3", "fine", "3"]),
                    (5, ["4", "multi\nline", "4"]), (8, ["6", "short", ""])]
    assert [loc.rsplit(":", 1)[1] for loc, _ in errors] == ["3", "7"]
    assert "unbalanced quote" in errors[0][1] and "cells" in errors[1][1]



@pytest.mark.parametrize("last", ['"unterminated,1,2\n', '3,"unterminated,2\n',
                                  '3,x,"unterminated\r\n', '3,x,"unterminated'])
def test_an_unclosed_quote_on_the_last_line_is_a_bad_row_not_a_listing(tmp_path, last):
    p = tmp_path / "f.csv"
    p.write_text("id,title,price\n1,ok,1\n2,fine,2\n" + last, encoding="utf-8", newline="")
    header, rows, errors = _rows(p, ragged="report")
    assert rows == [(2, ["1", "ok", "1"]), (3, ["2", "fine", "2"])]
    assert len(errors) == 1 and errors[0][0].endswith(":4")
    assert "unbalanced quote" in errors[0][1]

@pytest.mark.parametrize("max_lines", [50, csvio.MAX_RECORD_LINES])
def test_runaway_quote_is_cut_off(tmp_path, monkeypatch, max_lines):
    monkeypatch.setattr(csvio, "MAX_RECORD_LINES", max_lines)
    p = tmp_path / "f.csv"
    lines = ["id,title\n", '1,"never closed\n'] + [f"{i},t{i}\n" for i in range(2, 1000)]
    p.write_text("".join(lines), encoding="utf-8")
    _, rows, errors = _rows(p, ragged="report")
    assert len(rows) == 998 and rows[-1] == (1000, ["999", "t999"])
    assert len(errors) == 1 and errors[0][0].endswith(":2")


def test_explicit_encoding_reports_bad_lines(tmp_path):
    p = tmp_path / "f.csv"
    p.write_bytes(b"id,title\n1,ok\n2,caf\xe9\n")
    _, rows, errors = _rows(p, encoding="utf-8")
    assert len(rows) == 2 and errors[0][0].endswith(":3") and "utf-8" in errors[0][1]


def _resolve(source: str, base: Path, **kw):
    return sources.resolve(source, base, **kw)


def test_local_path_and_missing_file(tmp_path):
    (tmp_path / "a.csv").write_text(ROWS, encoding="utf-8")
    with _resolve("a.csv", tmp_path) as files:
        assert [f.path for f in files] == [tmp_path / "a.csv"]
    with pytest.raises(SourceError, match="file not found"):
        with _resolve("nope.csv", tmp_path):
            pass


def test_glob_newest_or_all(tmp_path):
    for i, name in enumerate(["export-1.csv", "export-3.csv", "export-2.csv"]):
        p = tmp_path / name
        p.write_text(ROWS, encoding="utf-8")
        os.utime(p, (time.time() - 100 + i * 10,) * 2)
    with _resolve("export-*.csv", tmp_path) as files:
        assert [f.path.name for f in files] == ["export-2.csv"]  # newest by mtime
    with _resolve("export-*.csv", tmp_path, all_files=True) as files:
        assert [f.path.name for f in files] == ["export-1.csv", "export-3.csv", "export-2.csv"]
    with pytest.raises(SourceError, match="no file matches"):
        with _resolve("other-*.csv", tmp_path):
            pass


def test_gzip_and_zip_are_undone(tmp_path):
    (tmp_path / "f.csv.gz").write_bytes(gzip.compress(ROWS.encode("utf-8")))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("README.txt", "hello")
        zf.writestr("export/feed.csv", ROWS * 10)
    (tmp_path / "f.zip").write_bytes(buf.getvalue())
    for name in ("f.csv.gz", "f.zip"):
        with _resolve(name, tmp_path) as (sf,):
            header, rows = csvio.open_rows(sf)
            assert header == ["id", "title", "price"] and next(rows)[1][1] == "Café"


@pytest.mark.parametrize("cut", [0.3, 0.9])
def test_truncated_gzip_raises_while_reading(tmp_path, cut):
    data = gzip.compress(ROWS.encode() * 5000)
    p = tmp_path / "f.csv.gz"
    p.write_bytes(data[: int(len(data) * cut)])
    sf = sources.SourceFile(str(p), p)
    with pytest.raises(SourceError, match="truncated or corrupt"):
        _, rows = csvio.open_rows(sf)
        list(rows)


def test_broken_zip_is_a_source_error(tmp_path):
    p = tmp_path / "f.zip"
    p.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(SourceError, match="zip"):
        sources.SourceFile(str(p), p).open_binary()


@pytest.mark.parametrize("head,kind", [
    (b"<?xml version='1.0'?><rss>", "xml"), (b"\xef\xbb\xbf<feed>", "xml"),
    (b"<!DOCTYPE html><html>", "html"), (b"\n <html lang=en>", "html"),
    (b'{"products": []}', "json"), (b"id\ttitle\n", "text"), (b"  \n", "empty"),
    (b"PK\x03\x04...", "xlsx"),
])
def test_sniff_kind(head, kind):
    assert sources.sniff_kind(head) == kind


def test_xlsx_without_suffix_is_not_unzipped(tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    wb.active.append(["SKU"])
    wb.save(tmp_path / "download.xlsx")
    p = tmp_path / "download"  # a URL download has no suffix
    p.write_bytes((tmp_path / "download.xlsx").read_bytes())
    sf = sources.SourceFile("https://example.test/export", p)
    assert sf.kind() == "xlsx"
    with sf.open_binary() as f:
        assert f.read(4) == b"PK\x03\x04"


def test_url_source_with_env_headers_and_auth(monkeypatch, caplog):
    secret = "s3cr3t-token-value"
    monkeypatch.setenv("FEED_TOKEN", secret)
    monkeypatch.setenv("FEED_USER", "alice")
    monkeypatch.setenv("FEED_PASS", "pw-9876")
    routes = {"/feed.csv": (200, {"Content-Type": "text/csv"}, ROWS.encode()),
              "/gone.csv": (404, {}, b"")}
    from auditor.config import EnvRef, secret_value

    headers = {"Authorization": secret_value(EnvRef("FEED_TOKEN"))}
    auth = (secret_value(EnvRef("FEED_USER")), secret_value(EnvRef("FEED_PASS")))
    with serve(routes) as (base, seen), caplog.at_level(logging.DEBUG):
        policy = FetchPolicy.from_config(HTTP_LOCAL, {}, [base])
        with _resolve(f"{base}/feed.csv", Path("."), policy=policy, headers=headers,
                      auth=auth) as (sf,):
            header, rows = csvio.open_rows(sf)
            assert header == ["id", "title", "price"] and len(list(rows)) == 2
            downloaded = sf.path
        assert not downloaded.exists()  # the temporary download is removed
        with pytest.raises(SourceError) as e:
            with _resolve(f"{base}/gone.csv", Path("."), policy=policy, headers=headers):
                pass
    assert "HTTP 404" in str(e.value)
    assert seen[0]["authorization"].startswith("Basic ")  # auth wins over the header
    assert seen[1]["authorization"] == secret
    for text in (str(e.value), caplog.text):
        assert secret not in text and "pw-9876" not in text


# ----------------------------------------------------------------------------- through a run

MASTER = "sku,title,price,currency\nA-1,Acme Tee,12.50,EUR\nA-2,Acme Mug,5.00,EUR\n"
FEED = ("id\ttitle\tprice\tavailability\n"
        "A-1\tAcme Tee\t12.50 EUR\tin_stock\nA-2\tAcme Mug\t5.00 EUR\tin_stock\n")


def _config(tmp_path: Path, source: str):
    raw = {"store": {"path": str(tmp_path / "a.db")},
           "http": {"allow_private": True, "retries": 0, "timeout": 5.0},
           "master": {"type": "csv", "source": "master.csv"},
           "channels": [{"name": "gm", "type": "google_merchant", "source": source}]}
    return parse_config(raw, tmp_path / "config.toml")


def test_unreadable_source_fails_the_channel_not_its_listings(tmp_path):
    (tmp_path / "master.csv").write_text(MASTER, encoding="utf-8")
    feed = tmp_path / "feed.tsv.gz"
    feed.write_bytes(gzip.compress(FEED.encode()))
    store = open_store(tmp_path / "a.db")
    try:
        first = run_audit(_config(tmp_path, "feed.tsv.gz"), store)
        assert first.channels[0].status.value == "complete"
        assert first.channels[0].listings == 2
        open_before = {f.fingerprint for f in store.findings(state="open")}

        data = gzip.compress((FEED * 2000).encode())
        feed.write_bytes(data[: len(data) // 2])  # truncated in transfer
        second = run_audit(_config(tmp_path, "feed.tsv.gz"), store)
        (gm,) = second.channels
        assert gm.status.value == "failed" and "truncated" in gm.message
        assert second.exit_code == 2
        assert {li.key for li in store.listings("gm")} == {"A-1", "A-2"}  # not removed
        assert {f.fingerprint for f in store.findings(state="open")} == open_before

        with serve({}) as (base, _):
            third = run_audit(_config(tmp_path, f"{base}/feed.tsv"), store)
        (gm,) = third.channels
        assert gm.status.value == "failed" and "HTTP 404" in gm.message
        assert {li.key for li in store.listings("gm")} == {"A-1", "A-2"}
        sources_row = store.run_sources(third.run_id)[0]
        assert sources_row.status == "failed"

        feed.write_bytes(gzip.compress(b"id\ttitle\tprice\n"))  # an empty feed
        fourth = run_audit(_config(tmp_path, "feed.tsv.gz"), store)
        (gm,) = fourth.channels
        assert gm.status.value == "failed" and "no listings" in gm.message
        assert {li.key for li in store.listings("gm")} == {"A-1", "A-2"}
    finally:
        store.close()


def test_a_last_line_without_a_line_end_is_read(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text('id,title,price\n1,ok,1\n2,"fine, quoted",2', encoding="utf-8", newline="")
    _, rows, errors = _rows(p, ragged="report")
    assert rows == [(2, ["1", "ok", "1"]), (3, ["2", "fine, quoted", "2"])] and errors == []
