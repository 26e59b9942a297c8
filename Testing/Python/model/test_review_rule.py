"""The review rule fitted on out-of-source predictions (model/review_rule.py) and its use by the classifier."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from SeqClassifierLib.model.review_rule import (ReviewRule, Scores, cross_validated, fit_review_rule, risk_coverage,
                                                rule_flags)


def _scores(seed=0, n=400):
    """Right predictions mostly confident; mistakes: half unsure, half sure but contradicting evidence;
    a 'weak' distance that is high for a random 30 % of all predictions, right or wrong."""
    rng = np.random.default_rng(seed)
    wrong = np.zeros(n, dtype=bool)
    wrong[:40] = True
    conf = np.where(wrong, 0.0, rng.uniform(0.85, 1.0, n))
    conf[:20] = rng.uniform(0.4, 0.7, 20)          # unsure mistakes
    conf[20:40] = rng.uniform(0.9, 0.99, 20)       # sure mistakes ...
    conflicts = [{"dwi_without_diffusion"} if i < 40 and i >= 20 else set() for i in range(n)]  # ... caught by evidence
    conflicts[50] = {"dwi_without_diffusion"}      # one right prediction with the same conflict
    conflicts[60] = {"localizer"}
    weak = rng.uniform(0, 1, n) + (rng.uniform(0, 1, n) < 0.3) * 10
    return Scores(conf, wrong, {"header": weak}, conflicts, np.zeros(n, dtype=bool))


def test_fit_picks_the_signals_that_catch_mistakes_and_skips_weak_ones():
    s = _scores()
    rule = fit_review_rule(s, target=0.9)
    assert rule.conflicts == ("dwi_without_diffusion",)
    assert "header" not in rule.distances           # flags right and wrong alike: never chosen
    flagged = rule_flags(rule, s)
    cov = (flagged & s.wrong).sum() / s.wrong.sum()
    fa = (flagged & ~s.wrong).sum() / (~s.wrong).sum()
    assert cov >= 0.9 and fa <= 0.02
    assert rule.fitted["coverage"] == pytest.approx(round(cov, 4))
    # confidence alone needs a threshold above the sure mistakes: far more false alarms
    alone = fit_review_rule(Scores(s.confidence, s.wrong, {}, [set()] * len(s), s.quality_low), target=0.9)
    assert alone.conflicts == () and alone.fitted["false_alarm_rate"] > 0.3


def test_threshold_raised_to_the_floor_only_within_the_false_alarm_budget():
    rng = np.random.default_rng(3)
    wrong = np.zeros(200, dtype=bool)
    wrong[:10] = True
    conf = np.where(wrong, rng.uniform(0.4, 0.6, 200), rng.uniform(0.95, 1.0, 200))
    conf[10:16] = 0.85                                    # 6 right predictions (3 %) between the two
    s = Scores(conf, wrong, {}, [set()] * 200, np.zeros(200, dtype=bool))
    assert fit_review_rule(s, 0.9, floor=0.5).confidence < 0.61
    raised = fit_review_rule(s, 0.9)                      # floor 0.90, 3 % false alarms: within 10 %
    assert raised.confidence == 0.90 and raised.fitted["false_alarm_rate"] == pytest.approx(6 / 190, abs=1e-3)
    assert fit_review_rule(s, 0.9, max_false_alarms=0.02).confidence < 0.61  # over budget: not raised


def test_rule_round_trips_and_is_validated():
    rule = fit_review_rule(_scores(), target=0.9)
    back = ReviewRule.from_dict(rule.to_dict())
    assert back.conflicts == rule.conflicts and back.confidence == pytest.approx(rule.confidence, abs=1e-4)
    with pytest.raises(ValueError, match="unknown evidence check"):
        ReviewRule.from_dict({"confidence": 0.8, "conflicts": ["no_such_check"]})
    with pytest.raises(ValueError, match="not in \\[0, 1\\]"):
        ReviewRule.from_dict({"confidence": 7})
    with pytest.raises(ValueError, match="not a finite number"):
        ReviewRule.from_dict({"confidence": 0.8, "distances": {"header": float("nan")}})
    with pytest.raises(ValueError, match="unknown distance place"):
        ReviewRule.from_dict({"confidence": 0.8, "distances": {"elsewhere": 3.0}})


def test_cross_validation_by_source_and_risk_coverage():
    s = _scores(n=400)
    groups = ["a"] * 100 + ["b"] * 100 + ["c"] * 100 + ["d"] * 100
    # mistakes spread over the sources
    order = np.random.default_rng(1).permutation(400)
    s = Scores(s.confidence[order], s.wrong[order], {k: v[order] for k, v in s.distances.items()},
               [s.conflicts[i] for i in order], s.quality_low[order])
    cv = cross_validated(s, groups, target=0.9)
    assert set(cv["per_source"]) == {"a", "b", "c", "d"}
    assert cv["coverage"] >= 0.8 and cv["false_alarm_rate"] <= 0.05
    curve = risk_coverage(s, fit_review_rule(s, 0.9))
    assert curve[0]["threshold"] == 0.0 and curve[-1]["coverage"] == 0.0
    risks = [p["risk"] for p in curve if p["coverage"] > 0]
    assert risks[-1] <= risks[0]                    # the more is flagged, the fewer mistakes are left


def test_classifier_follows_the_card_rule(tmp_path, prostatex):
    """The shipped model with a rule in its card: only the named signals flag; other conflicts become notes."""
    from SeqClassifierLib.dicom.discovery import discover_series
    from SeqClassifierLib.model.checkpoint import update_card
    from SeqClassifierLib.model.classifier import Classifier, assets_dir

    for f in assets_dir().glob("seqclassifier_default.*"):
        shutil.copy(f, tmp_path / f.name)
    card = tmp_path / "seqclassifier_default.json"
    update_card(card, review_rule={"confidence": 0.0, "distances": {}, "conflicts": [], "quality": False},
                decision_rules=["no_diffusion_encoding"])
    records = discover_series(prostatex).series
    clf = Classifier(card, device="cpu", precision="fp32")
    assert clf.review_threshold == 0.0 and clf.decision_rules == ["no_diffusion_encoding"]
    assert clf._model.ood.thresholds  # the card's thresholds stay (the site memory measures in them)
    preds = clf.classify(records)
    assert not any(p.needs_review for p in preds)
    plain = Classifier(None, device="cpu", precision="fp32").classify(records)
    assert [p.label for p in preds] == [p.label for p in plain]
    update_card(card, review_rule={"confidence": 0.999999, "distances": {}, "conflicts": [], "quality": False})
    strict = Classifier(card, device="cpu", precision="fp32").classify(records)
    assert all(p.needs_review and p.review_reasons[0].startswith("low confidence") for p in strict
               if p.confidence < 0.999999)
    # both are validated with the rest of the typed card, and the message names the card
    from SeqClassifierLib.model.card import CardError

    update_card(card, review_rule={"confidence": 0.5, "conflicts": ["no_such_check"]})
    with pytest.raises(CardError, match="seqclassifier_default.json: review rule: unknown evidence check"):
        Classifier(card, device="cpu", precision="fp32")
    update_card(card, review_rule=None, decision_rules=["no_such_rule"])
    with pytest.raises(CardError, match="decision_rules names unknown decision rules"):
        Classifier(card, device="cpu", precision="fp32")
