"""Writers for every file channel, each in its native format, fed one product at a time.

Each writer is opened once, receives the views of one product after another
(``add``) and is closed at the end, so memory stays flat however large the world.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO
from xml.sax.saxutils import escape

from auditor.world.catalog import Product, fx, sale_price
from auditor.world.drift import View, master_attributes, shopify_product_id

G_NS = "http://base.google.com/ns/1.0"
GOOGLE_COLUMNS = ["id", "title", "description", "link", "image_link", "additional_image_link",
                  "price", "sale_price", "sale_price_effective_date", "availability", "condition",
                  "brand", "gtin", "mpn", "item_group_id", "color", "size", "material",
                  "product_weight", "product_length", "product_width", "product_height"]
META_COLUMNS = ["id", "title", "description", "availability", "condition", "price", "sale_price",
                "sale_price_effective_date", "link", "image_link", "additional_image_link",
                "image[0].url", "image[1].url", "image[2].url", "image[3].url", "brand", "gtin",
                "mpn", "item_group_id", "color", "size", "material",
                "quantity_to_sell_on_facebook"]
AMAZON_COLUMNS = ["item-name", "item-description", "listing-id", "seller-sku", "price",
                  "quantity", "open-date", "image-url", "item-is-marketplace", "product-id-type",
                  "zshop-shipping-fee", "item-note", "item-condition", "zshop-category1",
                  "zshop-browse-path", "zshop-storefront-feature", "asin1", "asin2", "asin3",
                  "will-ship-internationally", "expedited-shipping", "zshop-boldface",
                  "product-id", "bid-for-featured-placement", "add-delete", "pending-quantity",
                  "fulfillment-channel", "merchant-shipping-group", "status"]
POS_COLUMNS = ["SKU", "EAN", "Item Name", "Price", "Qty", "Store"]
MASTER_COLUMNS = ["sku", "group_id", "title", "description", "brand", "gtin", "mpn", "price",
                  "currency", "price_usd", "price_gbp", "sale_price", "sale_price_usd",
                  "sale_price_gbp", "sale_start", "sale_end", "quantity", "status", "url",
                  "color", "size", "material", "weight", "width", "height", "length",
                  "image_1", "image_2", "image_3", "image_4", "title@google", "title@amazon"]
GOOGLE_ATTRS = {"weight": "product_weight", "length": "product_length", "width": "product_width",
                "height": "product_height"}


def iso_minutes(dt: datetime) -> str:
    """Google's ISO 8601 form: 2025-03-01T00:00+0000."""
    return dt.strftime("%Y-%m-%dT%H:%M%z")


def interval(v: View) -> str:
    """sale_price_effective_date of a view, '' when the sale has no window."""
    if v.sale_price is None or v.sale_start is None or v.sale_end is None:
        return ""
    return f"{iso_minutes(v.sale_start)}/{iso_minutes(v.sale_end)}"


def amount(d: Decimal, comma: bool = False) -> str:
    """Two decimals, with a decimal comma when asked."""
    s = f"{d:.2f}"
    return s.replace(".", ",") if comma else s


def _clean(s: str) -> str:
    return " ".join(str(s).split())


class MasterWriter:
    """The PIM export (master CSV convention of auditor.master)."""

    def __init__(self, path: Path, base_url: str, previous: bool = False):
        self.f = open(path, "w", encoding="utf-8", newline="")
        self.w = csv.writer(self.f)
        self.w.writerow(MASTER_COLUMNS)
        self.base_url, self.previous = base_url, previous

    def add(self, p: Product, overrides: dict[str, dict[str, str]]) -> None:
        """One row per variant."""
        for v in p.variants:
            price = v.prev_price if self.previous else v.price
            sp = sale_price(v.price) if p.sale else None
            a = master_attributes(p, v)
            imgs = [self.base_url + u for u in v.images] + [""] * (4 - len(v.images))
            ov = overrides.get(v.sku, {})
            self.w.writerow([
                v.sku, p.group_id, v.prev_title if self.previous else v.title, p.description,
                p.brand, v.gtin, v.mpn, amount(price), "EUR", amount(fx(price, "USD")),
                amount(fx(price, "GBP")), amount(sp) if sp else "",
                amount(fx(sp, "USD")) if sp else "", amount(fx(sp, "GBP")) if sp else "",
                p.sale_start.isoformat() if p.sale_start else "",
                p.sale_end.isoformat() if p.sale_end else "", v.quantity, v.status,
                self.base_url + p.variant_path(v), a.get("color", ""), a.get("size", ""),
                a.get("material", ""), a.get("weight", ""), a.get("width", ""),
                a.get("height", ""), a.get("length", ""), *imgs,
                ov.get("google", ""), ov.get("amazon", "")])

    def close(self) -> None:
        """Flush and close the file."""
        self.f.close()


