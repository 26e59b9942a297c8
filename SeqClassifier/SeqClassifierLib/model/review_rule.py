"""The review rule: which scores flag a prediction, with thresholds fitted on real out-of-source predictions.

A flag is only useful if it separates right from wrong.  The first rules were
fitted on synthetic held-out series and flagged 96 % of the right real
predictions.  :class:`ReviewRule` is fitted (:func:`fit_review_rule`) on
predictions of **real** series each made by a model that never saw the
series' source (``training.by_source``), and holds:

``confidence``  flag below this probability of the predicted class;
``distances``   ``{place: threshold}`` of the distance places (``model.ood``) that, on
                those predictions, catch mistakes the others miss; places not named never flag;
``conflicts``   the evidence checks (``model.evidence.CHECKS``) that flag; the others are
                shown in the row's note, not as a review reason;
``quality``     whether a slice of low image quality flags.

Fitting is greedy forward selection: start from confidence alone (the lowest
threshold that flags ``target`` of the wrong predictions); add, one at a
time, the signal (a check, low quality, or a place at one of a few quantiles
of the right predictions' distances) that lowers the false-alarm rate most
at that coverage, while it lowers it by at least ``min_gain``.  The
confidence threshold is then raised to the panel's green (0.90) when the
false alarms stay within 10 %: a margin for sources the fit never saw.  A signal
that flags no more mistakes than its share of right predictions never
helps, so a blank description or an unseen vendor flags nothing on its own
unless the data show it predicts mistakes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from SeqClassifierLib.model.evidence import CHECKS
from SeqClassifierLib.model.places import PLACES

#: Share of wrong out-of-source predictions the rule must flag.
TARGET_COVERAGE = 0.90
#: The confidence threshold stays within these bounds.
CONFIDENCE_BOUNDS = (0.5, 0.99)
#: Quantiles of the right predictions' distances tried as a place's threshold.
DISTANCE_QUANTILES = (0.90, 0.95, 0.98, 0.99, 1.0)


@dataclass(frozen=True)
class ReviewRule:
    confidence: float
    distances: Mapping[str, float] = field(default_factory=dict)
    conflicts: tuple = ()
    quality: bool = False
    #: How it was fitted (for the card): target, counts, coverage and false-alarm rate on the fitting data.
    fitted: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        lo, hi = 0.0, 1.0
        if not (isinstance(self.confidence, (int, float)) and lo <= float(self.confidence) <= hi):
            raise ValueError(f"review rule: confidence threshold {self.confidence!r} is not in [0, 1]")
        for place, t in self.distances.items():
            if place not in PLACES:
                raise ValueError(f"review rule: unknown distance place {place!r}")
            if not (isinstance(t, (int, float)) and math.isfinite(float(t)) and float(t) >= 0):
                raise ValueError(f"review rule: threshold of place {place!r} is {t!r}, not a finite number >= 0")
        for name in self.conflicts:
            if name not in CHECKS:
                raise ValueError(f"review rule: unknown evidence check {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"confidence": round(float(self.confidence), 4),
                "distances": {p: round(float(t), 3) for p, t in self.distances.items()},
                "conflicts": list(self.conflicts), "quality": bool(self.quality), "fitted": dict(self.fitted)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ReviewRule":
        if not isinstance(d, Mapping):
            raise ValueError("review rule: not a JSON object")
        return cls(confidence=float(d.get("confidence", 0.0)),
                   distances={str(k): float(v) for k, v in (d.get("distances") or {}).items()},
                   conflicts=tuple(str(c) for c in d.get("conflicts") or ()), quality=bool(d.get("quality", False)),
                   fitted=dict(d.get("fitted") or {}))

    def flags(self, confidence: float, distances: Mapping[str, float], conflicts: Sequence[str],
              quality_low: bool) -> bool:
        """Whether one prediction is flagged (``conflicts``: names of the checks it contradicts)."""
        if confidence < self.confidence:
            return True
        if any(d is not None and math.isfinite(d) and d > self.distances[p]
               for p, d in distances.items() if p in self.distances):
            return True
        if set(conflicts) & set(self.conflicts):
            return True
        return bool(self.quality and quality_low)


@dataclass
class Scores:
    """The review scores of N predictions (arrays aligned; see :func:`fit_review_rule`)."""

    confidence: np.ndarray
    wrong: np.ndarray
    distances: dict          # place -> [N] float (NaN: not available)
    conflicts: list          # [N] sets of check names
    quality_low: np.ndarray

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, Any]]) -> "Scores":
        """From out-of-source prediction rows (``training.by_source``): confidence, true, predicted, ..."""
        conf = np.array([float(r["confidence"]) for r in rows])
        wrong = np.array([r["predicted"] != r["true"] for r in rows])
        dist = {p: np.array([float((r.get("distances") or {}).get(p, np.nan)) for r in rows]) for p in PLACES}
        dist = {p: v for p, v in dist.items() if np.isfinite(v).any()}
        return cls(conf, wrong, dist, [set(r.get("conflicts") or ()) for r in rows],
                   np.array([bool(r.get("quality_low")) for r in rows]))

    def __len__(self) -> int:
        return len(self.confidence)


def _needed_threshold(conf: np.ndarray, wrong: np.ndarray, other: np.ndarray, target: float) -> Optional[float]:
    """Lowest confidence threshold that, with ``other`` flags, flags ``target`` of the wrong ones."""
    lo, hi = CONFIDENCE_BOUNDS
    n_wrong = int(wrong.sum())
    need = int(math.ceil(target * n_wrong - 1e-9)) - int((wrong & other).sum())
    if need <= 0:
        return lo
    rest = np.sort(conf[wrong & ~other])
    t = max(lo, float(rest[need - 1]) + 1e-4)
    return t if t <= hi else None


def _rates(flagged: np.ndarray, wrong: np.ndarray) -> tuple[float, float]:
    cov = float((flagged & wrong).sum() / max(1, wrong.sum()))
    fa = float((flagged & ~wrong).sum() / max(1, (~wrong).sum()))
    return cov, fa


def _signals(s: Scores) -> dict[str, tuple[np.ndarray, tuple]]:
    """Candidate binary signals: name -> (flags [N], how to put it into a rule)."""
    out: dict[str, tuple[np.ndarray, tuple]] = {}
    for name in CHECKS:
        flags = np.array([name in c for c in s.conflicts])
        if flags.any():
            out[f"conflict:{name}"] = (flags, ("conflict", name))
    if s.quality_low.any():
        out["quality"] = (s.quality_low.copy(), ("quality", True))
    right = ~s.wrong
    for place, d in s.distances.items():
        ok = d[right & np.isfinite(d)]
        if ok.size < 5:
            continue
        for q in DISTANCE_QUANTILES:
            t = float(np.quantile(ok, q))
            flags = np.isfinite(d) & (d > t)
            if flags.any():
                out[f"distance:{place}@{q:g}"] = (flags, ("distance", place, t))
    return out


#: The panel shows confidences from 0.90 in green: the threshold is raised to this when that keeps the
#: false alarms within :data:`MAX_FALSE_ALARMS` (a margin for sources the fit never saw).
CONFIDENCE_FLOOR = 0.90
MAX_FALSE_ALARMS = 0.10


def fit_review_rule(s: Scores, target: float = TARGET_COVERAGE, min_gain: float = 0.005,
                    floor: float = CONFIDENCE_FLOOR, max_false_alarms: float = MAX_FALSE_ALARMS) -> ReviewRule:
    """The rule of fewest false alarms at ``target`` coverage of the wrong predictions, by forward selection;
    its confidence threshold then raised to ``floor`` if the false alarms stay within ``max_false_alarms``."""
    if len(s) == 0:
        raise ValueError("review rule: no predictions to fit on")
    signals = _signals(s)
    chosen: list[str] = []
    other = np.zeros(len(s), dtype=bool)

    def evaluate(extra: np.ndarray) -> tuple[float, Optional[float]]:
        t = _needed_threshold(s.confidence, s.wrong, extra, target)
        if t is None:
            return math.inf, None
        return _rates(extra | (s.confidence < t), s.wrong)[1], t

    best_fa, best_t = evaluate(other)
    while True:
        trial = []
        for name, (flags, how) in signals.items():
            if name in chosen or (how[0] == "distance" and any(c.startswith(f"distance:{how[1]}@") for c in chosen)):
                continue
            fa, t = evaluate(other | flags)
            trial.append((fa, name, t))
        if not trial:
            break
        fa, name, t = min(trial)
        if not (fa < best_fa - min_gain):
            break
        chosen.append(name)
        other |= signals[name][0]
        best_fa, best_t = fa, t
    if best_t is None:  # even every signal with the highest threshold cannot reach the target
        best_t = CONFIDENCE_BOUNDS[1]
    if best_t < floor and _rates(other | (s.confidence < floor), s.wrong)[1] <= max_false_alarms:
        best_t = floor
    distances, conflicts, quality = {}, [], False
    for name in chosen:
        how = signals[name][1]
        if how[0] == "conflict":
            conflicts.append(how[1])
        elif how[0] == "quality":
            quality = True
        else:
            distances[how[1]] = how[2]
    rule = ReviewRule(confidence=best_t, distances=distances, conflicts=tuple(conflicts), quality=quality)
    flagged = rule_flags(rule, s)
    cov, fa = _rates(flagged, s.wrong)
    fitted = {"target_coverage": target, "n_predictions": len(s), "n_wrong": int(s.wrong.sum()),
              "coverage": round(cov, 4), "false_alarm_rate": round(fa, 4), "signals": chosen}
    return ReviewRule(rule.confidence, rule.distances, rule.conflicts, rule.quality, fitted)


def rule_flags(rule: ReviewRule, s: Scores) -> np.ndarray:
    """The rule's flag of each prediction of ``s``."""
    return np.array([rule.flags(float(s.confidence[i]), {p: float(v[i]) for p, v in s.distances.items()},
                                s.conflicts[i], bool(s.quality_low[i])) for i in range(len(s))])


