"""bench link-train: the feature vector of an assigned pair, the JSON scorer, and the
training command on tiny development sets (read through AUDITOR_DEVSETS)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench import linkscore, linktrain
from bench.linkscore import FEATURES, INDEX, ModelError, features, parse


def _x(ev: dict, **kw) -> dict[str, float]:
    args = {"score": 0.9, "runner": 0.5, "tied": False, "place": 0, "n_candidates": 3,
            "listing_price": 10.0, "master_price": 11.0, "twin": False, "n_words": 6}
    args.update(kw)
    return dict(zip(FEATURES, features(ev, **args), strict=True))


def test_features_read_the_evidence_the_matcher_writes():
    x = _x({"title": 0.83, "codes_agree": ["abc123"], "brand": "same", "price": "close",
            "descriptions_agree": True})
    assert len(x) == len(FEATURES) == len(INDEX)
    assert x["score"] == 0.9 and x["title"] == 0.83 and abs(x["lead"] - 0.4) < 1e-12
    assert (x["codes_agree"], x["codes_partial"], x["codes_differ"]) == (1.0, 0.0, 0.0)
    assert (x["brand_same"], x["brand_in_title"], x["brand_differs"], x["no_brand"]) == \
        (1.0, 0.0, 0.0, 0.0)
    assert x["price_close"] == 1.0 and abs(x["price_log_ratio"] - math.log10(1.1)) < 1e-12
    assert x["descriptions_agree"] == 1.0 and x["no_price"] == 0.0
    assert x["numbers_differ"] == x["twin"] == x["tied"] == x["short_title"] == 0.0
    # a code one the start of the other; codes that differ; a brand that differs
    assert _x({"codes_agree": ["s1500"], "codes_prefix": True})["codes_partial"] == 1.0
    y = _x({"codes_differ": [["a1"], ["b2"]], "brand": "differs", "colours_differ": [[], []],
            "sizes_differ": [[], []], "accessories_differ": [[], []]},
           listing_price=None, tied=True, place=1, twin=True, n_words=2)
    assert (y["codes_agree"], y["codes_differ"], y["brand_differs"]) == (0.0, 1.0, 1.0)
    assert y["variant_differs"] == y["quantities_differ"] == y["accessory"] == 1.0
    assert y["no_price"] == 1.0 and y["price_log_ratio"] == 0.0 and y["price_close"] == 0.0
    # a tie leaves no lead; the place, twin and short title are read
    assert (y["lead"], y["tied"], y["not_first"], y["twin"], y["short_title"]) == \
        (0.0, 1.0, 1.0, 1.0, 1.0)
    # capped: scores above 1.5, leads above 0.5, prices over 10^1.5 apart
    z = _x({}, score=2.4, runner=0.0, master_price=10_000.0)
    assert (z["score"], z["lead"], z["price_log_ratio"], z["no_brand"]) == (1.5, 0.5, 1.5, 1.0)


def _model(weights: dict[str, float], link_p: float = 0.9) -> dict:
    n = len(FEATURES)
    return {"features": list(FEATURES), "weights": [weights.get(f, 0.0) for f in FEATURES],
            "intercept": -1.0, "mean": [0.0] * n, "scale": [1.0] * n, "link_p": link_p,
            "suggest_p": 0.2, "meta": {"fitted_on": ["test"]}}


def test_scorer_is_a_dot_product_and_a_sigmoid_monotonic_in_its_weighted_features():
    m = parse(_model({"title": 3.0, "codes_differ": -2.0, "lead": 1.0}))
    x = [0.0] * len(FEATURES)
    assert m.probability(x) == pytest.approx(1 / (1 + math.exp(1.0)))
    ps = []
    for t in (0.2, 0.5, 0.8, 1.0):
        x[INDEX["title"]] = t
        ps.append(m.probability(x))
    assert ps == sorted(ps) and ps[0] < ps[-1]
    differ = list(x)
    differ[INDEX["codes_differ"]] = 1.0
    assert m.probability(differ) < m.probability(x)
    # extreme scores stay finite and within (0, 1)
    x[INDEX["title"]] = 1e6
    assert m.probability(x) == 1.0
    x[INDEX["title"]] = -1e6
    assert 0.0 <= m.probability(x) < 1e-300 or m.probability(x) == 0.0
    assert parse(m.to_json()) == m  # round trip


def test_bad_coefficients_files_are_refused_with_the_file_named(tmp_path: Path):
    p = tmp_path / "coef.json"
    p.write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match="coef.json"):
        linkscore.load(p)
    bad = _model({})
    bad["features"] = bad["features"][:-1] + ["something_else"]
    p2 = tmp_path / "old.json"
    p2.write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(ModelError, match="old.json.*refit"):
        linkscore.load(p2)
    for key, value in (("scale", [0.0] * len(FEATURES)), ("weights", [1.0]),
                       ("link_p", 0.1)):
        b = _model({})
        b[key] = value
        with pytest.raises(ModelError):
            parse(b, "x")
    b = _model({})
    del b["intercept"]
    with pytest.raises(ModelError, match="intercept"):
        parse(b, "x")


BRANDS = {"amazon_google": ("Acme", "Widget"), "walmart_amazon": ("Zorg", "Gadget")}


def _devset(root: Path, name: str) -> None:
    """Masters with model codes; listings naming them (a few the truth leaves out, a few
    it pairs with a sibling), and listings with no usable title."""
    brand, noun = BRANDS[name]
    d = root / name
    d.mkdir(parents=True)
    m = ["sku,title,description,brand,price,currency"]
    for k in range(16):
        colour = ("black", "white")[k % 2]
        m.append(f"M{k},{brand} {noun} X{100 + 7 * k}Z {colour},,{brand},{20 + 3 * k},USD")
    li = ["listing_id,title,description,brand,price"]
    truth = ["listing_id,sku"]
    for k in range(14):
        colour = ("black", "white")[k % 2]
        words = f"{brand} {noun} X{100 + 7 * k}Z {colour} new" if k % 3 else \
            f"{noun} X{100 + 7 * k}Z"
        li.append(f"L{k},{words},,{brand if k % 4 else ''},{20 + 3 * k + (k % 5)}")
        if k < 9:
            truth.append(f"L{k},M{k}")
        elif k < 12:
            truth.append(f"L{k},M{k + 2}")  # the truth pairs it with another master
    li += ["E1,,,,", "E2,!!!,,,5.00", f"E3,{'x' * 5000},,,"]
    for f, rows in (("master.csv", m), ("listings.csv", li), ("truth.csv", truth)):
        (d / f).write_text("\n".join(rows) + "\n", encoding="utf-8")


@pytest.fixture
def devsets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in BRANDS:
        _devset(tmp_path / "sets", name)
    monkeypatch.setenv("AUDITOR_DEVSETS", str(tmp_path / "sets"))
    return tmp_path


def test_collect_makes_one_row_per_assigned_pair(devsets: Path):
    d = linktrain.collect("amazon_google")
    assert d["X"].shape == (len(d["pairs"]), len(FEATURES))
    keys = [k for k, _s in d["pairs"]]
    assert len(keys) == len(set(keys))  # one master per listing ...
    assert len({s for _k, s in d["pairs"]}) == len(keys)  # ... and one listing per master
    assert not {"E1", "E2", "E3"} & set(keys)  # no usable title: never assigned
    pairs = dict(d["pairs"])
    assert pairs.get("L1") == "M1" and d["y"][keys.index("L1")] == 1
    assert pairs.get("L10") == "M10" and d["y"][keys.index("L10")] == 0  # truth says M12
    assert d["labelled"][keys.index("L10")] and not d["labelled"][keys.index("L13")]
    # the rules' own decision is reproduced from the features (bench.link --curve's way)
    default = [m for m in linktrain.rule_links(d)][
        linktrain.LINK_AT.index(0.8) * len(linktrain.MARGINS) + linktrain.MARGINS.index(0.05)]
    assert (default == d["hand_linked"]).all()


def test_training_command_runs_and_its_saved_scorer_matches_the_fitted_model(devsets: Path):
    out = devsets / "coef.json"
    r = linktrain.run(write=False, save=out, names=("amazon_google", "walmart_amazon"),
                      folds=2)
    assert {row[1] for row in r["cross"]} == {"amazon_google", "walmart_amazon"}
    assert [row[0] for row in r["cross"]].count("hand rules") == 2
    assert len(r["equal_precision"]) == 10 and isinstance(r["better"], bool)
    m = linkscore.load(out)
    assert m.names == FEATURES and m.meta["fitted_on"] == ["amazon_google", "walmart_amazon"]
    assert 0.0 <= m.suggest_p <= m.link_p <= 1.0
    # the JSON scorer (dot product + sigmoid) gives what scikit-learn's model gives
    sets = r["sets"]
    fitted, _t = linktrain.fit_model(list(sets.values()), 1.0, linktrain.TARGET)
    X = np.vstack([d["X"] for d in sets.values()])
    want = fitted.predict_proba(X)[:, 1]
    got = np.array([m.probability(row) for row in X.tolist()])
    assert np.allclose(got, want, atol=1e-5)
