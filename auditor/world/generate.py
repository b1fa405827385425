"""Generate a benchmark world: master, channel files, labels, all from one seed.

    from auditor.world.generate import generate_world
    m = generate_world(Path("world"), size=10_000, seed=7)

Products are generated and written one at a time (every writer streams), so a
world of a million SKUs needs little memory. Web pages are not written: the
shop server (auditor.world.shop) renders them on demand from the same seed.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from auditor.world import feeds
from auditor.world.catalog import Product, cached_product, iter_products, product_index_of
from auditor.world.drift import CHANNELS, ChannelPlan, overrides_for, plan

DEFAULT_BASE_URL = "http://shop.local"


@dataclass
class Manifest:
    """What was generated, where, and from which parameters (also manifest.json)."""

    seed: int
    size: int
    now: str
    base_url: str
    drift_rate: float
    benign_rate: float
    products: int = 0
    last_variants: int = 0  # variants of the last product (it may be cut short)
    files: dict[str, str] = field(default_factory=dict)  # role -> path relative to the world
    channels: list[dict] = field(default_factory=list)
    labels: int = 0
    benign: int = 0
    shopify_page_size: int = 250  # products per generated products.json page

    @property
    def now_dt(self) -> datetime:
        """``now`` as an aware datetime."""
        return datetime.fromisoformat(self.now)

    def write(self, folder: Path) -> None:
        """Save as manifest.json in ``folder``."""
        (folder / "manifest.json").write_text(json.dumps(asdict(self), indent=2) + "\n",
                                              encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "Manifest":
        """Read manifest.json from a world folder."""
        return cls(**json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8")))


class World:
    """A generated world re-opened from its manifest: products and plans on demand."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.manifest = Manifest.load(self.folder)
        self.now = self.manifest.now_dt

    def product(self, index: int) -> Product | None:
        """Product ``index`` exactly as generated (None outside the world)."""
        m = self.manifest
        if index < 0 or index >= m.products:
            return None
        cut = m.last_variants if index == m.products - 1 else None
        return cached_product(m.seed, index, self.now, cut)

    def plan(self, p: Product, channel: str) -> ChannelPlan:
        """One channel's listings of ``p`` (with drift), as in the generated files."""
        m = self.manifest
        return plan(m.seed, p, self.now, m.drift_rate, m.benign_rate, [channel])[channel]

    def product_of_sku(self, sku: str) -> Product | None:
        """The product a SKU belongs to."""
        i = product_index_of(sku)
        return None if i is None else self.product(i)

    def products(self) -> Iterator[Product]:
        """Every product in order."""
        for i in range(self.manifest.products):
            p = self.product(i)
            if p is not None:
                yield p

    def path(self, role: str) -> Path:
        """Absolute path of a generated file by its role in the manifest."""
        return self.folder / self.manifest.files[role]


LABEL_COLUMNS = ["channel", "sku", "listing_key", "check", "field", "kind"]
BENIGN_COLUMNS = ["channel", "sku", "listing_key", "field", "kind"]


