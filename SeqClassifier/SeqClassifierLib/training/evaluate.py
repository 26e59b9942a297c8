"""Evaluation: score checkpoints on labelled test sets.

For every (model, test set): per-class precision, recall and F1, macro-F1,
the confusion matrix (also as PNG), a reliability diagram (PNG) with the
expected calibration error, and the misclassified series with their
descriptions.  Several models print as one table in the layout of Table 1 of
Denner et al. (rows: strategy x backbone; columns: per-class F1 and average,
per test set).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from SeqClassifierLib.labels import CLASS_NAMES
from SeqClassifierLib.model.classifier import Classifier
from SeqClassifierLib.model.reasons import reason_kind
from SeqClassifierLib.training.train import classification_metrics, expected_calibration_error, labelled_series


def score(classifier: Classifier, labels_csv: os.PathLike, root: os.PathLike) -> dict[str, Any]:
    """Metrics of one classifier on one labelled test set."""
    found = labelled_series([labels_csv], [root], log=lambda m: None)
    if not found:
        raise ValueError(f"no labelled series of {labels_csv} found under {root}")
    records = [r for r, _, _ in found]
    y = np.array([lab for _, lab, _ in found])
    preds = classifier.classify(records)
    if not classifier.is_trained:
        raise ValueError("cannot evaluate an untrained model")
    m, probs = prediction_scores(y, preds)
    m["misclassified"] = [
        {"series_uid": r.series_uid, "description": r.description, "folder": os.path.dirname(r.files[0]),
         "true": CLASS_NAMES[t], "predicted": p.label.value, "confidence": p.confidence}
        for r, t, p in zip(records, y, preds) if p.label.value != CLASS_NAMES[t]
    ]
    m["by_image_quality"] = accuracy_by_quality(y, preds)
    m["_probs"] = probs
    m["_y"] = y
    return m


def prediction_scores(y: np.ndarray, preds: Sequence) -> tuple[dict[str, Any], np.ndarray]:
    """(per-class and macro metrics, ECE and the review summary; the probabilities [N, C]) of predictions."""
    probs = np.array([[p.probabilities[c] for c in CLASS_NAMES] for p in preds])
    m = classification_metrics(y, probs.argmax(1))
    m["expected_calibration_error"] = round(expected_calibration_error(probs, y), 4)
    m["review"] = review_summary(y, preds)
    return m, probs


def review_summary(y: np.ndarray, preds: Sequence) -> dict[str, Any]:
    """How many wrong predictions are flagged for review (coverage) and how many right ones (false alarms)."""
    wrong = [p for t, p in zip(y, preds) if p.label.value != CLASS_NAMES[t]]
    right = [p for t, p in zip(y, preds) if p.label.value == CLASS_NAMES[t]]
    kinds: dict[str, dict[str, int]] = {}
    for group, name in ((wrong, "wrong"), (right, "right")):
        for p in group:
            for k in {reason_kind(r) for r in p.review_reasons}:
                kinds.setdefault(k, {"wrong": 0, "right": 0})[name] += 1
    fw, fr = sum(p.needs_review for p in wrong), sum(p.needs_review for p in right)
    return {"wrong": len(wrong), "wrong_flagged": fw, "right": len(right), "right_flagged": fr,
            "coverage": round(fw / len(wrong), 4) if wrong else None,
            "false_alarm_rate": round(fr / len(right), 4) if right else None, "by_reason": kinds}


QUALITY_BINS = ((0.0, 0.3), (0.3, 0.6), (0.6, 1.01))


def accuracy_by_quality(y: np.ndarray, preds: Sequence) -> list[dict[str, Any]]:
    """Accuracy per image-quality bin (series without an image left out)."""
    out = []
    for lo, hi in QUALITY_BINS:
        sel = [(t, p) for t, p in zip(y, preds) if p.image_quality is not None and lo <= p.image_quality < hi]
        right = sum(p.label.value == CLASS_NAMES[t] for t, p in sel)
        out.append({"quality": f"{lo:.1f}-{min(hi, 1.0):.1f}", "n": len(sel),
                    "accuracy": round(right / len(sel), 4) if sel else None})
    return out


def save_confusion_png(cm: Sequence[Sequence[int]], path: os.PathLike, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_reliability_png(probs: np.ndarray, y: np.ndarray, path: os.PathLike, title: str, bins: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    centers, accs, counts = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            centers.append(conf[m].mean())
            accs.append(correct[m].mean())
            counts.append(int(m.sum()))
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.plot(centers, accs, "o-", label="model")
    for c, a, n in zip(centers, accs, counts):
        ax.annotate(str(n), (c, a), textcoords="offset points", xytext=(3, -10), fontsize=7)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}\nECE {expected_calibration_error(probs, y):.3f}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table1(results: dict[tuple[str, str], dict[str, dict]], test_names: Sequence[str]) -> str:
    """Text table in the layout of the paper's Table 1."""
    classes = [c for c in CLASS_NAMES]
    head = f"{'strategy':10} {'backbone':16}" + "".join(
        " | " + " ".join(f"{c:>5}" for c in classes) + f" {'Avg.':>5}" for _ in test_names)
    sub = " " * 27 + "".join(" | " + f"{name[:35]:^{6 * len(classes) + 5}}" for name in test_names)
    lines = [sub, head, "-" * len(head)]
    for (strategy, backbone), per_test in results.items():
        row = f"{strategy:10} {backbone:16}"
        for name in test_names:
            m = per_test[name]
            row += " | " + " ".join(
                f"{m['per_class'][c]['f1']:5.2f}" if m["per_class"][c]["support"] else f"{'-':>5}" for c in classes)
            row += f" {m['macro_f1']:5.2f}"
        lines.append(row)
    return "\n".join(lines) + "\n"


