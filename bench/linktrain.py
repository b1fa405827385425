"""Fit the link scorer (``bench.linkscore``) and measure it across sets against the rules.

For each set (the two devsets and the generated world with one channel's keys stripped,
as ``bench.link`` reads them) the channel is ranked and assigned exactly as a run does
(``rank_all``, ``greedy``), and every pair the assignment made becomes one row: the
pair's feature vector (``linkscore.pair_features``, from the evidence the matcher
computes) and whether the set's truth has that pair. A logistic regression (scikit-learn,
a bench-only dependency: the run scores with the shipped coefficients) is fitted on
those rows.

Measured honestly, never on the rows a model was fitted on:

* **across sets**: fitted on Amazon-Google + world, measured on Walmart-Amazon; and the
  reverse; each beside the hand rules' links on the same set;
* **grouped k-fold** within each set: the rows of one master never span training and test.

The probability from which a pair is ``linked`` is chosen on the training rows' own
out-of-fold probabilities (grouped k-fold), as the lowest at which each training set's
precision reaches ``--target`` (precision over the listings the truth labels:
``bench.link``'s measured precision counts links of listings the truth has no pair for as
false, though both truths miss true matches).

The decisive table compares the two scorers **at equal precision** on each held-out set:
the recall of the model fitted on the other sets at its best threshold, and the recall of
the rules at their best ``link_score`` x ``link_margin`` (as ``bench.link --curve``
decides), both reaching the same precision (the precision of the rules' default links,
and fixed levels; measured against truth.csv and over the listings it labels). The
verdict line says whether the model wins everywhere; it did not (docs/benchmarks.md,
"Linking, ninth pass"), so runs keep the rules.

    python -m bench link-train --no-write           # tables only
    python -m bench link-train --save-coefficients out.json   # also the model fitted on all
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

TARGET = 0.95
SUGGEST_P = 0.2


def collect(name: str, size: int = 2000, sample: int | None = None) -> dict[str, Any]:
    """One set's assigned pairs: features ``X``, labels ``y``, the master of each (the
    group), whether the truth labels the listing, the hand rules' state, and what the
    confident + suggested scoring needs (the truth, the listings the hand rules suggest
    without assigning). ``sample``: the first N listings only (tests)."""
    from auditor.linkbatch import (LINKED, SUGGESTED, decide_flat, evidence_all, greedy,
                                   rank_all, twins_flat)
    from auditor.linking import LINK_MARGIN, LINK_SCORE, SUGGEST_SCORE, Linker
    from bench.linkscore import pair_features
    from bench.link import load_devset, load_world

    master, listings, truth = load_world(size) if name == "world" else load_devset(name)
    if sample is not None:
        listings = listings[:sample]
        keys = {li.key for li in listings}
        truth = {t for t in truth if t[0] in keys}
    idx = Linker(master, {}).match_index
    ranks = rank_all(idx, listings, {}, 1)
    got = greedy(ranks.flat, SUGGEST_SCORE, (), [li.key for li in listings])
    dec = decide_flat(ranks.flat, got, LINK_SCORE, SUGGEST_SCORE, LINK_MARGIN)
    twins_flat(idx, ranks, dec, LINK_SCORE, listings)
    wanted = {p: int(dec.index[p]) for p in np.flatnonzero(got >= 0).tolist()}
    evidence = evidence_all(idx, listings, wanted, 1, ranks)
    ps, xs, twins = pair_features(idx, listings, ranks.flat, ranks.starts, got, evidence)
    labelled = {lid for lid, _s in truth}
    pairs = [(listings[p].key, idx.skus[int(dec.index[p])]) for p in ps]
    hand = [int(dec.state[p]) for p in ps]
    # suggested by the hand rules without an assignment (a second listing of a master):
    # the same under both scorers
    extra = [(listings[p].key, idx.skus[int(dec.index[p])])
             for p in np.flatnonzero((got < 0) & (dec.state == SUGGESTED)).tolist()]
    return {"set": name, "X": np.array(xs, dtype=float).reshape(len(xs), -1),
            "y": np.array([pr in truth for pr in pairs], dtype=int),
            "groups": np.array([s for _k, s in pairs]),
            "labelled": np.array([k in labelled for k, _s in pairs], dtype=bool),
            "hand_linked": np.array([h == LINKED for h in hand], dtype=bool),
            "hand_suggested": np.array([h == SUGGESTED for h in hand], dtype=bool),
            "twin_score": np.array(twins, dtype=float),
            "pairs": pairs, "extra": extra, "truth": truth}


def _fit(X: np.ndarray, y: np.ndarray, C: float) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000)).fit(X, y)


def _prob(model: Any, X: np.ndarray) -> np.ndarray:
    return model.predict_proba(X)[:, 1] if len(X) else np.zeros(0)


def oof(X: np.ndarray, y: np.ndarray, groups: np.ndarray, C: float, k: int = 5,
        seed: int = 0) -> np.ndarray:
    """Out-of-fold probabilities, grouped by master (``GroupKFold``, shuffled)."""
    from sklearn.model_selection import GroupKFold

    out = np.zeros(len(y))
    n = min(k, len(set(groups.tolist())))
    if n < 2 or len(set(y.tolist())) < 2:
        return np.full(len(y), float(y.mean()) if len(y) else 0.0)
    for tr, te in GroupKFold(n_splits=n, shuffle=True, random_state=seed).split(X, y, groups):
        if len(set(y[tr].tolist())) < 2:
            out[te] = float(y[tr].mean())
            continue
        out[te] = _prob(_fit(X[tr], y[tr], C), X[te])
    return out


def threshold(p: np.ndarray, y: np.ndarray, labelled: np.ndarray, target: float) -> float:
    """The lowest probability from which the pairs' precision over labelled listings
    reaches ``target`` (1.0 when none does)."""
    m = labelled
    ps, ys = p[m], y[m]
    order = np.argsort(-ps, kind="stable")
    ps, ys = ps[order], ys[order]
    if not len(ps):
        return 1.0
    prec = np.cumsum(ys) / np.arange(1, len(ys) + 1)
    # the largest prefix with precision >= target (ignoring the first 20 pairs' noise)
    ok = np.flatnonzero((prec >= target) & (np.arange(len(ys)) >= min(20, len(ys) - 1)))
    return float(ps[ok[-1]]) if len(ok) else 1.0


def measure(d: dict[str, Any], linked: np.ndarray, suggested: np.ndarray) -> dict[str, Any]:
    """P / R / F1 of the confident links (and with the suggested ones) on one set, as
    ``bench.link`` scores them, plus the precision over labelled listings."""
    from bench.link import prf

    pairs, truth = d["pairs"], d["truth"]
    conf = [pr for pr, m in zip(pairs, linked, strict=True) if m]
    sugg = [pr for pr, m in zip(pairs, suggested, strict=True) if m] + d["extra"]
    r = prf(conf, truth)
    lab = linked & d["labelled"]
    r["labelled_precision"] = float(d["y"][lab].mean()) if lab.any() else 0.0
    r["with_suggested"] = prf(conf + sugg, truth)
    return r


def _stack(ds: Sequence[dict[str, Any]]) -> tuple[np.ndarray, ...]:
    return (np.vstack([d["X"] for d in ds]), np.concatenate([d["y"] for d in ds]),
            np.concatenate([np.char.add(d["set"] + ":", d["groups"].astype(str)) for d in ds]),
            np.concatenate([d["labelled"] for d in ds]))


def fit_model(ds: Sequence[dict[str, Any]], C: float, target: float,
              labelled_only: bool = False) -> tuple[Any, float]:
    """A model fitted on the sets ``ds`` and its link threshold (from grouped out-of-fold
    probabilities on the same sets)."""
    X, y, g, lab = _stack(ds)
    sets = np.concatenate([np.full(len(d["y"]), n) for n, d in enumerate(ds)])
    if labelled_only:
        X, y, g, lab, sets = X[lab], y[lab], g[lab], lab[lab], sets[lab]
    # the threshold each set needs, the highest of them: a set that is easy (the world)
    # must not lower the bar for the others
    p = oof(X, y, g, C)
    t = max(threshold(p[sets == n], y[sets == n], lab[sets == n], target)
            for n in range(len(ds)))
    return _fit(X, y, C), t


def row(train: str, test: str, r: dict[str, Any], t: float | None) -> list[Any]:
    s = r["with_suggested"]
    return [train, test, "-" if t is None else f"{t:.3f}", r["predicted"],
            f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}",
            f"{r['labelled_precision']:.3f}", f"{s['precision']:.3f} / {s['recall']:.3f} / "
            f"{s['f1']:.3f}"]


COLUMNS = ["fitted on", "measured on", "link_p", "links", "P", "R", "F1", "P labelled",
           "with suggested P / R / F1"]


def cross(sets: dict[str, dict[str, Any]], C: float, target: float,
          labelled_only: bool = False, k: int = 5) -> list[list[Any]]:
    """The validation table: hand rules, across sets, grouped k-fold within each set."""
    rows: list[list[Any]] = []
    names = list(sets)
    for test in names:
        d = sets[test]
        rows.append(row("hand rules", test, measure(d, d["hand_linked"], d["hand_suggested"]),
                        None))
        train = [sets[n] for n in names if n != test]
        if train:
            model, t = fit_model(train, C, target, labelled_only)
            p = _prob(model, d["X"])
            rows.append(row(" + ".join(n for n in names if n != test), test,
                            measure(d, p >= t, (p < t) & (p >= SUGGEST_P)), t))
        # grouped k-fold within the set; each fold's threshold from its own training rows
        from sklearn.model_selection import GroupKFold

        X, y, g, lab = d["X"], d["y"], d["groups"], d["labelled"]
        p = np.zeros(len(y))
        link = np.zeros(len(y), dtype=bool)
        n = min(k, len(set(g.tolist())))
        for tr, te in GroupKFold(n_splits=n, shuffle=True, random_state=0).split(X, y, g):
            sub = {"set": test, "X": X[tr], "y": y[tr], "groups": g[tr], "labelled": lab[tr]}
            model, t = fit_model([sub], C, target, labelled_only)
            p[te] = _prob(model, X[te])
            link[te] = p[te] >= t
        rows.append(row(f"{test} ({n}-fold by master)", test,
                        measure(d, link, ~link & (p >= SUGGEST_P)), None))
    return rows


def save_model(model: Any, t: float, sets: Sequence[str], path: Path, C: float,
               target: float, labelled_only: bool) -> dict[str, Any]:
    """Write the fitted pipeline's coefficients as ``linkscore.Model`` JSON."""
    from bench.linkscore import FEATURES, Model

    scaler, lr = model.steps[0][1], model.steps[1][1]
    m = Model(FEATURES, tuple(float(w) for w in lr.coef_[0]), float(lr.intercept_[0]),
              tuple(float(v) for v in scaler.mean_), tuple(float(v) or 1.0 for v in scaler.scale_),
              round(t, 4), SUGGEST_P,
              {"fitted_on": list(sets), "C": C, "target_precision": target,
               "labelled_only": labelled_only,
               "how": "python -m bench link-train (bench/linktrain.py)"})
    path.write_text(json.dumps(m.to_json(), indent=1) + "\n", encoding="utf-8")
    return m.to_json()


