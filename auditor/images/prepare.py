"""The image check's preparation stage: fetch and hash a batch's images before it is checked.

The third of the three image parts. The image check declares it
(``@check("image", prepare="auditor.images.prepare:ImagePreparation")``); the
runner only knows the generic mechanism (``auditor.check.Preparations``).
``ImageRun`` holds one run's image work: the master's assets (DAM files or
the records' URLs) once, each channel's listings in batches, results shared by
every channel, so an image several channels show is fetched and hashed once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from auditor.check import CheckContext, Preparation, PrepareEnv
from auditor.images.fetch import FetchSettings, ImageResolver, dam_assets
from auditor.images.signatures import (DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ImageSignature,
                                       ImageView, PrimaryIndex, Thresholds, is_image_url)

log = logging.getLogger(__name__)


class ImageRun:
    """Image work for one run: master assets once, each channel's listings in batches.

    Channels share the results, so an image used by several channels (and the
    master assets) is fetched and hashed once per run.
    """

    def __init__(self, store: Any, master: Mapping[str, Any], http_options: Mapping[str, Any],
                 base_dir: Path, now: datetime, check_options: Mapping[str, Any] | None = None):
        self.store = store
        self.master = master
        self.http_options = http_options
        self.base_dir = base_dir
        self.now = now
        self.opts = dict(check_options or {})
        self._runner: asyncio.Runner | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._resolver = ImageResolver(store, FetchSettings(
            int(self.opts.get("max_bytes", DEFAULT_MAX_BYTES)),
            int(self.opts.get("max_pixels", DEFAULT_MAX_PIXELS)),
            revalidate_hours=float(self.opts.get("revalidate_hours", 24.0))))
        self._fetchers: dict[Any, Any] = {}
        self.assets: dict[str, tuple[str, ...]] | None = None
        self.view: ImageView | None = None
        self._recorded: set[str] = set()
        self._indexed = False
        self._in_index: set[str] = set()

    # -- plumbing
    def _start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.Runner()
            self._executor = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1),
                                                thread_name_prefix="image-hash")
            self._resolver.executor = self._executor

    def _fetcher(self, policy: Any) -> Any:
        from auditor.http import Fetcher

        key = (tuple(sorted(policy.allow_hosts)), policy.allow_private)
        f = self._fetchers.get(key)
        if f is None:
            policy.max_body_bytes = min(policy.max_body_bytes, self._resolver.settings.max_bytes)
            f = self._fetchers[key] = Fetcher(policy)
            assert self._runner is not None  # _start() ran
            self._runner.run(f.__aenter__())
        return f

    def close(self) -> None:
        """Close the HTTP clients, the event loop and the hashing threads."""
        if self._runner is None:
            return
        log.info("images: %s", ", ".join(f"{k} {v}" for k, v in self.stats.items()))
        for f in self._fetchers.values():
            self._runner.run(f.__aexit__(None, None, None))
        self._runner.close()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._runner = None

    @property
    def stats(self) -> dict[str, int]:
        """Counts of fetched, not-modified, hashed, cached and failed images this run."""
        return dict(self._resolver.stats)

    # -- master side
    def master_assets(self) -> dict[str, tuple[str, ...]]:
        """Each SKU's image refs, primary first: DAM files, else the record's URLs."""
        if self.assets is None:
            source = self.opts.get("master_images", "auto")
            dam: dict[str, tuple[str, ...]] = {}
            if source in ("auto", "dam") and self.opts.get("dam_dir"):
                d = Path(self.opts["dam_dir"]).expanduser()
                d = d if d.is_absolute() else self.base_dir / d
                mp = self.opts.get("dam_mapping")
                mpath = None if not mp else (Path(mp) if Path(mp).is_absolute()
                                             else self.base_dir / mp)
                if d.is_dir():
                    dam = dam_assets(d, self.master, mpath)
                    self._resolver.dam_root = d.resolve()
                else:
                    log.error("images: dam_dir %s is not a folder", d)
            self.assets = {}
            for sku, rec in self.master.items():
                refs = dam.get(sku) or (() if source == "dam" else tuple(rec.images))
                if refs:
                    self.assets[sku] = refs
            hist = self.store.master_asset_history() if self.store else {}
            # Index cells as wide as the colour threshold: neighbours cover every match.
            self.view = ImageView(self._resolver.results, self.assets, {}, {},
                                  PrimaryIndex(Thresholds.from_options(self.opts).colour))
            self._load_history(hist)
        return self.assets

    def _load_history(self, hist: Mapping[str, list[dict[str, Any]]]) -> None:
        assert self.view is not None
        shas = [r["sha256"] for rows in hist.values() for r in rows]
        sigs = self._resolver._load_sigs(shas)
        self.view.signatures.update(sigs)  # type: ignore[attr-defined]
        for sku, rows in hist.items():
            self.view.history[sku] = [("sha256:" + r["sha256"], r["valid_to"], r["slot"])  # type: ignore[index]
                                      for r in rows if r["sha256"] in sigs]

    def _master_policy(self) -> Any:
        from auditor.http import FetchPolicy

        return FetchPolicy.from_config(self.http_options, {}, [])

    def _resolve_masters(self, skus: Iterable[str], slots: bool = True,
                         also: tuple[list[str], Any] | None = None) -> None:
        """Fetch and hash these SKUs' images (all slots, or primaries only).

        Their primaries join the lookup of other SKUs' images; with all slots,
        the slots' contents are noted in the master asset history. ``also``
        (refs, fetcher) are fetched in the same go, so the two overlap.
        """
        self._start()
        assets = self.master_assets()
        wanted = [s for s in skus if s in assets]
        refs = [r for sku in wanted for r in (assets[sku] if slots else assets[sku][:1])]
        groups = [(refs, self._fetcher(self._master_policy()))] + ([also] if also else [])
        assert self._runner is not None and self.view is not None  # _start() ran
        self._runner.run(self._resolver.resolve_groups(groups))
        for sku in wanted:
            sig = self._resolver.results.get(assets[sku][0])
            if sku not in self._in_index and isinstance(sig, ImageSignature):
                self._in_index.add(sku)
                self.view.primaries.add(sku, sig)
        if slots and self.store is not None:
            new = [s for s in wanted if s not in self._recorded]
            self._recorded.update(new)
            res = self._resolver.shas
            if self.store.record_master_assets(
                    {s: [(r, res.get(r)) for r in assets[s]] for s in new}, self.now):
                self._load_history(self.store.master_asset_history(new))

    def index_primaries(self) -> None:
        """Hash every master's primary once per run, for "shows the image of SKU X"."""
        if not self._indexed:
            self._indexed = True
            self._resolve_masters(list(self.master_assets()), slots=False)

    # -- channel side
    def prepare(self, pairs: list[tuple[Any, Any]], policy: Any, index_all: bool = True
                ) -> ImageView | None:
        """Fetch and hash a batch's listing images and their masters' assets.

        Returns the view the image check reads. A batch that shows no image at
        all fetches nothing (its masters' image lists still tell "missing image").
        """
        self.master_assets()
        if not any(li is not None and li.images for _, li in pairs):
            return self.view
        self._start()
        if index_all:
            self.index_primaries()
        # A channel's image values are URLs or nothing: anything else is never read
        # (the check reports it through ImageView.shown).
        urls = [u for _, li in pairs if li is not None for u in li.images if is_image_url(u)]
        self._resolve_masters({m.sku for m, _ in pairs if m is not None},
                              also=(urls, self._fetcher(policy)))
        return self.view


class ImagePreparation(Preparation):
    """The preparation stage of the image check: one ``ImageRun`` per run.

    For each batch of a channel it fetches and hashes the listings' images and
    their masters' assets, and sets ``ctx.extras["images"]`` (an ``ImageView``).
    """

    def __init__(self, env: PrepareEnv):
        super().__init__(env)
        self.run = ImageRun(env.store, env.master, env.http_options, env.base_dir, env.now,
                            env.options)

    def prepare(self, batch: Sequence[tuple[Any, Any]], ctx: CheckContext, policy: Any) -> None:
        ctx.extras["images"] = self.run.prepare(
            list(batch), policy, bool(ctx.options.get("index_all_masters", True)))

    def close(self) -> None:
        self.run.close()
