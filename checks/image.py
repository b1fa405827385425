"""Image check: the channel shows the master's pictures, as a person would judge them.

Signatures are computed before the check runs, by the preparation stage this
check declares (``auditor.images.prepare``, named as a string so this module
imports only the pure ``auditor.images.signatures``), and read from
``ctx.extras["images"]``; the check itself only compares numbers. A listing's
image that is not an http(s) URL is never read: it is reported as unusable.
"""

from __future__ import annotations

from typing import Any

from auditor.check import CheckContext, check
from auditor.images.signatures import (DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, MAX_COLOUR,
                                       MAX_SHAPE, Comparison, ImageSignature, ImageView,
                                       Thresholds, compare)
from auditor.model import Finding, Listing, MasterRecord, Outcome, Severity
from auditor.options import Opt

OPTIONS = (
    Opt("min_width", int, 0, "Smallest primary image width the channel accepts, in pixels "
        "(0: no minimum)."),
    Opt("min_height", int, 0, "Smallest primary image height the channel accepts, in pixels."),
    Opt("max_shape_distance", int, MAX_SHAPE,
        "Largest pHash + dHash Hamming distance (of 128 bits) at which two images still match."),
    Opt("max_colour_distance", float, MAX_COLOUR,
        "Largest CIE76 delta E between the images' dominant colours at which they match."),
    Opt("additional_images", str, "subset",
        "How additional images are compared: subset (each one the channel shows must be a "
        "master image), set (and every master image must be shown), or off.",
        choices=("subset", "set", "off")),
    Opt("index_all_masters", bool, True,
        "Hash every master's primary image once per run, so a wrong image can be named "
        "(\"shows the image of SKU X\")."),
    Opt("batch_size", int, 200, "Listings whose images are fetched and hashed together."),
    Opt("revalidate_hours", float, 24.0,
        "An image URL validated less than this many hours ago is not requested again "
        "(0 = a conditional request every run)."),
    Opt("max_bytes", int, DEFAULT_MAX_BYTES, "Largest image body read, in bytes."),
    Opt("max_pixels", int, DEFAULT_MAX_PIXELS,
        "Largest image decoded, in pixels (width x height); larger ones are refused."),
    Opt("master_images", str, "auto",
        "Where master images come from: record (the master's image URLs), dam (files in "
        "dam_dir) or auto (DAM files when a SKU has any, else the record's URLs).",
        choices=("auto", "record", "dam")),
    Opt("dam_dir", str, None, "Local DAM folder, relative to the config file: <SKU>.jpg, "
        "<SKU>_<n>.jpg, <SKU>-<n>.png or <SKU>/<n>.webp; the lowest number is the primary."),
    Opt("dam_mapping", str, None,
        "CSV mapping SKUs to DAM files (columns sku, file, optional slot), instead of names."),
)


def _sig(view: ImageView, ref: str) -> ImageSignature | str:
    r = view.get(ref)
    return "not fetched" if r is None else r


def _shown(view: ImageView, ref: str) -> ImageSignature | str:
    """A listing's image: its signature, or why it cannot be used (not a URL)."""
    r = view.shown(ref)
    return "not fetched" if r is None else r


@check("image", fields=("image", "additional_images"), options=OPTIONS,
       prepare="auditor.images.prepare:ImagePreparation")
def image_check(master: MasterRecord | None, listing: Listing | None, ctx: CheckContext):
    """Compare the listing's images with the master's by perceptual hash and colour."""
    if master is None or listing is None:
        return []
    view: ImageView | None = ctx.extras.get("images")
    if view is None:
        if master.images or listing.images:
            reason = ctx.extras.get("prepare_error") or "images were not prepared for this run"
            return [ctx.finding(master, listing, "image", Outcome.NOT_EVALUATED,
                                message=f"image not compared: {reason}")]
        return []
    refs = view.assets.get(master.sku)
    if not refs:
        return []  # no approved image to compare with
    if not listing.images and listing.sources and "images" not in listing.sources:
        # A page read by extraction: no image found is not evidence of no image shown.
        return [ctx.finding(master, listing, "image", Outcome.NOT_EVALUATED,
                            message="image not compared: no product image could be read from "
                                    "the page (add an `images` selector for this shop)")]
    if not listing.images:
        hint = (" (read from the page: if the shop shows images the auditor cannot see, "
                "configure an `images` selector)") if listing.sources.get("images") == "heuristic" else ""
        return [ctx.finding(master, listing, "image", Outcome.FAILED, Severity.MAJOR,
                            expected=refs[0], actual=None, message="missing image: the listing "
                            f"shows no image where the master has {len(refs)}{hint}")]
    t = Thresholds.from_options(ctx.options)
    primary, matched = _primary(master, listing, refs, view, t, ctx)
    out = [primary]
    # Additional images are judged only when the primary is the right picture:
    # a listing showing another product says so once, in the primary's finding.
    if matched and ctx.options.get("additional_images", "subset") != "off" \
            and len(listing.images) > 1:
        extra = _additional(master, listing, refs, view, t, ctx)
        if extra is not None:
            out.append(extra)
    return out