LINK_AT = tuple(round(0.5 + 0.05 * k, 2) for k in range(17))   # 0.5 .. 1.3
MARGINS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)  # (below the 0.5 cap of the lead feature)


def _points(d: dict[str, Any], links: Any) -> list[tuple[float, float, float]]:
    """(precision, recall, precision over labelled listings) of each candidate link set."""
    y, lab, n_true = d["y"].astype(bool), d["labelled"], len(d["truth"])
    out = []
    for m in links:
        n, nl = int(m.sum()), int((m & lab).sum())
        tp = int((y & m).sum())
        out.append((tp / n if n else 0.0, tp / n_true if n_true else 0.0,
                    int((y & m & lab).sum()) / nl if nl else 0.0))
    return out


def rule_links(d: dict[str, Any]) -> Any:
    """The rules' links at each ``link_score`` x ``link_margin`` (``MARGINS``), decided as
    ``matching.decide`` and ``twin_links`` decide (``bench.link.curve``)."""
    from bench.linkscore import INDEX

    x = d["X"]
    score, lead = x[:, INDEX["score"]], x[:, INDEX["lead"]]
    for la in LINK_AT:
        for m in MARGINS:
            yield (score >= la) & (lead >= m) & (d["twin_score"] < la)


def best_recall(points: list[tuple[float, float, float]], which: int, level: float
                ) -> tuple[float, float, float] | None:
    ok = [pt for pt in points if pt[which] >= level - 1e-9]
    return max(ok, key=lambda pt: pt[1], default=None)