class GoogleWriter:
    """Google Merchant RSS 2.0 XML and the same items as TSV."""

    def __init__(self, xml_path: Path, tsv_path: Path, base_url: str):
        self.base_url = base_url
        self.x: TextIO = open(xml_path, "w", encoding="utf-8")
        self.x.write(f'<?xml version="1.0" encoding="UTF-8"?>\n<rss xmlns:g="{G_NS}" '
                     f'version="2.0">\n<channel>\n<title>Demo shop</title>\n'
                     f'<link>{escape(base_url)}/</link>\n<description>Product feed'
                     f'</description>\n')
        self.t = open(tsv_path, "w", encoding="utf-8", newline="")
        self.tw = csv.writer(self.t, delimiter="\t", lineterminator="\n",
                             quoting=csv.QUOTE_MINIMAL)
        self.tw.writerow(GOOGLE_COLUMNS)
        self.n = 0

    def fields(self, v: View) -> dict[str, str]:
        """The feed attributes of one view."""
        f = {"id": v.key, "title": v.title, "description": v.description,
             "link": self.base_url + v.path,
             "image_link": self.base_url + v.images[0] if v.images else "",
             "additional_image_link": ",".join(self.base_url + u for u in v.images[1:]),
             "price": f"{amount(v.price)} {v.currency}",
             "sale_price": f"{amount(v.sale_price)} {v.currency}" if v.sale_price else "",
             "sale_price_effective_date": interval(v),
             "availability": "in_stock" if v.in_stock else "out_of_stock",
             "condition": "new", "brand": v.brand, "gtin": v.gtin or "", "mpn": v.mpn,
             "item_group_id": v.group_id}
        for k, val in v.attributes.items():
            f[GOOGLE_ATTRS.get(k, k)] = val
        return f

    def add(self, views: list[View]) -> None:
        """Write the items of one product."""
        for v in views:
            f = self.fields(v)
            self.n += 1
            out = ["<item>"]
            for k in GOOGLE_COLUMNS:
                val = f.get(k, "")
                if not val:
                    continue
                if k == "additional_image_link":
                    out += [f"<g:{k}>{escape(u)}</g:{k}>" for u in val.split(",")]
                elif k in ("title", "link") and self.n % 3 == 0:
                    out.append(f"<{k}>{escape(val)}</{k}>")  # real feeds mix both spellings
                else:
                    out.append(f"<g:{k}>{escape(val)}</g:{k}>")
            out.append("</item>\n")
            self.x.write("".join(out))
            self.tw.writerow([_clean(f.get(k, "")) for k in GOOGLE_COLUMNS])

    def close(self) -> None:
        """End the RSS document and close both files."""
        self.x.write("</channel>\n</rss>\n")
        self.x.close()
        self.t.close()


class MetaWriter:
    """Meta catalog CSV; some rows give images as flattened image[n].url columns."""

    def __init__(self, path: Path, base_url: str):
        self.base_url = base_url
        self.f = open(path, "w", encoding="utf-8", newline="")
        self.w = csv.writer(self.f)
        self.w.writerow(META_COLUMNS)
        self.n = 0

    def add(self, views: list[View]) -> None:
        """Write the rows of one product."""
        for v in views:
            self.n += 1
            urls = [self.base_url + u for u in v.images]
            flat = self.n % 4 == 0
            row = {"id": v.key, "title": v.title, "description": v.description,
                   "availability": "in stock" if v.in_stock else "out of stock",
                   "condition": "new", "price": f"{amount(v.price)} {v.currency}",
                   "sale_price": f"{amount(v.sale_price)} {v.currency}" if v.sale_price else "",
                   "sale_price_effective_date": interval(v), "link": self.base_url + v.path,
                   "brand": v.brand, "gtin": v.gtin or "", "mpn": v.mpn,
                   "item_group_id": v.group_id, "quantity_to_sell_on_facebook": v.quantity,
                   **{k: val for k, val in v.attributes.items()}}
            if flat:
                for i, u in enumerate(urls[:4]):
                    row[f"image[{i}].url"] = u
            elif urls:
                row["image_link"] = urls[0]
                row["additional_image_link"] = ",".join(urls[1:])
            self.w.writerow([row.get(k, "") for k in META_COLUMNS])

    def close(self) -> None:
        """Flush and close the file."""
        self.f.close()