def generate_world(out_dir: Path, size: int = 200, seed: int = 1, drift_rate: float = 0.08,
                   benign_rate: float = 0.15, now: datetime | None = None,
                   base_url: str = DEFAULT_BASE_URL, sitemap_urls_per_file: int = 50_000,
                   shopify_page_size: int = 250) -> Manifest:
    """Write a world of ``size`` SKUs into ``out_dir``; same arguments, same bytes.

    ``now`` defaults to the current hour (UTC); pass it for reproducible files.
    ``base_url`` is where the shop will be served: master URLs, feed links and
    image URLs point there.
    """
    if not 1 <= size <= 10_000_000:
        raise ValueError(f"size must be between 1 and 10,000,000 SKUs, got {size}")
    out = Path(out_dir)
    (out / "feeds").mkdir(parents=True, exist_ok=True)
    (out / "site").mkdir(parents=True, exist_ok=True)
    now = (now or datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0))
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    base_url = base_url.rstrip("/")
    m = Manifest(seed=seed, size=size, now=now.isoformat(), base_url=base_url,
                 drift_rate=drift_rate, benign_rate=benign_rate,
                 shopify_page_size=shopify_page_size)
    files = {"master": "master.csv", "master_previous": "master_previous.csv",
             "labels": "labels.csv", "benign": "benign.csv", "google_xml": "feeds/google.xml",
             "google_tsv": "feeds/google.tsv", "meta": "feeds/meta.csv",
             "amazon": "feeds/amazon.tsv", "shopify": "feeds/shopify",
             "pos-berlin": "feeds/pos-berlin.csv", "pos-munich": "feeds/pos-munich.csv",
             "sitemap": "site/sitemap.xml", "robots": "site/robots.txt"}
    master = feeds.MasterWriter(out / files["master"], base_url)
    previous = feeds.MasterWriter(out / files["master_previous"], base_url, previous=True)
    google = feeds.GoogleWriter(out / files["google_xml"], out / files["google_tsv"], base_url)
    meta = feeds.MetaWriter(out / files["meta"], base_url)
    amazon = feeds.AmazonWriter(out / files["amazon"], base_url, now)
    shopify = feeds.ShopifyWriter(out / files["shopify"], base_url, shopify_page_size)
    pos = {name: feeds.PosWriter(out / files[name], name.split("-")[1].title(),
                                 CHANNELS[name].decimal_comma)
           for name in ("pos-berlin", "pos-munich")}
    sitemap = feeds.SitemapWriter(out / "site", base_url, sitemap_urls_per_file)
    with open(out / files["labels"], "w", encoding="utf-8", newline="") as lf, \
            open(out / files["benign"], "w", encoding="utf-8", newline="") as bf:
        labels, benign = csv.writer(lf), csv.writer(bf)
        labels.writerow(LABEL_COLUMNS)
        benign.writerow(BENIGN_COLUMNS)
        for p in iter_products(seed, size, now):
            m.products += 1
            m.last_variants = len(p.variants)
            ov = overrides_for(p)
            master.add(p, ov)
            previous.add(p, ov)
            plans = plan(seed, p, now, drift_rate, benign_rate)
            google.add(plans["google"].views)
            meta.add(plans["meta"].views)
            amazon.add(plans["amazon"].views, p.index)
            shopify.add(p, plans["shopify"].views)
            for name, w in pos.items():
                w.add(plans[name].views)
            for path in site_paths(p, plans["site"]):
                sitemap.add(path, p.lastmod)
            for cp in plans.values():
                for lab in cp.labels:
                    labels.writerow([lab.channel, lab.sku, lab.listing_key, lab.check, lab.field,
                                     lab.kind])
                for b in cp.benign:
                    benign.writerow([b.channel, b.sku, b.listing_key, b.field, b.kind])
                m.labels += len(cp.labels)
                m.benign += len(cp.benign)
    writers: list[Any] = [master, previous, google, meta, amazon, shopify, sitemap, *pos.values()]
    for writer in writers:
        writer.close()
    (out / files["robots"]).write_text(feeds.robots_txt(base_url, 1.0), encoding="utf-8")
    files["shopify_pages"] = ",".join(f"feeds/shopify/{n}" for n in shopify.pages)
    m.files = files
    m.channels = [channel_entry(name, files, base_url) for name in CHANNELS]
    m.write(out)
    return m


def site_paths(p: Product, site: ChannelPlan) -> list[str]:
    """The sitemap URLs (paths) of a product: its group page or one per shown variant."""
    real = [v for v in site.views if not v.ghost]
    out = []
    if p.page_kind == "group":
        if real:
            out.append(p.path)
    else:
        out += [v.path for v in real]
    out += [v.path for v in site.views if v.ghost]
    return out


def channel_entry(name: str, files: dict[str, str], base_url: str) -> dict:
    """How the manifest describes one channel: type, format, where to read it."""
    spec = CHANNELS[name]
    e: dict[str, Any] = {"name": name, "type": spec.type, "currency": spec.currency}
    if name == "site":
        e.update(url=f"{base_url}/sitemap.xml", format="html")
    elif name == "google":
        e.update(path=files["google_xml"], tsv=files["google_tsv"], format="rss",
                 url=f"{base_url}/feeds/google.xml")
    elif name == "shopify":
        e.update(path=files["shopify"], format="products.json", url=f"{base_url}/products.json")
    elif name.startswith("pos-"):
        e.update(path=files[name], format="csv", delimiter=";", encoding="cp1252",
                 decimal_separator="," if spec.decimal_comma else ".", tax_inclusive=True,
                 vat_rate=0.20, url=f"{base_url}/{files[name]}")
    else:
        e.update(path=files[name], format="tsv" if name == "amazon" else "csv",
                 url=f"{base_url}/{files[name]}")
    return e
