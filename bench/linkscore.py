"""A fitted probability that a listing's assigned master is the right one (measured, not
shipped: see below).

The matcher (``auditor.matching``) ranks each listing's candidates by a hand-weighted sum
of evidence, and the channel-wide one-to-one assignment (``linkbatch.greedy``) gives each
listing at most one master. This module would re-decide only the *state* of each assigned
pair: it turns the evidence the matcher already computed for the pair (``MatchIndex.score``
with ``explain``: title similarity, model codes, brand, numbers, price, descriptions,
specifications ...) plus the pair's place in the listing's ranking (its lead over the next
candidate, a tie, a twin record) into a feature vector (``features``), and scores it with
a logistic regression fitted offline (``python -m bench link-train``): a dot product and
a sigmoid over coefficients kept as JSON (``Model``), so that a run would need no
training library.

``linked`` when the probability is at least ``Model.link_p`` (chosen when fitting so that
held-out precision reaches the target), ``suggested`` from ``Model.suggest_p``, else
``unlinked`` (the master stays taken: the assignment is not redone).

**Not used by runs.** Measured across sets (``bench/linktrain.py``, docs/benchmarks.md
"Linking, ninth pass"), the fitted scorer does not beat the hand-weighted rules at the
same precision on both held-out sets, so a run decides with the rules
(``matching.decide``) and this module stays a bench tool: ``python -m bench link-train``
refits it and prints the comparison, ``--save-coefficients`` writes the JSON a runtime
scorer would load (``load``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence


# Names of the features, in order (``features``); the coefficients file lists them too and
# must agree. Each is 0/1 unless said.
FEATURES: tuple[str, ...] = (
    "score",               # the hand-weighted score of the pair (capped to [0, 1.5])
    "title",               # title similarity (0-1)
    "lead",                # the score's lead over the listing's next candidate (capped 0.5)
    "tied",                # another candidate scores within TIE
    "not_first",           # the assignment gave it a candidate other than its first
    "candidates",          # candidates ranked, / KEEP
    "codes_agree",         # a model code both name (a rare one, exactly)
    "codes_partial",       # a code both name that many masters share, or one the start of the other
    "codes_differ",        # each names its model, not the same one
    "brand_same",
    "brand_in_title",      # the master's brand named in the listing's title
    "brand_differs",
    "no_brand",            # no brand comparison was possible
    "price_close",         # within 30%
    "price_log_ratio",     # log10 of how far apart the prices are (capped 1.5; 0 without)
    "no_price",            # one side has no price
    "quantities_differ",   # a quantity with a unit differs (or two sizes)
    "numbers_differ",
    "variant_differs",     # colours or platforms differ
    "editions_differ",
    "descriptions_agree",
    "specs_differ",
    "bundle",
    "accessory",           # an accessory named on one side only, or two of no common kind
    "twin",                # another candidate is a twin record of the master (same title/codes)
    "short_title",         # the listing's title has at most three words
)
INDEX = {n: k for k, n in enumerate(FEATURES)}


def features(ev: Mapping[str, Any], score: float, runner: float, tied: bool, place: int,
             n_candidates: int, listing_price: float | None, master_price: float | None,
             twin: bool, n_words: int, keep: int = 6) -> list[float]:
    """The feature vector of one (listing, assigned master) pair: ``ev`` is the pair's
    evidence as ``MatchIndex.score(..., explain=True)`` gives it; ``runner`` the best
    score among the listing's other candidates (0.0: none); ``place`` the assigned
    candidate's place in the listing's ranking; ``n_words`` the words of its title."""
    x = [0.0] * len(FEATURES)
    x[0] = min(max(score, 0.0), 1.5)
    x[1] = float(ev.get("title", 0.0))
    x[2] = 0.0 if tied else min(max(score - runner, 0.0), 0.5)
    x[3] = float(tied)
    x[4] = float(place > 0)
    x[5] = min(n_candidates, keep) / keep
    if "codes_agree" in ev:
        if ev.get("codes_prefix"):
            x[7] = 1.0
        else:
            x[6] = 1.0
    elif "codes_differ" in ev:
        x[8] = 1.0
    b = ev.get("brand")
    x[9], x[10], x[11] = float(b == "same"), float(b == "in title"), float(b == "differs")
    x[12] = float(b is None)
    if listing_price and master_price and listing_price > 0 and master_price > 0:
        r = max(listing_price, master_price) / min(listing_price, master_price)
        x[13] = float(r <= 1.3)
        x[14] = min(math.log10(r), 1.5)
    else:
        x[15] = 1.0
    x[16] = float("quantities_differ" in ev or "sizes_differ" in ev)
    x[17] = float("numbers_differ" in ev)
    x[18] = float("colours_differ" in ev or "platforms_differ" in ev)
    x[19] = float("editions_differ" in ev)
    x[20] = float("descriptions_agree" in ev)
    x[21] = float("specs_differ" in ev)
    x[22] = float("bundle" in ev)
    x[23] = float("accessory" in ev or "accessories_differ" in ev)
    x[24] = float(twin)
    x[25] = float(n_words <= 3)
    return x


@dataclass(frozen=True)
class Model:
    """Fitted coefficients: ``p = sigmoid(intercept + sum(w * (x - mean) / scale))``."""

    names: tuple[str, ...]
    weights: tuple[float, ...]
    intercept: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    link_p: float          # linked from this probability
    suggest_p: float       # suggested from this one
    meta: Mapping[str, Any]

    def probability(self, x: Sequence[float]) -> float:
        z = self.intercept
        for w, v, m, s in zip(self.weights, x, self.mean, self.scale, strict=True):
            z += w * (v - m) / s
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    def to_json(self) -> dict[str, Any]:
        return {"features": list(self.names), "weights": [round(w, 6) for w in self.weights],
                "intercept": round(self.intercept, 6), "mean": [round(m, 6) for m in self.mean],
                "scale": [round(s, 6) for s in self.scale], "link_p": self.link_p,
                "suggest_p": self.suggest_p, "meta": dict(self.meta)}


class ModelError(ValueError):
    """The coefficients file is missing, unreadable or does not fit ``FEATURES``."""


def parse(data: Mapping[str, Any], where: str = "coefficients") -> Model:
    """A ``Model`` from its JSON form, checked against ``FEATURES``."""
    try:
        names = tuple(str(n) for n in data["features"])
        if names != FEATURES:
            raise ModelError(f"{where}: features {list(names)} are not {list(FEATURES)} "
                             "(refit with `python -m bench link-train`)")
        n = len(names)
        weights = tuple(float(w) for w in data["weights"])
        mean = tuple(float(m) for m in data["mean"])
        scale = tuple(float(s) for s in data["scale"])
        if not len(weights) == len(mean) == len(scale) == n:
            raise ModelError(f"{where}: weights, mean and scale need {n} numbers each")
        if any(s <= 0 or not math.isfinite(s) for s in scale) or \
                not all(map(math.isfinite, weights + mean)):
            raise ModelError(f"{where}: a weight, mean or scale is not a finite number "
                             "(scales must be > 0)")
        link_p, suggest_p = float(data["link_p"]), float(data["suggest_p"])
        if not 0.0 <= suggest_p <= link_p <= 1.0:
            raise ModelError(f"{where}: need 0 <= suggest_p <= link_p <= 1")
        return Model(names, weights, float(data["intercept"]), mean, scale, link_p,
                     suggest_p, dict(data.get("meta") or {}))
    except (KeyError, TypeError) as e:
        raise ModelError(f"{where}: {type(e).__name__}: {e}") from None


@lru_cache(maxsize=4)
def load(path: Path) -> Model:
    """Coefficients written by ``python -m bench link-train --save-coefficients``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: cannot read the link scorer's coefficients: {e}") from None
    return parse(data, str(path))