class AmazonWriter:
    """Seller Central 'All Listings' report (GET_MERCHANT_LISTINGS_ALL_DATA), tab-separated."""

    def __init__(self, path: Path, base_url: str, now: datetime):
        self.base_url = base_url
        self.f = open(path, "w", encoding="utf-8", newline="")
        self.w = csv.writer(self.f, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE,
                            escapechar="\\")
        self.w.writerow(AMAZON_COLUMNS)
        self.open_date = now.strftime("%Y-%m-%d %H:%M:%S UTC")

    def add(self, views: list[View], index: int) -> None:
        """Write the rows of product ``index``."""
        for n, v in enumerate(views):
            asin = f"B0{(index * 37 + n) % 10**8:08d}"
            row = {"item-name": _clean(v.title), "item-description": _clean(v.description),
                   "listing-id": f"{index:07d}{n:02d}AMZ", "seller-sku": v.key,
                   "price": amount(v.shown_price), "quantity": str(v.quantity),
                   "open-date": self.open_date,
                   "image-url": self.base_url + v.images[0] if v.images else "",
                   "item-is-marketplace": "y", "product-id-type": "4" if v.gtin else "1",
                   "item-condition": "11", "asin1": asin,
                   "will-ship-internationally": "1", "product-id": v.gtin or asin,
                   "fulfillment-channel": "DEFAULT", "merchant-shipping-group": "Standard",
                   "status": "Active"}
            self.w.writerow([row.get(k, "") for k in AMAZON_COLUMNS])

    def close(self) -> None:
        """Flush and close the file."""
        self.f.close()


class PosWriter:
    """One store's POS export: ';'-delimited, Windows-1252, VAT-inclusive prices."""

    def __init__(self, path: Path, store: str, decimal_comma: bool):
        self.f = open(path, "w", encoding="cp1252", errors="replace", newline="")
        self.w = csv.writer(self.f, delimiter=";", lineterminator="\r\n")
        self.w.writerow(POS_COLUMNS)
        self.store, self.comma = store, decimal_comma

    def add(self, views: list[View]) -> None:
        """Write the rows of one product."""
        for v in views:
            self.w.writerow([v.key, v.gtin or "", v.title, amount(v.shown_price, self.comma),
                             v.quantity, self.store])

    def close(self) -> None:
        """Flush and close the file."""
        self.f.close()


def shopify_product(views: list[View], base_url: str, pid: int, group_title: str | None,
                    product_type: str, grams: int, updated: str) -> dict:
    """One product of /products.json from the variant views the shop shows.

    ``group_title`` is the product title of a multi-variant product; a single-variant
    product (``None``) takes its variant's title and Shopify's "Default Title" option.
    """
    first = views[0]
    single = group_title is None
    variants: list[Any] = []
    images: dict[str, Any] = {}
    order: list[Any] = []
    for pos, v in enumerate(views, 1):
        vid = int(v.key)
        for n, u in enumerate(v.images):
            src = base_url + u
            if src not in images:
                images[src] = []
                order.append(src)
            if n == 0:
                images[src].append(vid)
        opts = ["Default Title"] if single else [x for x in (v.colour, v.size) if x]
        variants.append({
            "id": vid, "product_id": pid, "title": " / ".join(opts), "sku": v.sku,
            "option1": opts[0], "option2": opts[1] if len(opts) > 1 else None, "option3": None,
            "requires_shipping": True, "taxable": True, "available": v.in_stock,
            "price": amount(v.shown_price),
            "compare_at_price": amount(v.price) if v.sale_price is not None else None,
            "grams": grams, "position": pos,
            "created_at": "2024-03-01T10:00:00+01:00", "updated_at": updated})
    if single:
        options = [{"name": "Title", "position": 1, "values": ["Default Title"]}]
    else:
        options = [{"name": "Color", "position": 1,
                    "values": list(dict.fromkeys(v.colour for v in views))}]
        if any(v.size for v in views):
            options.append({"name": "Size", "position": 2,
                            "values": list(dict.fromkeys(v.size for v in views if v.size))})
    handle = first.path.split("/products/", 1)[1].split("?")[0]
    return {"id": pid, "title": first.title if single else group_title, "handle": handle,
            "body_html": f"<p>{escape(first.description)}</p>", "vendor": first.brand,
            "product_type": product_type, "tags": [],
            "published_at": "2024-03-01T10:00:00+01:00", "updated_at": updated,
            "variants": variants,
            "images": [{"id": pid * 1000 + i, "product_id": pid, "position": i, "src": src,
                        "variant_ids": images[src], "width": 800, "height": 600}
                       for i, src in enumerate(order, 1)],
            "options": options}


