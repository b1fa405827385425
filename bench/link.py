"""Linking quality: listings with no usable key matched to a master catalog.

Three sets, each a master catalog and an unkeyed channel with ground truth:

* ``amazon_google`` and ``walmart_amazon``: public product-matching sets in
  ``<repo>/../shared/devsets/linking/`` (read in place, never copied), with their
  ``truth.csv`` (pair-level; both ground truths miss some true matches, so measured
  precision is a lower bound);
* ``world``: the generated world's Meta channel with every key stripped (SKU, GTIN,
  MPN, URL); its truth is what the keys linked to.

Scored as ``score.py`` scores: pair-level precision, recall and F1 of the confident
links, and of the confident links plus the suggested ones.

    python -m bench link                      # all three sets, appended to docs/benchmarks.md
    python bench/link.py --set walmart_amazon --dump out.csv   # predictions for score.py
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))
NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)
DEVSETS = ("amazon_google", "walmart_amazon")


def devsets_dir() -> Path:
    """``<repo>/../shared/devsets/linking`` (CI clones the repo next to ``shared/``); a
    worktree elsewhere finds it through $AUDITOR_DEVSETS or /work/shared."""
    import os

    for cand in (os.environ.get("AUDITOR_DEVSETS"), ROOT.parent / "shared/devsets/linking",
                 Path("/work/shared/devsets/linking")):
        if cand and (Path(cand) / "amazon_google" / "truth.csv").exists():
            return Path(cand)
    raise FileNotFoundError("linking devsets not found in ../shared/devsets/linking "
                            "(set AUDITOR_DEVSETS)")


def _money(s: str, cur: str = "USD"):
    from auditor.model import Money

    try:
        return Money(Decimal(s), cur) if s and Decimal(s) > 0 else None
    except (InvalidOperation, ValueError):
        return None


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def load_devset(name: str) -> tuple[dict, list, set[tuple[str, str]]]:
    """(master by SKU, listings, true pairs) of one development set."""
    from auditor.model import Listing, MasterRecord

    d = devsets_dir() / name
    master = {}
    for r in _rows(d / "master.csv"):
        master[r["sku"]] = MasterRecord(sku=r["sku"], title=r["title"] or None,
                                        description=r["description"] or None,
                                        brand=r["brand"] or None,
                                        price=_money(r["price"], r.get("currency") or "USD"))
    listings = [Listing(channel=name, key=r["listing_id"], fetched_at=NOW,
                        title=r["title"] or None, description=r["description"] or None,
                        brand=r["brand"] or None, price=_money(r["price"]))
                for r in _rows(d / "listings.csv")]
    truth = {(r["listing_id"], r["sku"]) for r in _rows(d / "truth.csv")}
    return master, listings, truth


def load_world(size: int) -> tuple[dict, list, set[tuple[str, str]]]:
    """The world's Meta channel with its keys stripped; truth = what the keys link to."""
    from auditor import plugins
    from auditor.config import load_config
    from auditor.connector import SourceContext
    from auditor.demo import config_text
    from auditor.linking import Linker
    from auditor.master import load_master
    from bench.world_audit import BASE_URL, OUT, _now, ensure_world

    world = ensure_world(size)
    work = OUT / f"link-{size}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.toml").write_text(config_text(BASE_URL).replace('"world/', f'"{world}/'))
    cfg = load_config(work / "config.toml")
    imp = load_master(cfg.master, cfg.base_dir)
    master = {r.sku: r for r in imp.records}
    ch = cfg.channel("meta")
    ctx = SourceContext(channel=ch, now=_now(world), http_options=cfg.http, store=None,
                        master=master)
    keyed = Linker(master, {"fuzzy": False})
    listings, truth = [], set()
    for li in plugins.connectors()[ch.type](ch).read(ctx):
        link = keyed.link(li)
        if link.sku:
            truth.add((li.key, link.sku))
        listings.append(dataclasses.replace(li, sku=None, gtin=None, mpn=None, url=None))
    return master, listings, truth


def prf(pred: Iterable[tuple[str, str]], truth: set[tuple[str, str]]) -> dict[str, Any]:
    """Pair-level precision, recall and F1 (as the devsets' score.py computes them)."""
    pred = set(pred)
    tp = len(pred & truth)
    p = tp / len(pred) if pred else 0.0
    r = tp / len(truth) if truth else 0.0
    return {"predicted": len(pred), "correct": tp, "precision": p, "recall": r,
            "f1": 2 * p * r / (p + r) if p + r else 0.0}


def predict(master: dict, listings: list, options: dict | None = None) -> tuple[list, float]:
    """Every listing's link as a run makes it (the whole channel at once), and seconds."""
    from auditor.linking import Linker

    t0 = time.perf_counter()
    linker = Linker(master, options or {})
    links = linker.link_all(listings) if hasattr(linker, "link_all") else \
        [linker.link(li) for li in listings]
    return links, time.perf_counter() - t0


def suggested_sku(link) -> str | None:
    """The SKU a suggested link proposes (None for other links)."""
    return link.candidates[0] if str(link.method) == "suggested" and link.candidates else None


