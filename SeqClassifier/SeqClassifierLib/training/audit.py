"""Shortcut audit: which single attribute groups a model's predictions hang on.

The shipped model of an earlier version called every real per-time-point DCE
series OTHER because every synthetic DCE it was trained on carried
ContrastBolusAgent.  The audit removes each optional attribute group
(:data:`~SeqClassifierLib.inputs.attributes.ATTRIBUTE_GROUPS`) in turn from
every labelled series -- from the whole study at once, as a stripped export
would -- classifies again, and counts per true class how many predictions
change.  A model passes when no single group changes more than
:data:`MAX_FLIP_RATE` of any class's series.  A last row, ``context``
(informative, not part of the pass rule), classifies every series without its
siblings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

from SeqClassifierLib.inputs.attributes import GROUP_NAMES, drop_in_study
from SeqClassifierLib.labels import CLASS_NAMES
from SeqClassifierLib.records import SeriesRecord

#: Largest share of one class's series that removing one optional group may flip.
MAX_FLIP_RATE = 0.05
CONTEXT_ROW = "context"


@dataclass
class AuditRow:
    group: str
    #: per class: (series of the class, predictions that changed)
    per_class: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: examples of changed predictions: (description, true, before, after)
    examples: list[tuple[str, str, str, str]] = field(default_factory=list)

    def rate(self, cls: str) -> float:
        n, k = self.per_class.get(cls, (0, 0))
        return k / n if n else 0.0

    @property
    def max_rate(self) -> float:
        return max((self.rate(c) for c in self.per_class), default=0.0)


@dataclass
class AuditReport:
    rows: list[AuditRow]
    n_series: int
    max_flip_rate: float = MAX_FLIP_RATE

    @property
    def passed(self) -> bool:
        return all(r.max_rate <= self.max_flip_rate for r in self.rows if r.group != CONTEXT_ROW)

    @property
    def worst(self) -> tuple[str, str, float]:
        """(group, class, rate) of the largest flip rate among the attribute groups."""
        best = ("", "", 0.0)
        for r in self.rows:
            if r.group == CONTEXT_ROW:
                continue
            for c in r.per_class:
                if r.rate(c) > best[2]:
                    best = (r.group, c, r.rate(c))
        return best

    def table(self) -> str:
        head = f"{'group removed':16}" + "".join(f" {c:>11}" for c in CLASS_NAMES) + "   max"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            cells = []
            for c in CLASS_NAMES:
                n, k = r.per_class.get(c, (0, 0))
                cells.append(f"{k}/{n}" if n else "-")
            lines.append(f"{r.group:16}" + "".join(f" {x:>11}" for x in cells) + f" {100 * r.max_rate:5.1f}%")
        verdict = "PASS" if self.passed else "FAIL"
        g, c, rate = self.worst
        where = f" ({g}, {c})" if g else ""
        lines.append(f"{verdict}: largest flip rate {100 * rate:.1f}%{where}; limit {100 * self.max_flip_rate:.0f}% "
                     f"per class and group; {self.n_series} series; '{CONTEXT_ROW}' is informative")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"n_series": self.n_series, "max_flip_rate": self.max_flip_rate, "passed": self.passed,
                "worst": {"group": self.worst[0], "class": self.worst[1], "rate": round(self.worst[2], 4)},
                "rows": [{"group": r.group, "per_class": {c: {"n": n, "flipped": k}
                                                          for c, (n, k) in r.per_class.items()},
                          "max_rate": round(r.max_rate, 4), "examples": r.examples[:5]} for r in self.rows]}


def shortcut_audit(classifier: Any, records: Sequence[SeriesRecord], labels: Sequence[int],
                   max_flip_rate: float = MAX_FLIP_RATE) -> AuditReport:
    """Audit ``classifier`` (a trained :class:`~SeqClassifierLib.model.classifier.Classifier`) on labelled series."""
    records = list(records)
    truth = [CLASS_NAMES[int(y)] for y in labels]
    base = [p.label.value if p.label is not None else None for p in classifier.classify(records)]
    variants = [(g, drop_in_study(records, [g])) for g in GROUP_NAMES]
    variants.append((CONTEXT_ROW, [dataclasses.replace(r, study_uid=f"alone:{r.series_uid}") for r in records]))
    rows = []
    for name, changed in variants:
        after = [p.label.value if p.label is not None else None for p in classifier.classify(changed)]
        row = AuditRow(name)
        for c in CLASS_NAMES:
            idx = [i for i, t in enumerate(truth) if t == c]
            if idx:
                row.per_class[c] = (len(idx), sum(1 for i in idx if after[i] != base[i]))
        row.examples = [(records[i].description, truth[i], str(base[i]), str(after[i]))
                        for i in range(len(records)) if after[i] != base[i]][:10]
        rows.append(row)
    return AuditReport(rows, len(records), max_flip_rate)
