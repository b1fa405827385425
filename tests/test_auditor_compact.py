"""The compact master (issue 20): one compact record per SKU, cold fields packed."""

from __future__ import annotations

import dataclasses
import pickle
import sys
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from auditor import codec, compact as compact_mod
from auditor.compact import (CompactMaster, CompactRecord, CompactRecords, Packer, body_of,
                             compact)
from auditor.linking import Linker
from auditor.master import load_master
from auditor.model import Availability, LinkMethod, MasterRecord, MasterStatus, Money
from auditor.storage import open_store
from tests.conftest import NOW, make_listing, make_master


def _full(sku: str = "F-1"):
    """A record using every field, containers and money in two currencies included."""
    return make_master(
        sku, title="Full Record", description="All fields", brand="Acme", gtin="4006381333931",
        mpn="AC-1", price=Money(Decimal("49.90"), "EUR"), sale_price=Money(Decimal("39.90"), "EUR"),
        sale_start=NOW - timedelta(days=1), sale_end=NOW + timedelta(days=3),
        prices={"USD": Money(Decimal("52.00"), "USD")},
        sale_prices={"USD": Money(Decimal("42.00"), "USD")}, quantity=7,
        availability=Availability.IN_STOCK, status=MasterStatus.DISCONTINUED,
        url="https://shop.example/p/full", images=("https://img/1.jpg", "https://img/2.jpg"),
        attributes={"color": "red", "size": "M"}, overrides={"google": {"title": "G title"}},
        group_id="G-1")


def test_records_round_trip_exactly_and_bodies_are_the_stored_encoding():
    recs = [_full("F-1"), make_master("P-2", title="Plain"), make_master("E-3", title=None)]
    m = CompactMaster.of(recs)
    for rec in recs:
        assert m[rec.sku] == rec
        assert m.body(rec.sku) == codec.body(rec) == body_of({rec.sku: rec}, rec.sku)
    assert m["F-1"].price == Money(Decimal("49.90"), "EUR")
    assert m["F-1"].price.amount.as_tuple() == Decimal("49.90").as_tuple()  # scale kept
    assert m["F-1"].prices["USD"] == Money(Decimal("52.00"), "USD")
    assert m["F-1"].override("google", "title") == "G title"


def test_behaves_as_the_dict_it_replaces():
    recs = {r.sku: r for r in (_full("A"), make_master("B"), make_master("C"))}
    m = compact(recs)
    assert m == recs and recs == m
    assert len(m) == 3 and list(m) == ["A", "B", "C"]
    assert "B" in m and "Z" not in m
    assert m.get("Z") is None and m.get("Z", 1) == 1 and m.get("B") == recs["B"]
    with pytest.raises(KeyError):
        m["Z"]
    assert dict(m.items()) == recs and list(m.values()) == list(recs.values())
    assert compact(m) is m
    assert pickle.loads(pickle.dumps(m)) == recs
    # a later record of a SKU replaces the earlier one, also in the cache
    m["B"]
    m.add(make_master("B", title="Changed"))
    assert m["B"].title == "Changed" and len(m) == 3


def test_a_lookup_decodes_nothing_and_cold_fields_decode_when_read():
    recs = [_full(f"S{i}") for i in range(3)]
    m = CompactMaster.of(recs)
    a = m["S0"]
    assert isinstance(a, CompactRecord) and isinstance(a, MasterRecord)
    assert m["S0"] is a and m.get("S0") is a  # held as the record: a lookup is a dict get
    # hot fields are plain slots, shared between records where equal
    assert a.title == "Full Record" and a.title is m["S1"].title
    assert a.attributes is m["S1"].attributes and a.prices is m["S2"].prices
    assert a.price is m["S1"].price
    # cold fields come from the packed part, exactly
    assert (a.description, a.mpn, a.url, a.images, a.group_id) == (
        "All fields", "AC-1", "https://shop.example/p/full",
        ("https://img/1.jpg", "https://img/2.jpg"), "G-1")
    plain = CompactMaster.of([make_master("P")])["P"]
    assert plain._cold is None and plain.images == () and plain.url is None
    # frozen; replace gives a plain record; pickles as the record it holds
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.title = "x"  # type: ignore[misc]
    b = dataclasses.replace(a, title="Other")
    assert type(b) is MasterRecord and b.title == "Other" and b.url == a.url
    assert pickle.loads(pickle.dumps(a)) == recs[0] and a == recs[0] and recs[0] == a
    assert a != recs[1] and a.full() == recs[0] and type(a.full()) is MasterRecord
    assert codec.body(a) == codec.body(recs[0]) and repr(a) == repr(recs[0])


