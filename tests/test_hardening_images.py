"""Image values from a channel are URLs or nothing; only the master's DAM folder is read
from disk, and only inside it (issue 21 item 1). The image check's preparation stage is
a generic mechanism the runner knows nothing specific about (issue 12 item 5)."""

from __future__ import annotations

import ast
import os
import time
from pathlib import Path

import pytest

from auditor import plugins
from auditor.check import CheckContext, CheckSpec, Preparation, Preparations
from auditor.config import load_config
from auditor.images.fetch import FetchSettings, ImageResolver
from auditor.images.signatures import ImageProblem
from auditor.model import Listing, Outcome
from auditor.runner import run_audit
from auditor.storage import open_store
from tests.imageserver import ImageServer
from tests.test_checks_image import FIX, NOW, image_findings, item, world

ROOT = Path(__file__).parent.parent


def _feed(tmp_path: Path, server: ImageServer, red: str, blue: str) -> None:
    from tests.test_checks_image import FEED
    (tmp_path / "feed.xml").write_text(FEED.format(items="\n".join([
        item("TEE-RED", red), item("TEE-BLUE", blue), item("MUG", None)])))


@pytest.mark.parametrize("value", ["/dev/zero", "/etc/passwd", "file:///etc/passwd",
                                   "../../../../etc/passwd", "dam/TEE-RED_1.jpg"])
def test_listing_image_values_that_are_not_urls_are_never_read(tmp_path, image_server, value):
    path = world(tmp_path, image_server)
    dam = tmp_path / "dam"
    dam.mkdir()
    (dam / "TEE-RED_1.jpg").write_bytes((FIX / "original.jpg").read_bytes())
    path.write_text(path.read_text().replace("[checks.image]\n",
                                             "[checks.image]\ndam_dir = \"dam\"\n"))
    _feed(tmp_path, image_server, value, value)
    cfg = load_config(path)
    store = open_store(cfg.store_url)
    t0 = time.monotonic()
    run_audit(cfg, store, now=NOW)
    assert time.monotonic() - t0 < 30
    got = image_findings(store)
    for sku in ("TEE-RED", "TEE-BLUE"):
        outcome, message = got[sku]
        assert outcome == "not_evaluated" and "not an http(s) URL" in message, got
    never = [value, "file:" + value, "file:/etc/passwd", "file:/dev/zero"]
    assert store.image_urls(never) == {}
    assert store.image_urls([image_server.url("/m/blue.jpg")])  # the master image URL was read
    store.close()


def test_resolver_never_opens_a_path_outside_the_dam(tmp_path):
    dam = tmp_path / "dam"
    dam.mkdir()
    (dam / "A.jpg").write_bytes((FIX / "original.jpg").read_bytes())
    outside = tmp_path / "secret.jpg"
    outside.write_bytes((FIX / "original.jpg").read_bytes())
    os.symlink(outside, dam / "B.jpg")             # a link out of the folder
    os.symlink("/dev/zero", dam / "C.jpg")         # a device
    os.mkfifo(dam / "D.jpg")                       # a FIFO would block a reader
    r = ImageResolver(None, FetchSettings(), dam_root=dam)
    assert r.dam_path(str(dam / "A.jpg")) == (dam / "A.jpg").resolve()
    assert r.dam_path("A.jpg") == (dam / "A.jpg").resolve()
    for ref in (str(dam / "B.jpg"), "../secret.jpg", str(outside), "/etc/passwd", "C.jpg"):
        with pytest.raises(ImageProblem, match="outside the DAM folder"):
            r.dam_path(ref)
    no_dam = ImageResolver(None, FetchSettings())
    with pytest.raises(ImageProblem, match="not an http"):
        no_dam.dam_path(str(dam / "A.jpg"))
    import asyncio
    with pytest.raises(ImageProblem, match="not a regular file"):
        asyncio.run(r._local(r.dam_path("D.jpg"), None, {}))


def test_dam_mapping_pointing_outside_is_refused(tmp_path, image_server):
    path = world(tmp_path, image_server)
    dam = tmp_path / "dam"
    dam.mkdir()
    (dam / "red.jpg").write_bytes((FIX / "original.jpg").read_bytes())
    (tmp_path / "blue.jpg").write_bytes((FIX / "variant_blue.jpg").read_bytes())
    (tmp_path / "map.csv").write_text("sku,file\nTEE-RED,red.jpg\nTEE-BLUE,../blue.jpg\n")
    (tmp_path / "master.csv").write_text("sku,title,price,currency\nTEE-RED,Tee red,10.00,EUR\n"
                                         "TEE-BLUE,Tee blue,10.00,EUR\nMUG,Mug,10.00,EUR\n")
    path.write_text(path.read_text().replace(
        "[checks.image]\n", "[checks.image]\ndam_dir = \"dam\"\ndam_mapping = \"map.csv\"\n"))
    _feed(tmp_path, image_server, image_server.url("/c/red-small.jpg"),
          image_server.url("/c/red-small.jpg"))
    cfg = load_config(path)
    store = open_store(cfg.store_url)
    run_audit(cfg, store, now=NOW)
    got = image_findings(store)
    assert "TEE-RED" not in got  # inside the folder: read, and it matches
    assert got["TEE-BLUE"][0] == "not_evaluated" and "outside the DAM folder" in got["TEE-BLUE"][1]
    store.close()


