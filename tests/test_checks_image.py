"""The image check on prepared signatures, and end to end through run_audit."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from auditor import images as im
from auditor import plugins
from auditor.check import CheckContext
from auditor.config import load_config
from auditor.model import Listing, MasterRecord, Outcome, Severity
from auditor.runner import run_audit
from auditor.storage import Store, open_store
from tests.imageserver import ImageServer, Route

FIX = Path(__file__).parent / "fixtures" / "images"
NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


def sig(name: str) -> im.ImageSignature:
    return im.signature_from_bytes((FIX / name).read_bytes())


RED, RED_SMALL, BLUE, MUG = (sig("original.jpg"), sig("resize_50.jpg"),
                             sig("variant_blue.jpg"), sig("other_product.jpg"))


def view(history: bool = True) -> im.ImageView:
    v = im.ImageView(
        results={"m/red.jpg": RED, "m/blue.jpg": BLUE, "m/mug.jpg": MUG,
                 "https://cdn.test/c/red-small.jpg": RED_SMALL, "https://cdn.test/c/blue.jpg": BLUE, "https://cdn.test/c/mug.jpg": MUG,
                 "https://cdn.test/c/broken.jpg": "corrupt or truncated image: image file is truncated",
                 "m/gone.jpg": "HTTP 404"},
        assets={"TEE-RED": ("m/red.jpg",), "TEE-BLUE": ("m/blue.jpg",),
                "TEE-RED-2": ("m/red.jpg", "m/mug.jpg"), "LOST": ("m/gone.jpg",)},
        history={"TEE-RED": [("sha256:" + MUG.sha256, "2026-10-01T00:00:00+00:00", 0)]}
        if history else {},
        signatures={MUG.sha256: MUG})
    v.primaries.add("TEE-RED", RED)
    v.primaries.add("TEE-BLUE", BLUE)
    return v


VIEW = view()


def ctx(v: im.ImageView | None = VIEW, **options) -> CheckContext:
    spec = plugins.checks()["image"]
    opts = {o.name: o.default for o in spec.all_options} | options
    c = CheckContext("image", "google", opts, NOW)
    if v is not None:
        c.extras["images"] = v
    return c


def run(sku: str, images: tuple[str, ...], c: CheckContext | None = None):
    m = MasterRecord(sku, title="Tee")
    li = Listing("google", sku, NOW, sku=sku, images=images)
    return plugins.checks()["image"].fn(m, li, c or ctx())


@pytest.mark.parametrize("sku,images,outcome,severity,message", [
    ("TEE-RED", ("https://cdn.test/c/red-small.jpg",), Outcome.PASSED, Severity.INFO, ""),
    ("TEE-RED", ("https://cdn.test/c/blue.jpg",), Outcome.FAILED, Severity.MAJOR,
     "wrong image: shows the image of SKU TEE-BLUE"),
    ("TEE-RED", (), Outcome.FAILED, Severity.MAJOR, "missing image"),
    ("TEE-RED", ("https://cdn.test/c/broken.jpg",), Outcome.NOT_EVALUATED, Severity.INFO, "could not be used"),
    ("LOST", ("https://cdn.test/c/red-small.jpg",), Outcome.NOT_EVALUATED, Severity.INFO, "HTTP 404"),
    ("TEE-RED", ("https://cdn.test/c/mug.jpg",), Outcome.FAILED, Severity.MAJOR,
     "outdated image: shows the master's former primary, replaced 2026-10-01"),
    ("TEE-RED-2", ("https://cdn.test/c/mug.jpg",), Outcome.WARN, Severity.MINOR,
     "primary image is the master's image 2"),
])
def test_primary_image(sku, images, outcome, severity, message):
    [f] = run(sku, images)
    assert (f.outcome, f.severity, f.field) == (outcome, severity, "image")
    assert message in f.message
    if outcome is Outcome.FAILED and images:
        assert f.details["vs_master_primary"]["shape_distance"] >= 0
        assert "colour_distance" in f.details["vs_master_primary"]


def test_wrong_image_of_no_known_sku_names_the_distances():
    [f] = run("TEE-RED", ("https://cdn.test/c/mug.jpg",), ctx(view(history=False)))
    assert f.outcome is Outcome.FAILED and "does not match the master's primary" in f.message
    d = f.details["vs_master_primary"]
    assert d["shape_distance"] > im.MAX_SHAPE
    assert "shows_sku" not in f.details


def test_colour_swap_names_the_other_sku_with_its_distances():
    [f] = run("TEE-BLUE", ("https://cdn.test/c/red-small.jpg",))
    assert f.details["shows_sku"] == "TEE-RED"
    assert f.details["vs_other_sku"]["colour_distance"] <= im.MAX_COLOUR
    assert f.details["vs_master_primary"]["colour_distance"] > im.MAX_COLOUR


@pytest.mark.parametrize("min_width,outcome", [(0, Outcome.PASSED), (150, Outcome.PASSED),
                                               (151, Outcome.FAILED)])
def test_minimum_resolution(min_width, outcome):
    [f] = run("TEE-RED", ("https://cdn.test/c/red-small.jpg",), ctx(min_width=min_width))
    assert f.outcome is outcome
    if outcome is Outcome.FAILED:
        assert "below the channel's minimum resolution: 150x110" in f.message
        assert f.details["width"] == 150


@pytest.mark.parametrize("mode,sku,images,outcome,message", [
    ("subset", "TEE-RED", ("https://cdn.test/c/red-small.jpg", "https://cdn.test/c/red-small.jpg"), Outcome.PASSED, ""),
    ("subset", "TEE-RED", ("https://cdn.test/c/red-small.jpg", "https://cdn.test/c/blue.jpg"), Outcome.WARN,
     "1 additional image(s) match no master image"),
    ("subset", "TEE-RED-2", ("https://cdn.test/c/red-small.jpg", "https://cdn.test/c/red-small.jpg"), Outcome.PASSED, ""),
    ("set", "TEE-RED-2", ("https://cdn.test/c/red-small.jpg", "https://cdn.test/c/red-small.jpg"), Outcome.WARN,
     "1 master image(s) not shown"),
    ("set", "TEE-RED-2", ("https://cdn.test/c/red-small.jpg", "https://cdn.test/c/mug.jpg"), Outcome.PASSED, ""),
    ("subset", "TEE-RED", ("https://cdn.test/c/red-small.jpg", "https://cdn.test/c/broken.jpg"), Outcome.NOT_EVALUATED,
     "could not be used"),
])
def test_additional_images_as_a_set(mode, sku, images, outcome, message):
    fs = run(sku, images, ctx(additional_images=mode))
    [f] = [f for f in fs if f.field == "additional_images"]
    assert f.outcome is outcome and message in f.message


def test_additional_images_off():
    fs = run("TEE-RED", ("https://cdn.test/c/red-small.jpg", "https://cdn.test/c/blue.jpg"), ctx(additional_images="off"))
    assert [f.field for f in fs] == ["image"]


@pytest.mark.parametrize("c,images,expected", [
    (ctx(None), ("https://cdn.test/c/red-small.jpg",), Outcome.NOT_EVALUATED),  # preparation did not run
    (ctx(), ("https://cdn.test/c/red-small.jpg",), None),  # the master has no image: nothing to compare
])
def test_nothing_to_compare(c, images, expected):
    fs = run("NO-ASSETS", images, c)
    assert [f.outcome for f in fs] == ([expected] if expected else [])


# --------------------------------------------------------------------------- end to end

FEED = """<?xml version="1.0"?>
<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0"><channel>
{items}
</channel></rss>"""


def item(sku: str, image: str | None) -> str:
    img = f"<g:image_link>{image}</g:image_link>" if image else ""
    return (f"<item><g:id>{sku}</g:id><g:title>Tee {sku}</g:title>"
            f"<g:price>10.00 EUR</g:price>{img}</item>")


def world(tmp_path: Path, server: ImageServer, image_check: str = "") -> Path:
    for path, name in (("/m/red.jpg", "original.jpg"), ("/m/blue.jpg", "variant_blue.jpg"),
                       ("/m/mug.jpg", "other_product.jpg"), ("/c/red-small.jpg", "resize_50.jpg"),
                       ("/c/red.webp", "webp.webp")):
        server.routes[path] = Route((FIX / name).read_bytes(),
                                    "image/webp" if name.endswith("webp") else "image/jpeg")
    (tmp_path / "master.csv").write_text(
        "sku,title,price,currency,image_1\n"
        f"TEE-RED,Tee red,10.00,EUR,{server.url('/m/red.jpg')}\n"
        f"TEE-BLUE,Tee blue,10.00,EUR,{server.url('/m/blue.jpg')}\n"
        f"MUG,Mug,10.00,EUR,{server.url('/m/mug.jpg')}\n")
    (tmp_path / "feed.xml").write_text(FEED.format(items="\n".join([
        item("TEE-RED", server.url("/c/red-small.jpg")),   # right image, resized
        item("TEE-BLUE", server.url("/c/red.webp")),       # the red variant's image
        item("MUG", None),                                 # no image at all
    ])))
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"""
[store]
path = "audit.db"
[http]
allow_private = true
retries = 0
[checks.image]
revalidate_hours = 0.0  # every run asks the image server (conditionally)
[master]
type = "csv"
source = "master.csv"
[[channels]]
name = "google"
type = "google_merchant"
source = "feed.xml"
{image_check}
""")
    return cfg


def image_findings(store: Store) -> dict[str, tuple[str, str]]:
    return {f.sku: (f.outcome, f.message)
            for f in store.findings(state="open", check="image")}


def test_run_audit_finds_swapped_and_missing_images(tmp_path, image_server: ImageServer):
    cfg = load_config(world(tmp_path, image_server))
    store = open_store(cfg.store_url)
    report = run_audit(cfg, store, now=NOW)
    got = image_findings(store)
    assert got == {
        "TEE-BLUE": ("failed", "wrong image: shows the image of SKU TEE-RED"),
        "MUG": ("failed", "missing image: the listing shows no image where the master has 1"),
    }
    [ch] = report.channels
    assert ch.outcomes["image"]["passed"] == 1
    # A second run downloads nothing again: every image answers 304.
    before = len(image_server.log)
    run_audit(cfg, store, now=NOW)
    again = image_server.log[before:]
    assert again and all(status == 304 for _, status in again)
    assert image_findings(store) == got
    store.close()


def test_replaced_master_image_is_recognised_as_outdated(tmp_path, image_server: ImageServer):
    path = world(tmp_path, image_server)
    cfg = load_config(path)
    store = open_store(cfg.store_url)
    run_audit(cfg, store, now=NOW)
    # The DAM replaces MUG's photo under the same URL; the channel keeps the old one.
    image_server.routes["/m/mug.jpg"] = Route((FIX / "badge_corner.jpg").read_bytes())
    image_server.routes["/c/old-mug.jpg"] = Route((FIX / "other_product.jpg").read_bytes())
    feed = (tmp_path / "feed.xml").read_text()
    (tmp_path / "feed.xml").write_text(feed.replace(
        item("MUG", None), item("MUG", image_server.url("/c/old-mug.jpg"))))
    run_audit(cfg, store, now=datetime(2026, 11, 2, tzinfo=timezone.utc))
    outcome, message = image_findings(store)["MUG"]
    assert outcome == "failed"
    assert message == "outdated image: shows the master's former primary, replaced 2026-11-02"
    store.close()


def test_channel_without_the_image_check_fetches_nothing(tmp_path, image_server: ImageServer):
    cfg = load_config(world(tmp_path, image_server, "checks.image.enabled = false"))
    store = open_store(cfg.store_url)
    report = run_audit(cfg, store, now=NOW)
    assert image_server.log == []
    assert "image" not in report.channels[0].outcomes
    store.close()


def test_unfetchable_images_leave_the_comparison_not_evaluated(tmp_path,
                                                               image_server: ImageServer):
    cfg_path = world(tmp_path, image_server)
    image_server.routes["/c/red-small.jpg"] = Route(b"<html>blocked</html>", "text/html")
    del image_server.routes["/c/red.webp"]
    cfg = load_config(cfg_path)
    store = open_store(cfg.store_url)
    report = run_audit(cfg, store, now=NOW)
    assert report.channels[0].status.value == "complete"
    got = image_findings(store)
    assert got["TEE-RED"][0] == "not_evaluated" and "content-type text/html" in got["TEE-RED"][1]
    assert got["TEE-BLUE"][0] == "not_evaluated" and "HTTP 404" in got["TEE-BLUE"][1]
    store.close()


@pytest.mark.parametrize("index_all,spare_fetched", [(True, 1), (False, 0)])
def test_index_all_masters(tmp_path, image_server: ImageServer, index_all, spare_fetched):
    path = world(tmp_path, image_server)
    image_server.routes["/m/spare.jpg"] = Route((FIX / "jpeg_q60.jpg").read_bytes())
    with open(tmp_path / "master.csv", "a") as f:
        f.write(f"SPARE,Spare,1.00,EUR,{image_server.url('/m/spare.jpg')}\n")
    text = path.read_text().replace("[checks.image]\n", f"[checks.image]\nindex_all_masters = "
                                                f"{str(index_all).lower()}\n")
    path.write_text(text)
    cfg = load_config(path)
    store = open_store(cfg.store_url)
    run_audit(cfg, store, now=NOW)
    assert image_server.count("/m/spare.jpg") == spare_fetched
    # Masters linked in the same batch are known either way: the swap is still named.
    assert image_findings(store)["TEE-BLUE"][1] == "wrong image: shows the image of SKU TEE-RED"
    store.close()


def test_master_images_from_a_dam_folder(tmp_path, image_server: ImageServer):
    path = world(tmp_path, image_server)
    dam = tmp_path / "dam"
    (dam / "TEE-BLUE").mkdir(parents=True)
    (dam / "TEE-RED_1.jpg").write_bytes((FIX / "original.jpg").read_bytes())
    (dam / "TEE-BLUE" / "1.jpg").write_bytes((FIX / "variant_blue.jpg").read_bytes())
    (tmp_path / "master.csv").write_text("sku,title,price,currency\nTEE-RED,Tee red,10.00,EUR\n"
                                         "TEE-BLUE,Tee blue,10.00,EUR\nMUG,Mug,10.00,EUR\n")
    path.write_text(path.read_text().replace("[checks.image]\n",
                                             "[checks.image]\ndam_dir = \"dam\"\n"))
    cfg = load_config(path)
    store = open_store(cfg.store_url)
    run_audit(cfg, store, now=NOW)
    # MUG has neither a DAM file nor an image URL: nothing to compare, no finding.
    assert image_findings(store) == {
        "TEE-BLUE": ("failed", "wrong image: shows the image of SKU TEE-RED")}
    assert not any(p.startswith("/m/") for p, _ in image_server.log)
    store.close()


def test_a_failing_image_step_leaves_the_check_not_evaluated(tmp_path, image_server, monkeypatch):
    cfg = load_config(world(tmp_path, image_server))

    def boom(self, *a, **k):
        raise RuntimeError("hash pool gone")

    monkeypatch.setattr(im.ImageRun, "prepare", boom)
    store = open_store(cfg.store_url)
    report = run_audit(cfg, store, now=NOW)
    [ch] = report.channels
    assert ch.status.value == "complete" and ch.outcomes["price"]["passed"] == 3
    got = image_findings(store)
    assert set(got) == {"TEE-RED", "TEE-BLUE", "MUG"}
    assert all(o == "not_evaluated" and "hash pool gone" in m for o, m in got.values())
    store.close()


def test_additional_images_are_not_judged_behind_a_wrong_primary():
    fs = run("TEE-RED", ("https://cdn.test/c/blue.jpg", "https://cdn.test/c/blue.jpg"))
    assert [(f.field, f.outcome) for f in fs] == [("image", Outcome.FAILED)]


def test_page_without_readable_images_is_not_evaluated_not_missing():
    """A crawled page whose extraction found no image says nothing about the shown image."""
    m = MasterRecord("TEE-RED", title="Tee")
    page = Listing("site", "https://shop/p?variant=TEE-RED", NOW, sku="TEE-RED",
                   sources={"title": "json-ld", "price": "json-ld"})
    [f] = plugins.checks()["image"].fn(m, page, ctx())
    assert f.outcome is Outcome.NOT_EVALUATED and "no product image could be read" in f.message
    feed = Listing("google", "TEE-RED", NOW, sku="TEE-RED")  # a feed with an empty image_link
    [g] = plugins.checks()["image"].fn(m, feed, ctx())
    assert g.outcome is Outcome.FAILED and "missing image" in g.message