def test_a_compact_master_is_much_smaller_than_records():
    recs = [dataclasses.replace(_full(f"F-{i:06d}"), title=f"Full Record {i}",
                                gtin=f"{4006381000000 + i}",
                                url=f"https://shop.example/p/full-{i}",
                                attributes={"color": "red", "size": str(i % 7)})
            for i in range(2000)]
    m = CompactMaster.of(recs)
    seen: set[int] = set()

    def size(v) -> int:  # each object counted once: shared values are paid for once
        if id(v) in seen or v is None:
            return 0
        seen.add(id(v))
        n = sys.getsizeof(v)
        if isinstance(v, dict):
            n += sum(size(k) + size(x) for k, x in v.items())
        elif isinstance(v, Money):
            n += size(v.amount)
        return n
    held = sys.getsizeof(m._recs) + sum(
        size(sku) + size(r) + size(r._cold) + sum(size(getattr(r, f)) for f in compact_mod.HOT)
        for sku, r in m._recs.items())

    def deep(rec) -> int:
        n = sys.getsizeof(rec)
        for f in dataclasses.fields(rec):
            v = getattr(rec, f.name)
            n += sys.getsizeof(v)
            if isinstance(v, Money):
                n += sys.getsizeof(v.amount)
            elif isinstance(v, dict):
                n += sum(sys.getsizeof(k) + sys.getsizeof(x) for k, x in v.items())
        return n
    as_records = sum(deep(r) for r in recs)
    assert held < as_records / 3, (held, as_records)
    assert [b for _s, b in m.bodies()] == [codec.body(r) for r in recs]


def test_compact_records_as_read_from_a_file():
    recs = [_full("A"), make_master("B")]
    cr = CompactRecords(recs)
    assert len(cr) == 2 and cr[0] == recs[0] and cr[-1] == recs[1] and cr[0:1] == [recs[0]]
    assert list(cr) == recs and cr == recs and cr == CompactRecords(recs)
    (only,) = CompactRecords([recs[1]])
    assert only == recs[1]
    m = cr.master()
    assert isinstance(m, CompactMaster) and m == {"A": recs[0], "B": recs[1]}
    assert m["A"] is cr[0]  # shared, not built again


def test_master_file_is_read_compactly(tmp_path):
    (tmp_path / "m.csv").write_text("sku,title,price,currency\nA,Alpha,1.50,EUR\nB,Beta,2,EUR\n")
    imp = load_master({"type": "csv", "source": "m.csv"}, tmp_path)
    assert isinstance(imp.records, CompactRecords)
    assert [r.sku for r in imp.records] == ["A", "B"]
    assert imp.records[0].price == Money(Decimal("1.50"), "EUR")