def evaluate(name: str, size: int = 2000) -> dict[str, Any]:
    master, listings, truth = load_world(size) if name == "world" else load_devset(name)
    links, secs = predict(master, listings)
    confident = [(lk.listing_key, lk.sku) for lk in links if lk.sku]
    sugg = [(lk.listing_key, s) for lk in links if (s := suggested_sku(lk))]
    return {"set": name, "masters": len(master), "listings": len(listings),
            "true_pairs": len(truth), "seconds": secs, "confident": prf(confident, truth),
            "with_suggested": prf(confident + sugg, truth), "links": links, "truth": truth}


LINK_AT = (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2)
MARGINS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6)


def curve(name: str, link_at: Iterable[float] = LINK_AT, margins: Iterable[float] = MARGINS
          ) -> list[dict[str, Any]]:
    """Confident links as [linking] link_score and link_margin would make them, for each
    pair of values: the channel is ranked and assigned once (the assignment does not
    depend on them), then each listing's state is decided as ``matching.decide`` and
    ``matching.twin_links`` decide it. Per cell: links, precision, recall, F1, and the
    precision over the listings the truth has a pair for (``labelled_precision``: links of
    listings it has none for are counted false by the others, though the ground truths
    miss true matches)."""
    from auditor.linkbatch import assign_all, rank_all
    from auditor.linking import LINK_MARGIN, LINK_SCORE, SUGGEST_SCORE, Linker
    from auditor.matching import TIE, price_tells_apart

    master, listings, truth = load_devset(name)
    idx = Linker(master, {}).match_index
    ranks = [r for _why, r in rank_all(idx, listings, {}, 1)]
    decisions = assign_all(ranks, LINK_SCORE, SUGGEST_SCORE, LINK_MARGIN, (),
                           [li.key for li in listings])
    labelled = {lid for lid, _sku in truth}
    chosen = []  # (listing, master, score, lead over the next candidate, best twin's score)
    for li, ranked, d in zip(listings, ranks, decisions, strict=True):
        if d.index is None or (d.reason or "").startswith("its best match"):
            continue  # unlinked, or its best master went to another listing
        others = [o for o, j in ranked if j != d.index]
        lead = d.score - max(others, default=0.0)
        if any(abs(d.score - o) < TIE for o in others):
            lead = 0.0
        lp = float(li.price.amount) if li.price is not None else None
        twin = max((o for o, j in ranked if j != d.index and idx.twins(d.index, j) and
                    not price_tells_apart(lp, idx.prices[d.index], idx.prices[j])),
                   default=float("-inf"))
        chosen.append((li.key, idx.skus[d.index], d.score, lead, twin))
    out = []
    for la in link_at:
        for m in margins:
            pred = [(k, sku) for k, sku, sc, lead, twin in chosen
                    if sc >= la and lead >= m and twin < la]
            r = prf(pred, truth)
            lab = [p for p in pred if p[0] in labelled]
            r["labelled_precision"] = len(set(lab) & truth) / len(lab) if lab else 0.0
            out.append({"link_at": la, "margin": m, **r})
    return out


def curve_table(name: str, cells: list[dict[str, Any]]) -> str:
    """``curve`` as a markdown table: link_score down, link_margin across; each cell
    "P / R / F1 (P over labelled listings) n"."""
    margins = sorted({c["margin"] for c in cells})
    lines = [f"{name}: link_score \\ link_margin | " + " | ".join(f"{m:g}" for m in margins),
             "|".join(["---"] * (len(margins) + 1))]
    for la in sorted({c["link_at"] for c in cells}):
        row = [c for c in cells if c["link_at"] == la]
        lines.append(f"{la:g} | " + " | ".join(
            f"{c['precision']:.3f} / {c['recall']:.3f} / {c['f1']:.3f} "
            f"({c['labelled_precision']:.3f}) {c['predicted']}" for c in row))
    return "\n".join("| " + ln + " |" for ln in lines)


def rows_for(results: list[dict[str, Any]]) -> list[list[Any]]:
    out = []
    for r in results:
        c, s = r["confident"], r["with_suggested"]
        out.append([r["set"], r["masters"], r["listings"], r["true_pairs"],
                    c["predicted"], round(c["precision"], 3), round(c["recall"], 3),
                    round(c["f1"], 3), s["predicted"], round(s["precision"], 3),
                    round(s["recall"], 3), round(s["f1"], 3), round(r["seconds"], 2)])
    return out


COLUMNS = ["set", "masters", "listings", "true pairs", "confident links", "P", "R", "F1",
           "confident + suggested", "P", "R", "F1", "seconds"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=[*DEVSETS, "world"], action="append")
    ap.add_argument("--size", type=int, default=2000, help="world SKUs")
    ap.add_argument("--dump", type=Path, help="write listing_id,sku,state,score,evidence")
    ap.add_argument("--curve", action="store_true",
                    help="confident links' P / R / F1 for each link_score and link_margin "
                         "(devsets only)")
    a = ap.parse_args(argv)
    if a.curve:
        for name in a.set or DEVSETS:
            print(curve_table(name, curve(name)), end="\n\n")
        return 0
    results = [evaluate(s, a.size) for s in (a.set or [*DEVSETS, "world"])]
    from bench.common import table

    print(table("Linking", COLUMNS, rows_for(results)))
    if a.dump:
        with open(a.dump, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["set", "listing_id", "sku", "method", "confidence", "candidates", "true"])
            for r in results:
                true: dict[str, list[str]] = {}
                for lid, sku in r["truth"]:
                    true.setdefault(lid, []).append(sku)
                for lk in r["links"]:
                    w.writerow([r["set"], lk.listing_key, lk.sku or "", lk.method, lk.confidence,
                                "|".join(lk.candidates), "|".join(true.get(lk.listing_key, []))])
    return 0