def evaluate_models(models: Sequence[os.PathLike], labels: Sequence[os.PathLike], roots: Sequence[os.PathLike],
                    out_dir: Optional[os.PathLike] = None, device: str = "auto",
                    test_names: Optional[Sequence[str]] = None) -> str:
    """Score every model on every test set; write PNGs + report JSON to ``out_dir``; return the text report."""
    if len(labels) != len(roots):
        raise ValueError("give one --labels CSV per --data root")
    names = list(test_names) if test_names else [Path(r).name for r in roots]
    if len(names) != len(roots):
        raise ValueError("give one --name per test set")
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, str], dict[str, dict]] = {}
    report: dict[str, Any] = {}
    text = []
    for mpath in models:
        clf = Classifier(mpath, device=device)
        key = (str(clf.card.model.strategy), str(clf.card.model.backbone)) if clf.card is not None else ("?", "?")
        results[key] = {}
        for name, lab, root in zip(names, labels, roots):
            m = score(clf, lab, root)
            probs, y = m.pop("_probs"), m.pop("_y")
            results[key][name] = m
            report[f"{Path(mpath).stem}:{name}"] = m
            text.append(f"{Path(mpath).stem} on {name}: macro-F1 {m['macro_f1']:.3f}, accuracy {m['accuracy']:.3f}, "
                        f"ECE {m['expected_calibration_error']:.3f}, {m['n']} series, "
                        f"{len(m['misclassified'])} misclassified; flagged for review: "
                        f"{m['review']['wrong_flagged']}/{m['review']['wrong']} wrong, "
                        f"{m['review']['right_flagged']}/{m['review']['right']} right")
            for e in m["misclassified"]:
                text.append(f"    {e['true']:>5} -> {e['predicted']:<5} ({e['confidence']:.2f}) "
                            f"{e['description'] or '(no description)'}  {e['folder']}")
            if out_dir:
                stem = f"{Path(mpath).stem}_{name}".replace(os.sep, "_")
                save_confusion_png(m["confusion"], Path(out_dir) / f"confusion_{stem}.png", f"{Path(mpath).stem} / {name}")
                save_reliability_png(probs, y, Path(out_dir) / f"reliability_{stem}.png", f"{Path(mpath).stem} / {name}")
    if out_dir:
        (Path(out_dir) / "report.json").write_text(json.dumps(report, indent=2))
    return table1(results, names) + "\n" + "\n".join(text) + "\n"
