"""Image decoding, signatures, matching, the fetch+hash cache and the master asset history."""

from __future__ import annotations

import asyncio
import io
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image

from auditor import images as im
from auditor.http import FetchPolicy, Fetcher
from auditor.storage import open_store
from auditor.world.images import draw_product
from tests.imageserver import ImageServer, Route

FIX = Path(__file__).parent / "fixtures" / "images"
NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


def sig_of(name: str) -> im.ImageSignature:
    return im.signature_from_bytes((FIX / name).read_bytes())


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.mark.parametrize("name", [
    "resize_50.jpg", "resize_200.jpg", "jpeg_q60.jpg", "webp.webp", "pad_square_white.jpg",
    "pad_square_transparent.png", "crop_5pct.jpg", "badge_corner.jpg", "original.avif",
])
def test_benign_transforms_match_the_original(name):
    c = im.compare(sig_of("original.jpg"), sig_of(name))
    assert c.same, (name, c)
    assert c.phash + c.dhash <= im.MAX_SHAPE and c.colour <= im.MAX_COLOUR


@pytest.mark.parametrize("name,why", [
    ("variant_blue.jpg", "colour"),    # same product, other colour: shapes agree, colour not
    ("other_product.jpg", "shape"),    # same colour, other product
])
def test_distinct_images_do_not_match(name, why):
    c = im.compare(sig_of("original.jpg"), sig_of(name))
    assert not c.same
    if why == "colour":
        assert c.phash + c.dhash <= im.MAX_SHAPE and c.colour > 3 * im.MAX_COLOUR
    else:
        assert c.phash + c.dhash > im.MAX_SHAPE and c.colour <= im.MAX_COLOUR


@pytest.mark.parametrize("name,reason", [
    ("truncated.jpg", "truncated"),
    ("corrupt.jpg", "corrupt"),
    ("zero.jpg", "zero bytes"),
    ("not_image.html", "not a recognised image"),
    ("bomb.png", "decompression bomb"),
])
def test_bad_inputs_are_refused_with_a_reason(name, reason):
    with pytest.raises(im.ImageProblem) as e:
        sig_of(name)
    assert reason in e.value.reason


@pytest.mark.parametrize("action", ["error", "ignore"])
def test_pillow_bomb_guard_is_an_error_too(action):
    # Over Pillow's own limit, below ours: refused whether or not the warning
    # filter that makes Pillow's warning an error is in force.
    buf = io.BytesIO()
    Image.new("1", (200, 200)).save(buf, "PNG")
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 30_000
    try:
        with warnings.catch_warnings(), \
                pytest.raises(im.ImageProblem, match="decompression bomb"):
            warnings.simplefilter(action, Image.DecompressionBombWarning)
            im.signature_from_bytes(buf.getvalue(), max_pixels=10**9)
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def test_transparent_png_flattens_onto_white():
    rgba = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    rgba.paste(draw_product("p-1", "green", 120).convert("RGBA"), (40, 40))
    on_white = Image.new("RGB", (200, 200), (255, 255, 255))
    on_white.paste(draw_product("p-1", "green", 120), (40, 40))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    assert im.compare(im.signature_from_bytes(buf.getvalue()),
                      im.signature_from_bytes(jpeg(on_white))).same


def test_jpeg_draft_mode_decodes_small():
    img, size, fmt = im.decode(jpeg(draw_product("p-2", "red", 1000)))
    assert size == (1000, 1000) and fmt == "JPEG"
    assert max(img.size) <= im.WORK_SIZE


def test_signature_round_trips_and_rejects_other_versions():
    s = sig_of("original.jpg")
    d = s.to_dict()
    assert im.ImageSignature.from_dict(d) == s
    assert im.ImageSignature.from_dict({**d, "v": im.ALGO_VERSION + 1}) is None