def test_store_holds_the_master_as_stored_and_plans_the_same_hashes(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    recs = {r.sku: r for r in (_full("A"), make_master("B", title="Bee"))}
    store.save_master(recs.values(), "m.csv", None, NOW)
    cur = store.current_master()
    assert isinstance(cur, CompactMaster) and cur == recs
    changed = {**recs, "B": make_master("B", title="Bee 2"), "C": make_master("C")}
    plan_dict = store.plan_master(changed, NOW + timedelta(days=1))
    plan_compact = store.plan_master(compact(changed), NOW + timedelta(days=1))
    assert plan_dict.writes == plan_compact.writes and set(plan_dict.writes) == {"B", "C"}
    assert plan_dict.replaced == plan_compact.replaced
    assert plan_compact.bodies == {}  # the compact master holds them already
    store.commit_master(plan_compact, compact(changed), "m2.csv", None)
    assert store.current_master() == changed
    (until, old), = store.master_history()["B"]
    assert old == recs["B"] and until == NOW + timedelta(days=1)
    hist = store.master_history()
    hist.add({"C": codec.body(changed["C"]).decode()}, (NOW + timedelta(days=2)).isoformat())
    assert hist["C"] == [(NOW + timedelta(days=2), changed["C"])] and len(hist) == 2
    store.close()


def test_linker_on_a_compact_master_links_and_reports_shared_keys():
    m = compact({r.sku: r for r in (
        make_master("A-1", gtin="4006381333931", title="Alpha"),
        make_master("B-1", gtin="4006381333948", title="Beta"),
        make_master("B-2", gtin="4006381333948", title="Beta too"))})
    lk = Linker(m, {})
    assert lk.link(make_listing(key="k1", sku="a-1")).sku == "A-1"
    assert lk.link(make_listing(key="k2", sku=None, gtin="4006381333931")).sku == "A-1"
    amb = lk.link(make_listing(key="k3", sku=None, gtin="4006381333948"))
    assert amb.method is LinkMethod.AMBIGUOUS and set(amb.candidates) == {"B-1", "B-2"}
    assert lk.index["sku"].get("A-1") == "A-1" and not lk.index["sku"].other  # no copy


def test_packer_learns_a_dictionary_and_gives_back_exact_bytes():
    p = Packer()
    recs = [_full(f"P-{i:05d}") for i in range(Packer.LEARN + 50)]
    packed = [p.pack(codec.body(r)) for r in recs]
    assert all(z[:1] == b"r" for z in packed[:Packer.LEARN])
    assert all(z[:1] == b"z" for z in packed[Packer.LEARN:])
    assert all(p.unpack(z) == codec.body(r) for z, r in zip(packed, recs, strict=True))
    late = packed[Packer.LEARN:]
    assert sum(map(len, late)) * 3 < sum(len(codec.body(r)) for r in recs[Packer.LEARN:])
    # what was kept as it was is compressed once the dictionary exists
    early = [p.repack(z) for z in packed[:Packer.LEARN]]
    assert all(z[:1] == b"z" for z in early) and p.repack(late[0]) is late[0]
    assert all(p.unpack(z) == codec.body(r) for z, r in zip(early, recs[:Packer.LEARN],
                                                           strict=True))
    m = CompactMaster.of(recs)
    assert all(r._cold is None or r._cold[:1] == b"z" for r in m.values())  # none left raw
    assert pickle.loads(pickle.dumps(m)) == {r.sku: r for r in recs}
    rs = CompactRecords(recs)
    assert all(r._cold is None or r._cold[:1] == b"z" for r in rs) and list(rs) == recs


def test_history_holds_versions_compactly_and_gives_them_back():
    from auditor.storage.records import MasterHistory
    recs = [_full(f"H-{i:05d}") for i in range(Packer.LEARN + 300)]
    h = MasterHistory()
    t1, t2 = "2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00"
    for i, r in enumerate(recs):
        h.put(r.sku, t1, codec.body(r).decode())  # text, as SQLite gives it
        if i % 4 == 0:
            h.put(r.sku, t2, codec.body(dataclasses.replace(r, title="later")))
    versions = [v for held in h._raw.values()
                for v in ((held,) if isinstance(held, bytes) else held)]
    assert len(versions) == len(recs) + (len(recs) + 3) // 4
    assert all(v[3:4] == b"z" for v in versions)  # every body compressed, early ones too
    assert h[recs[8].sku] == [(datetime.fromisoformat(t1), recs[8]),
                              (datetime.fromisoformat(t2),
                               dataclasses.replace(recs[8], title="later"))]
    assert h[recs[9].sku] == [(datetime.fromisoformat(t1), recs[9])]
    assert recs[9].sku in h and "nope" not in h and len(h) == len(recs)
    h.add({recs[9].sku: codec.body(recs[10]).decode()}, t2)
    assert [r for _t, r in h[recs[9].sku]] == [recs[9], recs[10]]
    key = next(k for k in h if k == recs[5].sku)
    assert key is sys.intern(recs[5].sku)  # SKUs interned: the master's own strings


def test_keys_held_by_hash_are_checked_against_the_master():
    from array import array

    from auditor.linking import _entry, norm_gtin
    m = compact({"A-1": make_master("A-1", gtin="4006381333931", title="Alpha")})
    lk = Linker(m, {})
    lk.prepare()
    assert lk.link(make_listing(key="k1", sku=None, gtin="4006381333931")).sku == "A-1"
    # a listing whose key has the same hash as a master's (a collision, forced here)
    other = norm_gtin("4006381333948")
    assert other is not None
    idx = lk.index["gtin"]
    idx._entries = array("Q", sorted([*idx._entries, _entry(other, 0)]))
    assert idx.get(other) == ["A-1"]
    link = lk.link(make_listing(key="k2", sku=None, gtin="4006381333948", title=None))
    assert link.sku is None


def test_sku_index_is_the_master_itself_plus_skus_that_normalize_otherwise():
    m = compact({r.sku: r for r in (
        make_master("A-1", title="Alpha"), make_master("a-1", title="alpha lower"),
        make_master(" b 2", title="Beta"), make_master("C-3", title="Gamma"))})
    lk = Linker(m, {"fuzzy": False})
    idx = lk.index["sku"]
    assert idx.other == {"A-1": ["a-1"], "B2": [" b 2"]}  # the only SKUs held
    assert idx.get("C-3") == "C-3" and idx.get("B2") == " b 2" and idx.get("X") is None
    amb = lk.link(make_listing(key="k1", sku="a-1"))
    assert amb.method is LinkMethod.AMBIGUOUS and set(amb.candidates) == {"A-1", "a-1"}
    assert lk.link(make_listing(key="k2", sku="b2")).sku == " b 2"
    assert lk.link(make_listing(key="k3", sku="c-3")).sku == "C-3"


def test_hashed_keys_hold_eight_bytes_per_master_and_find_every_holder():
    from auditor.linking import HashedKeys, _entry
    skus = [f"S{i}" for i in range(1000)]
    keys = [f"key-{i % 400}" for i in range(1000)]  # most keys held by 2-3 masters
    idx = HashedKeys([_entry(k, i) for i, k in enumerate(keys)], skus)
    assert idx._entries.itemsize == 8 and len(idx) == 1000
    for k in ("key-0", "key-399", "key-123"):
        want = [s for s, kk in zip(skus, keys, strict=True) if kk == k]
        assert idx.get(k) == want
    assert idx.get("absent") == []


def test_a_kind_indexed_after_the_master_grew_numbers_the_skus_again():
    m = compact({"A-1": make_master("A-1", gtin="4006381333931", mpn="X-1", brand="Acme",
                                    title="Alpha")})
    lk = Linker(m, {"fuzzy": False})
    assert lk.link(make_listing(key="k1", sku=None, gtin="4006381333931")).sku == "A-1"
    m.add(make_master("B-1", mpn="Y-2", brand="Acme", title="Beta"))
    link = lk.link(make_listing(key="k2", sku=None, gtin=None, mpn="Y-2", brand="Acme"))
    assert link.sku == "B-1"
    assert lk.link(make_listing(key="k3", sku=None, gtin="4006381333931")).sku == "A-1"


def test_a_master_file_read_knows_each_records_stored_hash(tmp_path):
    """The hashes made while a master file is read are the ones a store keeps (so an
    import compares them without encoding a body), in the master's order; a master
    changed since, or read from the store, has none (the store encodes then)."""
    from auditor.compact import CompactMaster, CompactRecords
    from auditor.model import MasterRecord, Money
    from auditor.storage.sqlite import digest

    recs = [MasterRecord(sku=f"S{i}", title=f"Thing {i}", brand="Acme",
                         price=Money(Decimal("9.99"), "EUR"), description="d" * i,
                         attributes={"color": "Red"} if i % 2 else {}) for i in range(50)]
    m = CompactRecords(recs).master()
    got = list(m.hashes() or ())
    assert got == [(sku, digest(m.body(sku))) for sku in m] and len(got) == 50
    assert CompactMaster.from_bodies(m.bodies()).hashes() is None
    twice = CompactRecords(recs + [recs[3]]).master()  # a SKU read twice
    assert twice.hashes() is None
    m.add(MasterRecord(sku="S1", title="changed"))
    assert m.hashes() is None


def test_an_import_planned_from_the_read_hashes_is_the_one_planned_from_bodies():
    from auditor.compact import CompactMaster, CompactRecords
    from auditor.model import MasterRecord, Money
    from auditor.storage.sqlite import SQLiteStore

    def rec(i, price):
        return MasterRecord(sku=f"S{i}", title=f"Thing {i}", brand="Acme",
                            price=Money(Decimal(price), "EUR"), description="long " * i)

    store = SQLiteStore(":memory:")
    now = datetime(2026, 11, 1)
    store.save_master([rec(i, "9.99") for i in range(40)], "a.csv", None, now)
    new = CompactRecords([rec(i, "9.99" if i % 3 else "8.50") for i in range(5, 60)]).master()
    assert new.hashes() is not None
    fast = store.plan_master(new, now)
    slow = store.plan_master(CompactMaster.from_bodies(new.bodies()), now)
    assert (fast.writes, fast.added, fast.removed, fast.replaced) == \
        (slow.writes, slow.added, slow.removed, slow.replaced)
    assert fast.added == 20 and len(fast.writes) == 20 + 12 and len(fast.removed) == 5
    store.close()
