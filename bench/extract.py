"""Extraction quality on real product pages: precision, recall and F1 per field.

    python -m bench extract                       # the shared dev set and the repo's own pages
    python -m bench extract --set shared          # one set only
    python -m bench extract --dump preds.jsonl    # also write the predictions

Two sets of saved pages with hand-checked labels are read:

* ``shared``: ``../shared/devsets/pages/`` next to the repository (CI clones the
  repository beside ``shared/``); found by ``AUDITOR_DEVSET_PAGES`` or by looking for
  ``shared/devsets/pages`` beside each parent directory of the repository. It is never
  copied into the repository.
* ``repo``: ``bench/pages/`` (our own copy, labelled by reading the visible buy box; see
  its README).

Each page is read by ``auditor.extract.extract`` exactly as the crawler reads it, and
scored the way the dev set's ``score.py`` scores: prices as Decimal amounts, SKUs without
case and whitespace, images by the basename of the URL path; a null label is not scored;
a wrong value counts as a false positive and a false negative. The same table is given
per structured-data kind (``jsonld``, ``microdata``, ``none`` ...), and the fields read
with low confidence are counted (they never raise a failed finding).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parent.parent
REPO_SET = ROOT / "bench" / "pages"
FIELDS = ("price", "currency", "availability", "sku", "main_image")


def shared_set() -> Path | None:
    """The shared dev set's directory, or None when it is not on this machine."""
    env = os.environ.get("AUDITOR_DEVSET_PAGES")
    if env:
        return Path(env) if (Path(env) / "labels.jsonl").is_file() else None
    for parent in ROOT.parents:  # <repo>/../shared first, then further up
        d = parent / "shared" / "devsets" / "pages"
        if (d / "labels.jsonl").is_file():
            return d
    return None


# ---------------------------------------------------------------------------- scoring
# The same normalisation as the dev set's score.py (kept in step with it by a test).

def norm_price(v: Any) -> Decimal | None:
    if v is None or v == "":
        return None
    s = re.sub(r"[^\d.,-]", "", str(v).strip())
    if "," in s and "." in s:
        s = s.replace(",", "") if s.rfind(".") > s.rfind(",") else \
            s.replace(".", "").replace(",", ".")
    elif "," in s:
        head, _, tail = s.rpartition(",")
        s = head.replace(",", "") + "." + tail if len(tail) in (1, 2) else s.replace(",", "")
    try:
        return Decimal(s).normalize()
    except InvalidOperation:
        return None


def norm_sku(v: Any) -> str | None:
    return None if v in (None, "") else re.sub(r"\s+", "", str(v)).lower()


def norm_img(v: Any) -> str | None:
    if v in (None, ""):
        return None
    path = urlparse(str(v).strip()).path
    return unquote(path.rstrip("/").rsplit("/", 1)[-1]).lower() or None


def norm_plain(v: Any) -> str | None:
    return None if v in (None, "") else str(v).strip()


NORM = {"price": norm_price, "currency": lambda v: (norm_plain(v) or "").upper() or None,
        "availability": norm_plain, "sku": norm_sku, "main_image": norm_img}


def score(gold: dict[str, dict], pred: dict[str, dict],
          ids: set[str] | None = None) -> dict[str, dict[str, float]]:
    """Per field: n (labelled pages), tp, fp, fn, precision, recall, f1."""
    out = {}
    for fld in FIELDS:
        tp = fp = fn = n = 0
        for pid, g in gold.items():
            if ids is not None and pid not in ids:
                continue
            gold_v = g.get(fld)
            # A label may list several acceptable values (the repo set's main image in
            # the sizes the page itself names); any one of them is a match.
            golds = {NORM[fld](v) for v in gold_v} - {None} if isinstance(gold_v, list) \
                else {NORM[fld](gold_v)} - {None}
            if not golds:
                continue
            n += 1
            pv = NORM[fld](pred.get(pid, {}).get(fld))
            if pv is None:
                fn += 1
            elif pv in golds:
                tp += 1
            else:
                fp += 1
                fn += 1
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        out[fld] = {"n": n, "tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r,
                    "f1": f1}
    return out


# ---------------------------------------------------------------------------- predicting

def load_labels(directory: Path) -> dict[str, dict]:
    with open(directory / "labels.jsonl", encoding="utf-8") as f:
        rows = (json.loads(line) for line in f if line.strip())
        return {str(o["id"]): o for o in rows}


def page_bytes(directory: Path, pid: str) -> bytes | None:
    """A page's raw bytes: ``NNN.html``, or ``NNN.html.gz`` (the repo set is gzipped)."""
    path = directory / f"{pid}.html"
    if path.is_file():
        return path.read_bytes()
    gz = directory / f"{pid}.html.gz"
    if gz.is_file():
        return gzip.decompress(gz.read_bytes())
    return None


