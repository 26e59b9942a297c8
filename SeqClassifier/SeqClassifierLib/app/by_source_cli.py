"""``seqclassifier by-source``: leave-one-source-out validation and the review rule fitted on it.

    seqclassifier by-source --labels L... --data D... --real R... --out DIR [--into-card MODEL]
    seqclassifier by-source --model M --labels L... --data D... --out DIR [--into-card M]  # M: train --fold-by-source
    seqclassifier by-source --rows DIR/rows.json --out DIR [--into-card MODEL]   # refit only

With ``--model`` (an ensemble trained with ``train --fold-by-source``, whose folds
hold each real source out whole) the out-of-fold predictions are used and
nothing is trained.  Otherwise it trains one model without each real source (``--real``: the roots to hold out,
default every root whose labels have no synthetic ``family`` column), predicts
that source (``training.by_source``), fits the review rule on the pooled
out-of-source predictions (``model.review_rule``) and writes to DIR:
``rows.json`` (one row per real series), ``report.json`` (per source and pooled
scores, the keyword baseline, the rule, its source-cross-validated rates and
the risk-coverage curves) and ``risk_coverage.png``.  ``--into-card`` stores
the rule, the decision rules and the report in a checkpoint's card.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from SeqClassifierLib.atomic import atomic_write_text
from SeqClassifierLib.model.decision import RULES
from SeqClassifierLib.model.review_rule import Scores, cross_validated, fit_review_rule, risk_coverage

EXIT_OK, EXIT_ERROR = 0, 1


def _plot(path: Path, curves: dict, rule: dict) -> bool:
    """Risk-coverage PNG (False when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, pts in curves.items():
        ax1.plot([p["coverage"] for p in pts], [p["risk"] for p in pts], marker=".", label=name)
        ax2.plot([p["flags_right"] for p in pts], [p["flags_wrong"] for p in pts], marker=".", label=name)
    ax1.set_xlabel("coverage (share of series not flagged)")
    ax1.set_ylabel("risk (error rate among series not flagged)")
    ax1.set_title("risk-coverage, real out-of-source predictions")
    ax2.axhline(0.9, color="grey", lw=0.8, ls="--")
    ax2.axvline(0.1, color="grey", lw=0.8, ls="--")
    fit = rule.get("fitted", {})
    if fit:
        ax2.plot([fit["false_alarm_rate"]], [fit["coverage"]], "r*", ms=12,
                 label=f"the card's rule (confidence < {rule['confidence']:.2f})")
    ax2.set_xlabel("right predictions flagged (false alarms)")
    ax2.set_ylabel("wrong predictions flagged (coverage of mistakes)")
    ax2.set_title("review flags")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def report_from_rows(rows: list, result: dict, target: float) -> dict:
    """The rule, its cross-validated rates, curves and the keyword baseline from out-of-source rows."""
    from SeqClassifierLib.training.by_source import keyword_scores  # torch (training.train): only for this command

    s = Scores.from_rows(rows)
    rule = fit_review_rule(s, target)
    cv = cross_validated(s, [r["source"] for r in rows], target)
    curves = {"confidence alone": risk_coverage(s), "chosen rule": risk_coverage(s, rule)}
    return {"per_source": result.get("per_source", {}), "pooled": result.get("pooled", {}),
            "keyword_rule_macro_f1": keyword_scores(rows), "review_rule": rule.to_dict(),
            "review_rule_cross_validated": cv, "risk_coverage": curves,
            "sources": sorted({r["source"] for r in rows}), "n_series": len(rows),
            "groups": result.get("groups", [])}


def cmd_by_source(args: argparse.Namespace) -> int:
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.rows:
        try:
            doc = json.loads(Path(args.rows).read_text(encoding="utf-8"))
            rows, result = doc["rows"], doc
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: {args.rows}: cannot read out-of-source rows: {exc}", file=sys.stderr)
            return EXIT_ERROR
    else:
        if not (args.labels and args.data):
            print("error: by-source needs --labels and --data (or --rows to refit)", file=sys.stderr)
            return EXIT_ERROR
        from SeqClassifierLib.training.by_source import leave_one_source_out, out_of_fold  # torch: training only
        from SeqClassifierLib.training.families import read_families
        from SeqClassifierLib.training.train import TrainConfig, load_samples

        from SeqClassifierLib.model.backbones import get_backbone_config

        samples = load_samples(args.labels, args.data, input_size=get_backbone_config("compact_cnn").input_size,
                               log=log)
        real = args.real
        if not real:
            by_uid, _ = read_families(args.labels)
            real = [str(d) for d in args.data
                    if not any(s.record.series_uid in by_uid for s in samples if str(s.source) == str(d))]
        cfg = TrainConfig(strategy=args.strategy, max_epochs=args.max_epochs, patience=args.patience,
                          device=args.device, seed=args.seed,
                          oversample={str(r): args.oversample for r in real} if args.oversample > 1 else {})
        try:
            if args.model:
                result = out_of_fold(args.model, samples, log=log)
            else:
                result = leave_one_source_out(samples, [str(r) for r in real], cfg, log=log, n_groups=args.groups)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        rows = result["rows"]
        atomic_write_text(out / "rows.json", json.dumps(result, indent=1) + "\n")
    report = report_from_rows(rows, result, args.target)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    _plot(out / "risk_coverage.png", report["risk_coverage"], report["review_rule"])
    rule, cv = report["review_rule"], report["review_rule_cross_validated"]
    print(f"{len(rows)} real series from {len(report['sources'])} sources; pooled macro-F1 "
          f"{report['pooled'].get('macro_f1', float('nan')):.3f}, ECE "
          f"{report['pooled'].get('expected_calibration_error', float('nan')):.3f}")
    print(f"review rule: confidence < {rule['confidence']:.3f}, distances {rule['distances']}, "
          f"conflicts {rule['conflicts']}, quality {rule['quality']}")
    print(f"  on the fitting data: coverage {rule['fitted']['coverage']:.3f}, false alarms "
          f"{rule['fitted']['false_alarm_rate']:.3f}; cross-validated by source: coverage {cv['coverage']:.3f}, "
          f"false alarms {cv['false_alarm_rate']:.3f}")
    if args.into_card:
        from SeqClassifierLib.model.checkpoint import update_card  # torch: only with a model

        slim = {k: v for k, v in report.items() if k != "risk_coverage"}
        update_card(args.into_card, review_rule=rule, decision_rules=list(RULES), leave_one_source_out=slim)
        log(f"stored the review rule and the leave-one-source-out report in {args.into_card}")
    return EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("by-source", help="leave-one-source-out validation of real series and the review rule "
                                         "fitted on those out-of-source predictions")
    p.add_argument("--labels", nargs="+", default=None)
    p.add_argument("--data", nargs="+", default=None)
    p.add_argument("--real", nargs="*", default=None, help="data roots to hold out one at a time (default: every "
                                                           "root whose labels have no synthetic 'family' column)")
    p.add_argument("--groups", type=int, default=None, help="hold the real sources out in this many groups "
                   "of about equal size (default: one source at a time)")
    p.add_argument("--model", default=None, help="an ensemble trained with train --fold-by-source: its out-of-fold "
                   "predictions are the out-of-source ones (nothing is trained)")
    p.add_argument("--rows", default=None, help="refit from an earlier run's rows.json (no training)")
    p.add_argument("--out", required=True, help="folder for rows.json, report.json, risk_coverage.png")
    p.add_argument("--target", type=float, default=0.92, help="coverage of mistakes the rule is fitted for")
    p.add_argument("--strategy", default="joint", choices=("metadata", "joint", "image", "early", "late"))
    p.add_argument("--max-epochs", type=int, default=16)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--oversample", type=int, default=1, help="each real series counts N times per epoch, as in "
                                                              "the recipe of the model the rule is for")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--into-card", default=None, metavar="MODEL", help="store the rule and report in this card")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_by_source)