def pair_features(idx: Any, listings: Sequence[Any], flat: Any, starts: Any, got: Any,
                  evidence: Mapping[int, Mapping[str, Any]]
                  ) -> tuple[list[int], list[list[float]], list[float]]:
    """The listings the assignment gave a master (``got[p]`` >= 0: the place of it in the
    listing's ranking ``flat``, as ``linkbatch.greedy`` gives it) and the feature vector of
    each pair (``evidence``: by position, the pair's evidence, as ``evidence_all`` reads
    it), and for each the best score of another of its candidates that is a twin record
    of its master (``MatchIndex.twins``, the price not telling them apart; -inf: none),
    which ``matching.twin_links`` compares with ``link_score``. Reads nothing the ranking
    did not: the scores of the listing's candidates, the masters' prices and ``twins``."""
    from auditor.matching import KEEP, TIE, price_tells_apart

    counts, scores, masters = flat
    cl, sl, ml, st = counts.tolist(), scores.tolist(), masters.tolist(), starts.tolist()
    prices = idx.prices
    ps: list[int] = []
    xs: list[list[float]] = []
    twins: list[float] = []
    for p in [int(q) for q in (got >= 0).nonzero()[0]]:
        k, s, c = int(got[p]), st[p], cl[p]
        sc, i = sl[s + k], ml[s + k]
        others = [(sl[s + n], ml[s + n]) for n in range(c) if n != k]
        runner = max((o for o, _j in others), default=0.0)
        tied = any(abs(sc - o) < TIE for o, _j in others)
        li = listings[p]
        lp = float(li.price.amount) if li.price is not None else None
        twin = max((o for o, j in others if idx.twins(i, j) is not None and
                    not price_tells_apart(lp, prices[i], prices[j])), default=-math.inf)
        ps.append(p)
        twins.append(twin)
        xs.append(features(evidence.get(p, {}), sc, runner, tied, k, c, lp, prices[i],
                           twin >= sc - 0.2, len((li.title or "").split()), KEEP))
    return ps, xs, twins