def predict(directory: Path, labels: dict[str, dict]) -> Iterator[tuple[str, dict, float]]:
    """(id, prediction, seconds) for every labelled page, read as the crawler reads it."""
    from auditor.extract import extract

    for pid, g in labels.items():
        data = page_bytes(directory, pid)
        if data is None:
            continue
        url = g.get("url") or f"https://{g.get('domain') or 'shop.invalid'}/"
        t0 = time.process_time()  # CPU: other jobs on the machine do not count
        ex = extract(data, url)
        dt = time.process_time() - t0
        price = ex.sale_price if ex.sale_price is not None else ex.price
        yield pid, {"id": pid, "price": None if price is None else str(price),
                    "currency": ex.currency,
                    "availability": ex.availability.value if ex.availability else None,
                    "sku": ex.sku, "main_image": ex.images[0] if ex.images else None,
                    "confidence": dict(ex.confidence), "sources": dict(ex.sources)}, dt


def run_set(name: str, directory: Path, dump: Path | None = None) -> dict[str, Any]:
    """Predictions and scores for one set: overall, by structured-data kind, by language."""
    labels = load_labels(directory)
    preds: dict[str, dict] = {}
    times = []
    for pid, p, dt in predict(directory, labels):
        preds[pid] = p
        times.append(dt)
    if dump is not None:
        with dump.open("a", encoding="utf-8") as f:
            for p in preds.values():
                f.write(json.dumps({"set": name, **p}) + "\n")
    kinds: dict[str, set[str]] = {}
    for pid, g in labels.items():
        kinds.setdefault(g.get("structured") or "?", set()).add(pid)
    low = sum(1 for p in preds.values() for f, c in p["confidence"].items()
              if c < 0.5 and f in ("price", "availability", "sku", "images"))
    times.sort()
    return {"set": name, "dir": str(directory), "pages": len(preds),
            "domains": len({g.get("domain") for g in labels.values()}),
            "languages": sorted({g.get("language") for g in labels.values() if g.get("language")}),
            "all": score(labels, preds),
            "by_kind": {k: (len(ids), score(labels, preds, ids)) for k, ids in sorted(kinds.items())},
            "low_confidence_fields": low,
            "ms_median": 1000 * times[len(times) // 2] if times else 0.0,
            "ms_max": 1000 * times[-1] if times else 0.0,
            "preds": preds, "labels": labels}


def run_set_summary(name: str, directory: Path, dump: Path | None = None) -> dict[str, Any]:
    """``run_set`` without the per-page rows (for a child process to hand back)."""
    r = run_set(name, directory, dump)
    r.pop("preds")
    r.pop("labels")
    return r


_LD = re.compile(r"<script\b[^>]*ld\+json[^>]*>.*?</script\s*>", re.I | re.S)
_PRODUCT_META = re.compile(r"""<meta\b[^>]*(?:product:|og:price|og:availability)[^>]*>""", re.I)
_SCHEMA_ATTR = re.compile(r"""\s(?:itemscope|itemprop|itemtype|itemid|typeof|vocab)"""
                          r"""(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+))?""", re.I)


def strip_structured(html: bytes) -> bytes:
    """The page without its structured data (JSON-LD blocks, microdata and RDFa
    attributes, OpenGraph product meta tags; og:title and og:image stay, as on most
    pages): what the candidate reader alone gets from it."""
    text = html.decode("utf-8", "surrogateescape")
    text = _LD.sub("", text)
    text = _PRODUCT_META.sub("", text)
    text = _SCHEMA_ATTR.sub("", text)
    return text.encode("utf-8", "surrogateescape")


def run_stripped(directory: Path) -> dict[str, Any]:
    """Scores of the reader alone: every page of a set with its structured data removed."""
    from auditor.extract import extract

    labels = load_labels(directory)
    preds = {}
    for pid, g in labels.items():
        data = page_bytes(directory, pid)
        if data is None:
            continue
        url = g.get("url") or f"https://{g.get('domain') or 'shop.invalid'}/"
        ex = extract(strip_structured(data), url)
        price = ex.sale_price if ex.sale_price is not None else ex.price
        preds[pid] = {"price": None if price is None else str(price), "currency": ex.currency,
                      "availability": ex.availability.value if ex.availability else None,
                      "sku": ex.sku, "main_image": ex.images[0] if ex.images else None}
    kinds: dict[str, set[str]] = {}
    for pid, g in labels.items():
        kinds.setdefault(g.get("structured") or "?", set()).add(pid)
    return {"all": score(labels, preds),
            "by_kind": {k: (len(ids), score(labels, preds, ids)) for k, ids in sorted(kinds.items())}}