@pytest.mark.parametrize("files,mapping,expected", [
    (["A1.jpg", "A1_2.jpg", "B-2_3.png", "B-2_1.png", "C/2.webp", "C/1.webp", "zz.jpg",
      "A1.txt"], None,
     {"A1": ["A1.jpg", "A1_2.jpg"], "B-2": ["B-2_1.png", "B-2_3.png"],
      "C": ["C/1.webp", "C/2.webp"]}),
    (["x.jpg", "y.jpg"], "sku,file,slot\nA1,y.jpg,2\nA1,x.jpg,1\nB-2,x.jpg,\n",
     {"A1": ["x.jpg", "y.jpg"], "B-2": ["x.jpg"]}),
])
def test_dam_assets_by_name_or_mapping(tmp_path, files, mapping, expected):
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_bytes(b"x")
    mp = None
    if mapping:
        mp = tmp_path / "map.csv"
        mp.write_text(mapping)
    got = im.dam_assets(tmp_path, ["A1", "B-2", "C"], mp)
    assert {k: [str(Path(p).relative_to(tmp_path.resolve())) for p in v]
            for k, v in got.items()} == expected


def test_primary_index_names_the_closest_other_sku():
    idx = im.PrimaryIndex()
    red, blue = sig_of("original.jpg"), sig_of("variant_blue.jpg")
    idx.add("TEE-RED", red)
    idx.add("TEE-BLUE", blue)
    idx.add("MUG-RED", sig_of("other_product.jpg"))
    hit = idx.nearest(sig_of("resize_50.jpg"), im.Thresholds(), exclude="TEE-BLUE")
    assert hit is not None and hit[0] == "TEE-RED"
    assert idx.nearest(sig_of("resize_50.jpg"), im.Thresholds(), exclude="TEE-RED") is None


# --------------------------------------------------------------------------- fetching

def resolve(store, server_urls, retries=0, settings=None, dam_root=None):
    """Run one ImageResolver over ``server_urls``; return it."""
    async def go():
        with ThreadPoolExecutor(2) as ex:
            # revalidate_hours=0: every run asks the server (conditionally).
            r = im.ImageResolver(store, settings or im.FetchSettings(revalidate_hours=0), ex,
                                 dam_root=dam_root)
            async with Fetcher(FetchPolicy(allow_private=True, retries=retries,
                                           backoff=0.01)) as f:
                await r.resolve(server_urls, f)
            return r
    return asyncio.run(go())


def test_fetch_caches_by_etag_and_by_content(image_server: ImageServer):
    body = (FIX / "original.jpg").read_bytes()
    image_server.routes["/a.jpg"] = Route(body)
    image_server.routes["/copy.jpg"] = Route(body, etag=False)
    store = open_store(":memory:")
    first = resolve(store, [image_server.url("/a.jpg")])
    assert isinstance(first.results[image_server.url("/a.jpg")], im.ImageSignature)
    assert first.stats["hashed"] == 1 and first.stats["fetched"] == 1
    # Second run: a conditional GET answered 304, nothing downloaded or hashed.
    second = resolve(store, [image_server.url("/a.jpg")])
    assert image_server.count("/a.jpg", 304) == 1
    assert second.stats == {**second.stats, "not_modified": 1, "hashed": 0, "fetched": 0}
    assert second.results[image_server.url("/a.jpg")] == first.results[image_server.url("/a.jpg")]
    # The same content under another URL: downloaded, but not decoded again.
    third = resolve(store, [image_server.url("/copy.jpg")])
    assert third.stats["hashed"] == 0 and third.stats["cached"] == 1


def test_recently_validated_image_is_not_requested_again(image_server: ImageServer):
    image_server.routes["/t.jpg"] = Route((FIX / "original.jpg").read_bytes())
    store = open_store(":memory:")
    first = resolve(store, [image_server.url("/t.jpg")], settings=im.FetchSettings())
    requests = len(image_server.log)
    second = resolve(store, [image_server.url("/t.jpg")], settings=im.FetchSettings())
    assert len(image_server.log) == requests  # within revalidate_hours: no request at all
    assert second.stats["cached"] == 1 and second.stats["fetched"] == 0
    assert second.results[image_server.url("/t.jpg")] == first.results[image_server.url("/t.jpg")]
    resolve(store, [image_server.url("/t.jpg")], settings=im.FetchSettings(revalidate_hours=0))
    assert image_server.count("/t.jpg", 304) == 1


