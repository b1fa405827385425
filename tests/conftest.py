"""Shared fixtures: small factories for master records and listings, a fresh store."""

from __future__ import annotations

import textwrap
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from auditor.model import Listing, MasterRecord, Money
from tests.imageserver import image_server  # noqa: F401 (a fixture, for every test module)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true",
                     help="Also run tests marked slow (or set AUDITOR_SLOW_TESTS=1).")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long tests (e.g. 50 kill -9 trials); run with "
                                       "--run-slow or AUDITOR_SLOW_TESTS=1")


def pytest_collection_modifyitems(config, items):
    import os

    if config.getoption("--run-slow") or os.environ.get("AUDITOR_SLOW_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow or AUDITOR_SLOW_TESTS=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def make_master(sku: str = "SKU-1", **kw) -> MasterRecord:
    """A master record with sensible defaults; override any field."""
    base = dict(sku=sku, title="Acme Trail Shoe, Red, 42", brand="Acme",
                price=Money(Decimal("59.90"), "EUR"), quantity=5)
    base.update(kw)
    return MasterRecord(**base)


def make_listing(key: str = "SKU-1", channel: str = "google", **kw) -> Listing:
    """A listing that mirrors make_master() unless overridden."""
    base = dict(channel=channel, key=key, fetched_at=NOW, sku=key,
                title="Acme Trail Shoe, Red, 42", brand="Acme",
                price=Money(Decimal("59.90"), "EUR"))
    base.update(kw)
    return Listing(**base)


@pytest.fixture
def fresh_store():
    from auditor.storage import open_store

    s = open_store("sqlite:///:memory:")
    yield s
    s.close()


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(textwrap.dedent(text).lstrip("\n").encode(encoding))
    return path


@pytest.fixture
def mini_world(tmp_path: Path) -> Path:
    """A master CSV, a Google RSS feed with planted drift, and a config: the smallest real audit."""
    write(tmp_path / "master.csv", """
        sku,title,brand,gtin,price,currency,quantity,color
        TS-RED-M,"Acme Tee, Red, M",Acme,4006381333931,20.00,USD,5,Red
        TS-BLU-M,"Acme Tee, Blue, M",Acme,,20.00,USD,4,Blue
        TS-GRN-M,"Acme Tee, Green, M",Acme,,22.00,USD,3,Green
        """)
    write(tmp_path / "google.xml", """
        <?xml version="1.0"?>
        <rss xmlns:g="http://base.google.com/ns/1.0" version="2.0"><channel>
         <item><g:id>TS-RED-M</g:id><title>Acme Tee, Red, M</title>
          <g:price>20.00 USD</g:price><g:availability>in stock</g:availability></item>
         <item><g:id>TS-BLU-M</g:id><g:title>Totally different thing</g:title>
          <g:price>25.00 USD</g:price><g:availability>in_stock</g:availability></item>
         <item><g:id>TS-GRN-M</g:id><g:title>Acme Tee, Green, M</g:title>
          <g:price>22.00 USD</g:price></item>
        </channel></rss>
        """)
    write(tmp_path / "config.toml", """
        [store]
        path = "auditor.db"
        [master]
        type = "csv"
        source = "master.csv"
        [[channels]]
        name = "google"
        type = "google_merchant"
        source = "google.xml"
        schedule = "0 */4 * * *"
        """)
    return tmp_path