def _cell(pt: tuple[float, float, float] | None) -> str:
    return "none reaches it" if pt is None else \
        f"{pt[1]:.3f} (P {pt[0]:.3f}, P labelled {pt[2]:.3f})"


def equal_precision(sets: dict[str, dict[str, Any]], C: float, labelled_only: bool,
                    k: int = 5) -> tuple[list[list[Any]], bool]:
    """Recall of the model and of the rules at equal precision, per held-out devset: the
    model fitted on the other sets, and (rows marked so) its grouped k-fold out-of-fold
    probabilities within the set. Also whether the model fitted on the other sets has at
    least the rules' recall at every level on every set, and more somewhere (the
    verdict: the k-fold rows, fitted in the set's own domain, do not count)."""
    rows: list[list[Any]] = []
    wins, ties_or_wins = False, True
    for test in [n for n in sets if n != "world"]:
        d = sets[test]
        train = [sets[n] for n in sets if n != test]
        X, y, _g, lab = _stack(train)
        if labelled_only:
            X, y = X[lab], y[lab]
        p = _prob(_fit(X, y, C), d["X"])
        model = _points(d, (p >= t for t in np.unique(np.round(p, 3))))
        m = d["labelled"] if labelled_only else np.ones(len(d["y"]), dtype=bool)
        q = np.zeros(len(d["y"]))
        q[m] = oof(d["X"][m], d["y"][m], d["groups"][m], C, k)
        if labelled_only:  # unlabelled listings scored by a model fitted on all labelled ones
            q[~m] = _prob(_fit(d["X"][m], d["y"][m], C), d["X"][~m]) if (~m).any() else q[~m]
        folds = _points(d, (q >= t for t in np.unique(np.round(q, 3))))
        rules = _points(d, rule_links(d))
        default = _points(d, [d["hand_linked"]])[0]
        levels = [(0, default[0], "P of the rules' default links"),
                  (2, default[2], "P labelled of the rules' default links"),
                  (0, 0.95, "P (the target)"), (2, 0.95, "P labelled"), (2, 0.97, "P labelled")]
        for which, level, what in levels:
            a, b = best_recall(model, which, level), best_recall(rules, which, level)
            ra, rb = (a[1] if a else 0.0), (b[1] if b else 0.0)
            wins |= ra > rb + 1e-9
            ties_or_wins &= ra >= rb - 1e-9
            rows.append([test, f"{what} >= {level:.3f}", _cell(a),
                         _cell(best_recall(folds, which, level)), _cell(b)])
    return rows, wins and ties_or_wins