if __name__ == "__main__":
    sys.exit(main())


# ----------------------------------------------------------------------------- scale

def write_unkeyed_channel(path: Path, n_listings: int, seed: int = 1) -> None:
    """A Google Merchant TSV of the first ``n_listings`` SKUs of the generated world's
    catalog, with no key at all (ids are the channel's own, no GTIN, MPN or link); a
    tenth of the titles upper-cased, a tenth with the brand in front."""
    from auditor.world.catalog import iter_products

    n = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write("id\ttitle\tbrand\tprice\tavailability\n")
        for p in iter_products(seed, n_listings, NOW):
            for v in p.variants:
                if n >= n_listings:
                    return
                title = v.title.upper() if n % 10 == 3 else \
                    f"{p.brand} {v.title}" if n % 10 == 7 else v.title
                f.write(f"CH-{n:07d}\t{title}\t{p.brand}\t{v.price} EUR\tin_stock\n")
                n += 1


def world_master(n_masters: int, seed: int = 1) -> dict:
    """The first ``n_masters`` SKUs of the same catalog as master records."""
    from auditor.model import MasterRecord, Money
    from auditor.world.catalog import iter_products

    out: dict = {}
    for p in iter_products(seed, n_masters, NOW):
        for v in p.variants:
            if len(out) >= n_masters:
                return out
            out[v.sku] = MasterRecord(sku=v.sku, title=v.title, brand=p.brand,
                                      price=Money(v.price, "EUR"))
    return out


def scale(n_listings: int, n_masters: int, workdir: Path, workers: int | None = None
          ) -> dict[str, Any]:
    """Parse the unkeyed channel (timed), then link it against the master (timed apart:
    index build, then every listing with the channel-wide assignment), ranked by
    ``workers`` processes ([linking] workers when None): link CPU seconds count this
    process and the forked ones."""
    import gc
    import resource

    from auditor import plugins
    from auditor.config import CHANNEL_OPTIONS, ChannelConfig
    from auditor.connector import SourceContext
    from auditor.linking import Linker
    from auditor.options import resolve

    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"unkeyed-{n_listings}.tsv"
    if not path.exists():
        write_unkeyed_channel(path, n_listings)
    master = world_master(n_masters)
    gc.collect()
    gc.freeze()
    conn = plugins.connectors()["google_merchant"]
    problems: list[str] = []
    opts = resolve(CHANNEL_OPTIONS + tuple(conn.options),
                   {"name": "unkeyed", "type": "google_merchant", "source": str(path),
                    "sku_field": "custom_label_0"}, "bench", problems)
    assert not problems, problems
    ch = ChannelConfig(name="unkeyed", type="google_merchant", source=str(path), schedule=None,
                       enabled=True, options=opts, checks={}, base_dir=path.parent)
    ctx = SourceContext(channel=ch, now=NOW)
    t0, c0 = time.perf_counter(), time.process_time()
    listings = list(conn(ch).read(ctx))
    parse, parse_cpu = time.perf_counter() - t0, time.process_time() - c0
    assert all(li.sku is None and li.gtin is None for li in listings[:1000])
    t0, c0 = time.perf_counter(), time.process_time()
    linker = Linker(master, {} if workers is None else {"workers": workers})
    linker.prepare()
    build, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    gc.freeze()

    def forked_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    k0 = forked_cpu()
    t0, c0 = time.perf_counter(), time.process_time()
    links = linker.link_all(listings)
    link, link_cpu = time.perf_counter() - t0, time.process_time() - c0
    forked = forked_cpu() - k0

    from collections import Counter

    states = Counter(lk.state for lk in links)
    truth = sum(1 for _li, lk in zip(listings, links, strict=True) if lk.sku is not None)
    right = 0
    skus = set(master)
    # listing n shows the n-th SKU of the catalog; the master holds the first n_masters
    order = list(master)
    for n, lk in enumerate(links):
        if lk.sku is not None and n < len(order) and lk.sku == order[n]:
            right += 1
    return {"listings": len(listings), "masters": len(master), "parse_s": parse,
            "parse_cpu_s": parse_cpu, "index_s": build, "index_cpu_s": build_cpu,
            "link_s": link, "link_cpu_s": link_cpu + forked, "link_forked_cpu_s": forked,
            "workers": linker.workers, "linked": states["linked"],
            "suggested": states["suggested"], "unlinked": states["unlinked"],
            "linked_right": right, "linked_total": truth,
            "expected_links": min(len(skus), len(listings)),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "forked_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