def _primary(master: MasterRecord, listing: Listing, refs: tuple[str, ...], view: ImageView,
             t: Thresholds, ctx: CheckContext) -> tuple[Finding, bool]:
    """The primary image's finding, and whether it is the master's primary."""
    url = listing.images[0]
    lsig, msig = _shown(view, url), _sig(view, refs[0])
    if isinstance(lsig, str):
        return ctx.finding(master, listing, "image", Outcome.NOT_EVALUATED, expected=refs[0],
                           actual=url, message=f"listing image {url} could not be used: {lsig}",
                           reason=lsig), False
    if isinstance(msig, str):
        return ctx.finding(master, listing, "image", Outcome.NOT_EVALUATED, expected=refs[0],
                           actual=url, message=f"master image {refs[0]} could not be used: "
                                               f"{msig}", reason=msig), True
    c = compare(msig, lsig, t)
    d: dict[str, Any] = {"vs_master_primary": c.details(),
                         "thresholds": {"shape": t.shape, "colour": t.colour}}
    if c.same:
        w, h = ctx.options.get("min_width") or 0, ctx.options.get("min_height") or 0
        if lsig.width < w or lsig.height < h:
            return ctx.finding(master, listing, "image", Outcome.FAILED, Severity.MINOR,
                               expected=f"at least {w}x{h}", actual=f"{lsig.width}x{lsig.height}",
                               message=f"image below the channel's minimum resolution: "
                                       f"{lsig.width}x{lsig.height}, needs at least {w}x{h}",
                               width=lsig.width, height=lsig.height, **d), True
        return ctx.passed(master, listing, "image"), True
    score = _similarity(c, t)
    for slot, ref in enumerate(refs[1:], 2):
        s = view.get(ref)
        if isinstance(s, ImageSignature) and (m := compare(s, lsig, t)).same:
            return ctx.finding(master, listing, "image", Outcome.WARN, Severity.MINOR,
                               expected=refs[0], actual=url, score=score,
                               message=f"primary image is the master's image {slot}, not its "
                                       f"primary", vs_master_slot=m.details(), slot=slot,
                               **d), True
    for ref, until, slot in view.history.get(master.sku, ()):
        s = view.get(ref)
        if isinstance(s, ImageSignature) and (m := compare(s, lsig, t)).same:
            what = "primary" if slot == 0 else f"image {slot + 1}"
            return ctx.finding(master, listing, "image", Outcome.FAILED, Severity.MAJOR,
                               expected=refs[0], actual=url, score=score,
                               message=f"outdated image: shows the master's former {what}, "
                                       f"replaced {until[:10]}",
                               vs_former_asset=m.details(), replaced_at=until,
                               former_sha256=ref.removeprefix("sha256:"), **d), False
    hit = view.primaries.nearest(lsig, t, exclude=master.sku)
    if hit is not None:
        other, m = hit
        return ctx.finding(master, listing, "image", Outcome.FAILED, Severity.MAJOR,
                           expected=refs[0], actual=url, score=score,
                           message=f"wrong image: shows the image of SKU {other}",
                           shows_sku=other, vs_other_sku=m.details(), **d), False
    return ctx.finding(master, listing, "image", Outcome.FAILED, Severity.MAJOR,
                       expected=refs[0], actual=url, score=score,
                       message=f"wrong image: does not match the master's primary "
                               f"(shape distance {c.phash + c.dhash}, colour distance "
                               f"{c.colour:.0f})", **d), False


def _similarity(c: Comparison, t: Thresholds) -> float:
    """0..1, 1 for identical: how close a mismatch came (for sorting, not deciding)."""
    return round(max(0.0, 1 - 0.5 * ((c.phash + c.dhash) / (2 * t.shape) + c.colour
                                     / (4 * t.colour))), 3)


def _additional(master: MasterRecord, listing: Listing, refs: tuple[str, ...],
                view: ImageView, t: Thresholds, ctx: CheckContext) -> Finding | None:
    msigs = [(r, s) for r in refs if isinstance(s := view.get(r), ImageSignature)]
    shown = [(u, _shown(view, u)) for u in listing.images[1:]]
    unusable = {u: s for u, s in shown if isinstance(s, str)}
    shown_ok = [(u, s) for u, s in shown if isinstance(s, ImageSignature)]
    unknown = [u for u, s in shown_ok if not any(compare(m, s, t).same for _, m in msigs)]
    missing: list[str] = []
    if ctx.options.get("additional_images") == "set":
        listed = [s for _, s in shown_ok]
        primary = _shown(view, listing.images[0])
        if isinstance(primary, ImageSignature):
            listed.append(primary)
        missing = [r for r, m in msigs[1:] if not any(compare(m, s, t).same for s in listed)]
    if not unknown and not missing:
        if unusable and not shown_ok:
            return ctx.finding(master, listing, "additional_images", Outcome.NOT_EVALUATED,
                               message=f"{len(unusable)} additional image(s) could not be used",
                               unusable=unusable)
        return ctx.passed(master, listing, "additional_images")
    parts = []
    if unknown:
        parts.append(f"{len(unknown)} additional image(s) match no master image")
    if missing:
        parts.append(f"{len(missing)} master image(s) not shown")
    details: dict[str, Any] = {"unknown": unknown, "missing": missing}
    if unusable:
        details["unusable"] = unusable
    return ctx.finding(master, listing, "additional_images", Outcome.WARN, Severity.MINOR,
                       expected=f"{len(msigs)} master image(s)", actual=f"{len(shown)} additional",
                       message="; ".join(parts), **details)