def test_changed_image_is_fetched_and_hashed_again(image_server: ImageServer):
    store = open_store(":memory:")
    image_server.routes["/p.jpg"] = Route((FIX / "original.jpg").read_bytes())
    a = resolve(store, [image_server.url("/p.jpg")]).results[image_server.url("/p.jpg")]
    image_server.routes["/p.jpg"] = Route((FIX / "variant_blue.jpg").read_bytes())
    r = resolve(store, [image_server.url("/p.jpg")])
    b = r.results[image_server.url("/p.jpg")]
    assert r.stats["hashed"] == 1 and a.sha256 != b.sha256 and not im.compare(a, b).same


@pytest.mark.parametrize("route,reason", [
    (Route((FIX / "original.jpg").read_bytes(), short_by=5000), "fetch failed"),
    (Route(b""), "zero bytes"),
    (Route((FIX / "not_image.html").read_bytes(), "text/html; charset=utf-8"),
     "content-type text/html"),
    (Route((FIX / "bomb.png").read_bytes(), "image/png"), "decompression bomb"),
    (Route((FIX / "corrupt.jpg").read_bytes()), "corrupt"),
    (Route(b"gone", "text/plain", status=404), "HTTP 404"),
    (Route((FIX / "original.jpg").read_bytes()), "exceeds max_bytes"),
])
def test_broken_responses_are_recorded_not_raised(image_server: ImageServer, route, reason):
    image_server.routes["/x"] = route
    store = open_store(":memory:")
    settings = im.FetchSettings(max_bytes=1000) if reason == "exceeds max_bytes" else None
    r = resolve(store, [image_server.url("/x")], settings=settings)
    got = r.results[image_server.url("/x")]
    assert isinstance(got, str) and reason in got
    assert store.image_urls([image_server.url("/x")])[image_server.url("/x")]["error"] == got


def test_local_files_are_not_reread_when_unchanged(tmp_path):
    p = tmp_path / "A_1.jpg"
    p.write_bytes((FIX / "original.jpg").read_bytes())
    store = open_store(":memory:")
    first = resolve(store, [str(p)], dam_root=tmp_path)
    second = resolve(store, [str(p)], dam_root=tmp_path)
    assert first.stats["hashed"] == 1 and second.stats["hashed"] == 0
    assert second.stats["cached"] == 1
    assert first.results[str(p)] == second.results[str(p)]


# --------------------------------------------------------------------------- store

def test_master_asset_history_keeps_replaced_images():
    s = open_store(":memory:")
    assert s.schema_version >= 2
    s.record_master_assets({"A": [("u1", "s1"), ("u2", "s2")], "B": [("u3", "s3")]}, NOW)
    # Day 2: A's primary content changed; A's second image could not be fetched.
    closed = s.record_master_assets({"A": [("u1", "s9"), ("u2", None)]},
                                    NOW + timedelta(days=1))
    assert closed == 1
    # Day 3: A lost its second image; B unchanged.
    s.record_master_assets({"A": [("u1", "s9")], "B": [("u3", "s3")]}, NOW + timedelta(days=2))
    hist = s.master_asset_history()
    assert [(r["slot"], r["sha256"], r["valid_to"][:10]) for r in hist["A"]] == [
        (1, "s2", "2026-11-03"), (0, "s1", "2026-11-02")]
    assert "B" not in hist
    assert s.master_asset_history(["B"]) == {}


def test_animated_gif_is_judged_by_its_first_frame():
    gif = sig_of("animated.gif")
    assert gif.format == "GIF" and (gif.width, gif.height) == (120, 120)
    first = im.signature_from_bytes(jpeg(draw_product("fixture-tee", "red", 120)))
    second = im.signature_from_bytes(jpeg(draw_product("fixture-tee", "green", 120)))
    assert im.compare(gif, first).same and not im.compare(gif, second).same