def test_master_record_paths_are_not_read_without_a_dam(tmp_path, image_server):
    path = world(tmp_path, image_server)
    (tmp_path / "master.csv").write_text("sku,title,price,currency,image_1\n"
                                         "TEE-RED,Tee red,10.00,EUR,/etc/passwd\n")
    _feed(tmp_path, image_server, image_server.url("/c/red-small.jpg"), None)
    cfg = load_config(path)
    store = open_store(cfg.store_url)
    run_audit(cfg, store, now=NOW)
    outcome, message = image_findings(store)["TEE-RED"]
    assert outcome == "not_evaluated" and "not an http(s) URL" in message
    store.close()


# ------------------------------------------------------------------ issue 12 item 5

def test_image_check_imports_only_pure_signatures():
    tree = ast.parse((ROOT / "checks" / "image.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in imported if m.startswith("auditor.images")} == {"auditor.images.signatures"}
    sig = ast.parse((ROOT / "auditor" / "images" / "signatures.py").read_text())
    mods = {n.module for n in ast.walk(sig) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(sig) if isinstance(n, ast.Import) for a in n.names}
    assert not mods & {"auditor.http", "httpx", "asyncio", "auditor.store", "os", "pathlib"}


def test_image_check_declares_its_stage_by_name():
    from auditor.check import _load_preparation
    from auditor.images.prepare import ImagePreparation
    plugins.load()
    assert _load_preparation(plugins.checks()["image"].prepare) is ImagePreparation


def test_runner_has_no_image_special_case():
    src = (ROOT / "auditor" / "runner.py").read_text()
    assert "auditor.images" not in src and '"image"' not in src


class Probe(Preparation):
    batch_size = 3
    seen: list = []

    def prepare(self, batch, ctx, policy):
        Probe.seen.append((ctx.channel, [li.key for _, li in batch]))
        if any(li.key == "boom" for _, li in batch):
            raise RuntimeError("stage failed")
        ctx.extras["probe"] = len(batch)

    def close(self):
        Probe.seen.append("closed")


def _probe_fn(master, listing, ctx):
    if listing is None:
        return []
    got = ctx.extras.get("probe")
    if got is None:
        return [ctx.finding(master, listing, "x", Outcome.NOT_EVALUATED,
                            message=f"not prepared: {ctx.extras.get('prepare_error')}")]
    return [ctx.passed(master, listing, "x")]


def test_generic_preparation_batches_prepares_and_reports_failure():
    Probe.seen = []
    spec = CheckSpec("probe", _probe_fn, prepare=Probe)
    preps = Preparations(None, {}, {}, Path("."), NOW)
    c = CheckContext("probe", "shop", {}, NOW)
    batcher = preps.batcher([spec], {"probe": c}, policy=None)
    out = []
    for key in ("a", "b", "c", "d", "boom"):
        batcher.add(None, Listing("shop", key, NOW), lambda m, li, link: out.extend(
            _probe_fn(m, li, c)))
    batcher.flush(lambda m, li, link: out.extend(_probe_fn(m, li, c)))
    preps.close()
    assert Probe.seen == [("shop", ["a", "b", "c"]), ("shop", ["d", "boom"]), "closed"]
    assert [f.outcome for f in out[:3]] == [Outcome.PASSED] * 3
    assert [f.message for f in out[3:]] == ["not prepared: RuntimeError: stage failed"] * 2
    assert Preparations(None, {}, {}, Path("."), NOW).batcher(
        [CheckSpec("plain", _probe_fn)], {"plain": c}, None) is None


def test_a_plugin_check_declares_a_stage_the_runner_runs(mini_world, monkeypatch):
    Probe.seen = []
    monkeypatch.setitem(plugins.CHECKS, "probe", CheckSpec(
        "probe", _probe_fn, prepare=Probe))
    cfg = load_config(mini_world / "config.toml")
    store = open_store(cfg.store_url)
    report = run_audit(cfg, store, now=NOW)
    assert report.channels[0].outcomes["probe"]["passed"] == 3
    assert Probe.seen == [("google", ["TS-RED-M", "TS-BLU-M", "TS-GRN-M"]), "closed"]
    store.close()


def test_a_host_that_cannot_be_reached_costs_one_retry_cycle_not_one_per_image():
    """The demo config re-run after the demo shop stopped spent a minute retrying each of
    ~200 images on a refused port: after one image's retries, the host's other images fail
    at once, each with the reason."""
    import asyncio
    import socket

    from auditor.http import Fetcher, FetchPolicy

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: connections are refused
    refs = [f"http://127.0.0.1:{port}/img/{i}.png" for i in range(60)]
    r = ImageResolver(None, FetchSettings())

    async def go() -> None:
        async with Fetcher(FetchPolicy(allow_private=True, retries=3, backoff=0.3)) as f:
            await r.resolve(refs, f)

    asyncio.run(go())
    assert all(isinstance(r.results[u], str) and "ConnectError" in r.results[u] for u in refs)
    skipped = [u for u in refs if "not tried again" in str(r.results[u])]
    # all but the first images in flight (16): one cycle of retries, not one per image
    assert len(skipped) >= 60 - 16
