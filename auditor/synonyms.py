"""Colour and size synonym tables: words channels use for the same value.

A table maps every spelling to one canonical word (the first of its group).
Built-in groups are deliberately few and uncontroversial; configuration adds
more (``colour_synonyms = [["grey", "charcoal"]]``), merging with any group
that shares a word.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

COLOUR_SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("grey", "gray"),
    ("dark grey", "dark gray"),
    ("light grey", "light gray"),
    ("navy", "navy blue", "dark blue"),
    ("burgundy", "bordeaux", "wine", "wine red"),
    ("beige", "sand"),
    ("multicolour", "multicolor", "multi colour", "multi color", "multi"),
)
SIZE_SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("xxs", "2xs", "extra extra small", "xx small"),
    ("xs", "extra small", "x small", "xsmall"),
    ("s", "small", "sm"),
    ("m", "medium", "med"),
    ("l", "large", "lg"),
    ("xl", "extra large", "x large", "xlarge"),
    ("xxl", "2xl", "extra extra large", "xx large", "xxlarge"),
    ("xxxl", "3xl", "xxx large"),
    ("one size", "os", "one size fits all", "onesize"),
)

# Colour words a title may carry (English and German basics, plus every synonym above):
# a title that drops one has lost what tells a variant from its siblings.
COLOUR_WORDS: frozenset[str] = frozenset(
    """black white red blue green yellow orange purple violet pink brown grey gray beige
    navy silver gold golden cream ivory khaki olive teal turquoise maroon burgundy charcoal
    anthracite natural transparent clear lilac lavender mint coral rose tan camel taupe
    schwarz weiss weiß rot blau grün gruen gelb lila rosa braun grau silber""".split()
) | frozenset(w for group in COLOUR_SYNONYMS for v in group for w in v.split())
# Size words (clothing sizes and their spellings) for the same reason.
SIZE_WORDS: frozenset[str] = frozenset(
    w for group in SIZE_SYNONYMS for v in group for w in v.split()
    if w not in ("extra", "size", "fits", "all", "one", "x", "xx", "xxx")) | frozenset(
    "xxs xs s m l xl xxl xxxl 2xl 3xl 4xl small medium large".split())

_SEP = re.compile(r"[\s\-_.]+")


def fold(word: str) -> str:
    """The form a value is looked up by: casefolded, dashes and dots as single spaces."""
    return _SEP.sub(" ", word.casefold()).strip()


class SynonymTable:
    """Spelling -> canonical word, built from groups of equivalent words."""

    def __init__(self, groups: Iterable[Sequence[str]] = ()):
        self._canon: dict[str, str] = {}
        self.extend(groups)

    def extend(self, groups: Iterable[Sequence[str]]) -> "SynonymTable":
        """Add groups; a group sharing a word with an existing one joins it."""
        for group in groups:
            words = [fold(w) for w in group if fold(w)]
            if not words:
                continue
            targets = {self._canon[w] for w in words if w in self._canon}
            canon = min(targets) if targets else words[0]
            for w, c in list(self._canon.items()):
                if c in targets:
                    self._canon[w] = canon
            for w in words:
                self._canon[w] = canon
        return self

    def canonical(self, word: str) -> str:
        """The canonical form of ``word`` (itself, folded, when it has no synonym)."""
        w = fold(word)
        return self._canon.get(w, w)


def table(defaults: Iterable[Sequence[str]], extra: Iterable[Sequence[str]] | None) -> SynonymTable:
    """A table of the built-in groups plus configured ones."""
    return SynonymTable(defaults).extend(extra or ())


def synonym_groups(value: object) -> list[list[str]]:
    """Validate a config value: an array of arrays of strings."""
    if not isinstance(value, list) or not all(
            isinstance(g, list) and g and all(isinstance(w, str) for w in g) for g in value):
        raise ValueError(f"expected an array of arrays of words, e.g. [[\"grey\", \"charcoal\"]],"
                         f" got {value!r}")
    return value