def subset(s: Scores, mask: np.ndarray) -> Scores:
    return Scores(s.confidence[mask], s.wrong[mask], {p: v[mask] for p, v in s.distances.items()},
                  [c for c, m in zip(s.conflicts, mask) if m], s.quality_low[mask])


def cross_validated(s: Scores, groups: Sequence[str], target: float = TARGET_COVERAGE) -> dict[str, Any]:
    """Honest rates: for each group (source), the rule fitted on the other groups flags this one's predictions."""
    groups = np.asarray(groups)
    flagged = np.zeros(len(s), dtype=bool)
    per = {}
    for g in sorted(set(groups.tolist())):
        held = groups == g
        if (~held).sum() == 0 or not s.wrong[~held].any():
            continue
        rule = fit_review_rule(subset(s, ~held), target)
        f = rule_flags(rule, subset(s, held))
        flagged[held] = f
        cov, fa = _rates(f, s.wrong[held])
        per[g] = {"n": int(held.sum()), "wrong": int(s.wrong[held].sum()), "coverage": round(cov, 4),
                  "false_alarm_rate": round(fa, 4)}
    cov, fa = _rates(flagged, s.wrong)
    return {"coverage": round(cov, 4), "false_alarm_rate": round(fa, 4), "per_source": per}


def risk_coverage(s: Scores, rule: Optional[ReviewRule] = None, points: int = 41) -> list[dict[str, float]]:
    """Risk (error rate of the predictions not flagged) against coverage (share not flagged), as the
    confidence threshold varies, with the rule's other signals fixed (``rule`` None: confidence alone)."""
    other = np.zeros(len(s), dtype=bool)
    if rule is not None:
        other = rule_flags(ReviewRule(0.0, rule.distances, rule.conflicts, rule.quality), s)
    out = []
    for t in np.linspace(0.0, 1.0, points):
        accepted = ~(other | (s.confidence < t))
        n = int(accepted.sum())
        out.append({"threshold": round(float(t), 4), "coverage": round(n / max(1, len(s)), 4),
                    "risk": round(float((accepted & s.wrong).sum() / n) if n else 0.0, 4),
                    "flags_wrong": round(_rates(~accepted, s.wrong)[0], 4),
                    "flags_right": round(_rates(~accepted, s.wrong)[1], 4)})
    return out
