"""Meta (Facebook / Instagram) catalog feeds: CSV, TSV, RSS and Atom XML.

Meta's attribute names agree with Google's, so items go through
``google_merchant``'s readers and ``item_to_listing``; this module only maps
Meta's own names: flattened columns such as ``image[0].url`` (``image[0]`` is
the main image, the others additional images). ``inventory`` and
``quantity_to_sell_on_facebook`` are read as the quantity.
"""

from __future__ import annotations

import re
from typing import Iterator

from auditor.connector import Connector, SourceContext
from auditor.model import Listing
from auditor.plugins import register_connector
from auditor.connectors.google_merchant import FEED_OPTIONS, items_to_listings, read_feed_items

_IMAGE = re.compile(r"^image\[(\d+)\]\.url$")


def meta_name(name: str) -> str:
    """A Meta attribute name as the Google one ``item_to_listing`` reads."""
    m = _IMAGE.match(name)
    if m:
        return "image_link" if m.group(1) == "0" else "additional_image_link"
    return name


@register_connector
class MetaCatalog(Connector):
    """Meta commerce catalog feed (CSV, TSV or XML), from a file, glob or URL."""

    type = "meta_catalog"
    help = "Meta (Facebook/Instagram) catalog feed: CSV, TSV, RSS or Atom XML."
    options = FEED_OPTIONS

    def read(self, ctx: SourceContext) -> Iterator[Listing]:
        """Every item of every catalog file as a Listing."""
        fmt = self.channel.opt("format", "auto")
        items = read_feed_items(ctx, "tsv" if fmt == "csv" else fmt, meta_name)
        # Meta's template files carry comment rows ("# Required | ...") under the header.
        yield from items_to_listings(ctx, items, skip_comments=True)