def run(size: int = 2000, write: bool = True, save: Path | None = None,
        names: Sequence[str] = ("amazon_google", "walmart_amazon", "world"), C: float = 1.0,
        target: float = TARGET, labelled_only: bool = False, folds: int = 5,
        sample: int | None = None, command: str | None = None) -> dict[str, Any]:
    """Collect, validate, print (and record in docs/benchmarks.md unless not ``write``);
    ``save``: also write the model fitted on all ``names`` there."""
    from bench.common import record, table

    sets = {n: collect(n, size, sample) for n in names}
    cross_rows = cross(sets, C, target, labelled_only, folds)
    eq_rows, better = equal_precision(sets, C, labelled_only, folds)
    tables = [
        table(f"Link scorer (logistic regression, C={C}{', labelled listings only' if labelled_only else ''}) "
              f"at its own threshold (each training set's out-of-fold precision over labelled "
              f"listings >= {target}) beside the rules' default links", COLUMNS, cross_rows),
        table("Recall at equal precision on each held-out set: the model fitted on the other "
              f"sets ({' + '.join(names[1:])} for {names[0]}, ...) at its best threshold; the "
              f"model's grouped {folds}-fold out-of-fold probabilities within the set (fitted "
              "in the set's own domain); the rules at their best link_score x link_margin "
              "(every threshold chosen on the held-out set itself)",
              ["held out", "precision at least", "model, other sets: R",
               f"model, {folds}-fold in the set: R", "rules: R"], eq_rows)]
    verdict = ("the fitted scorer beats the rules at equal precision on every held-out set"
               if better else "the fitted scorer does NOT beat the rules at equal precision "
               "on every held-out set: runs keep the rules")
    tables.append(f"Verdict: {verdict}.")
    if save is not None:
        model, t = fit_model(list(sets.values()), C, target, labelled_only)
        js = save_model(model, t, names, save, C, target, labelled_only)
        tables.append(table(
            "The model fitted on all the sets, measured on them (in-sample: NOT a measurement "
            "of how it generalises; the tables above are)", COLUMNS,
            [row("all (in-sample)", n, measure(d, (p := _prob(model, d["X"])) >= t,
                                              (p < t) & (p >= SUGGEST_P)), t)
             for n, d in sets.items()]))
        tables.append(f"Coefficients fitted on all of {', '.join(names)} (link_p {js['link_p']}) "
                      f"written to {save}: " + ", ".join(
                          f"{n} {w:+.3f}" for n, w in sorted(
                              zip(js["features"], js["weights"], strict=True),
                              key=lambda v: -abs(v[1]))))
    record("Linking: fitted scorer across sets", tables, write, command)
    return {"sets": sets, "cross": cross_rows, "equal_precision": eq_rows, "better": better}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", choices=["amazon_google", "walmart_amazon",
                                                       "world"])
    ap.add_argument("--size", type=int, default=2000, help="world SKUs")
    ap.add_argument("--sample", type=int, help="the first N listings of each set (tests)")
    ap.add_argument("--C", type=float, default=1.0, help="inverse L2 strength")
    ap.add_argument("--target", type=float, default=TARGET,
                    help="precision (over labelled listings) the link threshold aims at")
    ap.add_argument("--labelled-only", action="store_true",
                    help="fit on the pairs of listings the truth labels only")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--save-coefficients", type=Path, metavar="PATH")
    ap.add_argument("--no-write", action="store_true", help="print only")
    a = ap.parse_args(argv)
    run(a.size, not a.no_write, a.save_coefficients,
        a.set or ("amazon_google", "walmart_amazon", "world"), a.C, a.target,
        a.labelled_only, a.folds, a.sample, "python bench/linktrain.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
