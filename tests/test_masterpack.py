"""The master pack of a distributed run (auditor.masterpack): master, history and the
linker's built indexes, packed once by the coordinator and loaded by every worker."""

from __future__ import annotations

import gc
import pickle
from decimal import Decimal

import pytest

from auditor import masterpack
from auditor.compact import CompactMaster
from auditor.linking import Linker
from auditor.model import Availability, Money
from auditor.storage.records import MasterHistory
from tests.checks_factory import gtin13
from tests.conftest import make_listing, make_master

COLORS = ("Red", "Blue", "Black", "Green")


def _records() -> list:
    out = []
    for i in range(400):
        color = COLORS[i % 4]
        out.append(make_master(
            f"SKU-{i:04d}", title=f"Acme Trail Shoe {i // 4} {color}", brand="Acme",
            gtin=gtin13(f"{400638100000 + i:012d}"), mpn=f"AT-{i:04d}",
            url=f"https://shop.example/p/{i}", images=(f"https://img/{i}.jpg",),
            description=f"Model AT-{i:04d}, a shoe.", group_id=f"G-{i // 4}",
            price=Money(Decimal(f"{50 + i % 7}.90"), "EUR"), quantity=i % 9,
            availability=Availability.IN_STOCK, attributes={"color": color, "size": "42"},
            prices={"USD": Money(Decimal("61.00"), "USD")} if i % 3 == 0 else {}))
    return out


def _listings() -> list:
    return [make_listing("k-sku", sku="SKU-0007"),
            make_listing("k-gtin", sku=None, gtin=gtin13(f"{400638100000 + 12:012d}")),
            make_listing("k-mpn", sku=None, mpn="AT-0033"),
            make_listing("k-url", sku=None, url="https://shop.example/p/41"),
            make_listing("k-title", sku=None, title="Acme Trail Shoe 17 Blue", brand="Acme"),
            make_listing("k-close", sku=None, title="Acme Trail Shoe 17", brand="Acme"),
            make_listing("k-none", sku=None, title="Something else entirely", brand="Zed")]


def test_a_pack_gives_back_the_master_history_and_built_indexes():
    recs = _records()
    master = CompactMaster.of(recs)
    history = MasterHistory()
    history.put("SKU-0003", "2026-01-01T00:00:00+00:00", master.body("SKU-0004"))
    history.put("SKU-0003", "2026-02-01T00:00:00+00:00", master.body("SKU-0005"))
    linker = Linker(master, {})
    linker.prepare()
    data = masterpack.dumps((master, linker))
    assert gc.isenabled()  # (the collector is back on after packing and loading)
    m2, l2 = masterpack.loads(data)
    h2 = masterpack.loads(masterpack.dumps(history))
    assert gc.isenabled()

    assert type(m2) is CompactMaster and len(m2) == len(recs)
    assert list(m2) == [r.sku for r in recs]  # the coordinator's order
    for r in recs:
        got = m2[r.sku]
        assert got == r and got.description == r.description and got.images == r.images
        assert m2.body(r.sku) == master.body(r.sku)
    assert m2["SKU-0000"].prices["USD"] == Money(Decimal("61.00"), "USD")
    # shared objects stay shared: one packer, one attribute mapping per distinct set
    assert m2["SKU-0001"].attributes is m2["SKU-0005"].attributes
    assert list(h2) == ["SKU-0003"] and h2["SKU-0003"] == history["SKU-0003"]

    # the indexes come built (nothing is indexed again in the worker) and link the same
    assert l2.master is m2 and l2._match_index is not None
    assert set(l2.index) >= set(linker.order)
    got = [(lk.listing_key, lk.sku, lk.method, lk.candidates)
           for lk in (l2.link(li) for li in _listings())]
    want = [(lk.listing_key, lk.sku, lk.method, lk.candidates)
            for lk in (linker.link(li) for li in _listings())]
    assert got == want
    assert [g[1] for g in got[:5]] == ["SKU-0007", "SKU-0012", "SKU-0033", "SKU-0041",
                                       "SKU-0069"]


def test_the_indexes_part_refers_to_the_master_part_and_comes_when_first_needed():
    """A worker gets master and linker with the first key kind's index only; the other
    indexes (title-matching, other key kinds) are a later part, packed against that
    master (not a copy of it), installed when a listing first needs one of them."""
    master = CompactMaster.of(_records())
    linker = Linker(master, {})  # the sku index only, as the coordinator packs it first
    first = masterpack.dumps((master, linker))
    assert set(linker.index) == {"sku"} and linker._match_index is None
    # (the coordinator's child then builds the rest)
    built = set(linker.index)
    linker.prepare()
    rest = masterpack.dumps(masterpack.indexes(linker, built), master)
    with pytest.raises(pickle.UnpicklingError):  # it refers to a master, holds none
        pickle.loads(rest)

    m2, l2 = masterpack.loads(first)
    calls = []

    def supply() -> None:
        calls.append(1)
        part = masterpack.loads(rest, m2)
        assert part["title"]._master is m2 and "sku" not in part["keys"]
        masterpack.install(l2, part)

    l2.index.supply = supply
    s = l2.session(explain_links=True)
    assert s.link(make_listing("k-sku", sku="SKU-0007")).sku == "SKU-0007"
    assert calls == []  # a listing on record by its SKU needs nothing more
    got = [(lk.listing_key, lk.sku, lk.method, lk.candidates, lk.confidence)
           for lk in l2.link_all(_listings())]
    assert calls == [1]  # installed once, for the first listing that needed it
    assert set(l2.index) == set(linker.index) and l2._match_index is not None
    want = [(lk.listing_key, lk.sku, lk.method, lk.candidates, lk.confidence)
            for lk in linker.link_all(_listings())]
    assert got == want and got[4][1] == "SKU-0069"


def test_without_a_supplied_part_a_worker_builds_the_index_itself():
    master = CompactMaster.of(_records())
    m2, l2 = masterpack.loads(masterpack.dumps((master, Linker(master, {}))))
    calls = []
    l2.index.supply = lambda: calls.append(1)  # the part was missing: nothing installed
    link = l2.link(make_listing("k", sku=None, title="Acme Trail Shoe 17 Blue", brand="Acme"))
    assert calls == [1] and link.sku == "SKU-0069" and l2._match_index is not None


def test_a_plain_dict_master_packs_too():
    recs = {r.sku: r for r in _records()[:20]}
    linker = Linker(recs, {"fuzzy": False})
    linker.prepare()
    m2, l2 = masterpack.loads(masterpack.dumps((recs, linker)))
    assert m2 == recs and l2.master is m2
    assert l2.link(make_listing("k", sku="SKU-0003")).sku == "SKU-0003"
    part = masterpack.loads(masterpack.dumps(masterpack.indexes(linker), recs), m2)
    assert part["keys"]["sku"]._get.__self__ is m2  # the master referred to, not copied