class ShopifyWriter:
    """/products.json pages of ``page_size`` products each."""

    def __init__(self, folder: Path, base_url: str, page_size: int = 250):
        self.folder, self.base_url, self.page_size = folder, base_url, page_size
        folder.mkdir(parents=True, exist_ok=True)
        self.buf: list[dict] = []
        self.pages: list[str] = []

    def add(self, p: Product, views: list[View]) -> None:
        """Add one product (and any orphan products planted with it)."""
        real = [v for v in views if not v.ghost]
        updated = p.lastmod.isoformat()
        if real:
            self.buf.append(shopify_product(
                real, self.base_url, shopify_product_id(p.index),
                None if len(p.variants) == 1 else p.base_title, p.category.title(),
                int(p.weight_kg * 1000), updated))
        for j, g in enumerate(v for v in views if v.ghost):
            self.buf.append(shopify_product([g], self.base_url,
                                            shopify_product_id(p.index) + 50 + j, None, "Misc",
                                            500, updated))
        while len(self.buf) >= self.page_size:
            self._write(self.buf[: self.page_size])
            self.buf = self.buf[self.page_size:]

    def _write(self, chunk: list[dict]) -> None:
        name = f"products-{len(self.pages) + 1:04d}.json"
        (self.folder / name).write_text(json.dumps({"products": chunk}, ensure_ascii=False),
                                        encoding="utf-8")
        self.pages.append(name)

    def close(self) -> None:
        """Write the last, partly filled page."""
        if self.buf:
            self._write(self.buf)
            self.buf = []


class SitemapWriter:
    """sitemap.xml index with gzip parts of ``per_file`` URLs, each with lastmod."""

    def __init__(self, folder: Path, base_url: str, per_file: int = 50_000):
        self.folder, self.base_url, self.per_file = folder, base_url, per_file
        (folder / "sitemaps").mkdir(parents=True, exist_ok=True)
        self.parts: list[tuple[str, str]] = []
        self.gz: io.TextIOWrapper | None = None
        self.count = 0
        self.lastmod = ""

    def add(self, path: str, lastmod: datetime) -> None:
        """One URL (a path on the shop) with its lastmod."""
        if self.gz is None or self.count >= self.per_file:
            self._close_part()
            name = f"sitemaps/products-{len(self.parts) + 1:04d}.xml.gz"
            # mtime=0: the gzip header carries no timestamp, so the same seed gives the same bytes
            raw = gzip.GzipFile(self.folder / name, "wb", compresslevel=5, mtime=0)
            self.gz = io.TextIOWrapper(raw, encoding="utf-8")
            self.gz.write('<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns='
                          '"http://www.sitemaps.org/schemas/sitemap/0.9">\n')
            self.parts.append((name, ""))
            self.count = 0
        lm = lastmod.strftime("%Y-%m-%dT%H:%M:%S+00:00")
        assert self.gz is not None  # opened above
        self.gz.write(f"<url><loc>{escape(self.base_url + path)}</loc><lastmod>{lm}</lastmod>"
                      f"</url>\n")
        self.lastmod = max(self.lastmod, lm)
        self.count += 1

    def _close_part(self) -> None:
        if self.gz is not None:
            self.gz.write("</urlset>\n")
            self.gz.close()
            name, _ = self.parts[-1]
            self.parts[-1] = (name, self.lastmod)
            self.lastmod = ""
            self.gz = None

    def close(self) -> None:
        """Close the last part and write the index."""
        self._close_part()
        items = "".join(f"<sitemap><loc>{escape(self.base_url)}/{n}</loc><lastmod>{lm}</lastmod>"
                        f"</sitemap>\n" for n, lm in self.parts)
        (self.folder / "sitemap.xml").write_text(
            '<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex xmlns='
            f'"http://www.sitemaps.org/schemas/sitemap/0.9">\n{items}</sitemapindex>\n',
            encoding="utf-8")


def robots_txt(base_url: str, crawl_delay: float | None) -> str:
    """The shop's robots.txt: cart and search disallowed, a crawl delay, the sitemap."""
    lines = ["User-agent: *", "Disallow: /cart", "Disallow: /checkout", "Disallow: /search",
             "Allow: /"]
    if crawl_delay is not None:
        lines.append(f"Crawl-delay: {crawl_delay:g}")
    lines += ["", "User-agent: BadBot", "Disallow: /", "", f"Sitemap: {base_url}/sitemap.xml", ""]
    return "\n".join(lines)
