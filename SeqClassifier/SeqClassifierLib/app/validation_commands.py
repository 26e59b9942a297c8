"""The ``audit`` and ``families`` commands: shortcut audit and leave-one-protocol-family-out validation.

``seqclassifier audit --models M --labels L... --data D...`` removes each
optional attribute group in turn and reports per class how many predictions
flip (exit code 4 when a group flips more than the limit);
``seqclassifier families --labels L... --data D...`` holds out each protocol
family of the labels' ``family`` column in turn.  Both write JSON with
``--out``.  ``seqclassifier held-out --model M --labels ... --data ...`` reruns a
checkpoint's held-out folds (distance statistics, real and synthetic
out-of-fold scores) from its training data.
"""

from __future__ import annotations

import argparse
import json
import sys

from SeqClassifierLib.atomic import atomic_write_text
from SeqClassifierLib.model.classifier import Classifier

EXIT_OK, EXIT_ERROR, EXIT_FAILED = 0, 1, 4


def cmd_audit(args: argparse.Namespace) -> int:
    from SeqClassifierLib.training.audit import shortcut_audit  # torch (training.train): only for this command
    from SeqClassifierLib.training.train import labelled_series

    found = labelled_series(args.labels, args.data, log=lambda m: print(m, file=sys.stderr))
    if not found:
        print("error: no labelled series found under the data roots", file=sys.stderr)
        return EXIT_ERROR
    report = {}
    failed = False
    for model in args.models:
        try:
            clf = Classifier(model, device=args.device, precision="fp32")
        except (OSError, ValueError, RuntimeError) as exc:
            print(f"error: cannot load model {model}: {exc}", file=sys.stderr)
            return EXIT_ERROR
        result = shortcut_audit(clf, [r for r, _, _ in found], [y for _, y, _ in found], args.max_flip_rate)
        sys.stdout.write(f"shortcut audit of {model}\n{result.table()}")
        report[str(model)] = result.to_dict()
        failed |= not result.passed
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    if args.into_card:
        from SeqClassifierLib.model.checkpoint import update_card  # torch: only with a model

        for model in args.models:
            update_card(model, shortcut_audit=report[str(model)])
    return EXIT_FAILED if failed else EXIT_OK


def cmd_families(args: argparse.Namespace) -> int:
    from SeqClassifierLib.training.families import family_of, family_table, leave_one_family_out, read_families
    from SeqClassifierLib.training.train import TrainConfig, load_samples  # torch: training only

    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    samples = load_samples(args.labels, args.data, input_size=128, log=log,
                           with_images=args.strategy != "metadata")
    by_uid, by_dir = read_families(args.labels)
    families = [family_of(s.record, by_uid, by_dir) for s in samples]
    if not any(families):
        print("error: the labels have no 'family' column (seqclassifier synth writes one)", file=sys.stderr)
        return EXIT_ERROR
    cfg = TrainConfig(strategy=args.strategy, max_epochs=args.max_epochs, patience=5, device=args.device,
                      seed=args.seed)
    results = leave_one_family_out(samples, families, cfg, min_series=args.min_series, only=args.only, log=log)
    sys.stdout.write(family_table(results))
    doc = {"strategy": args.strategy, "n_families": len(results),
           "held_out_right": sum(r.correct for r in results), "held_out_series": sum(r.n for r in results),
           "families": [{"family": r.family, "label": r.label, "n": r.n, "correct": r.correct,
                         "accuracy": round(r.accuracy, 4), "predicted": r.predicted} for r in results]}
    if args.out:
        atomic_write_text(args.out, json.dumps(doc, indent=2) + "\n")
    if args.into_card:
        from SeqClassifierLib.model.checkpoint import update_card  # torch: only with a model

        update_card(args.into_card, leave_one_family_out=doc)
    return EXIT_OK


def cmd_held_out(args: argparse.Namespace) -> int:
    from SeqClassifierLib.training.held_out import held_out_report  # torch: training only

    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        summary = held_out_report(args.model, args.labels, args.data, rate=args.rate, log=log)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(summary, indent=2))
    return EXIT_OK


def add_parsers(sub) -> None:
    p = sub.add_parser("audit", help="shortcut audit: remove each optional attribute group, count flipped labels")
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--labels", nargs="+", required=True)
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--max-flip-rate", type=float, default=0.05)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", default=None, help="write the report as JSON")
    p.add_argument("--into-card", action="store_true", help="also store the report in each model's card")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("families", help="leave-one-protocol-family-out validation (labels with a 'family' column)")
    p.add_argument("--labels", nargs="+", required=True)
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--strategy", default="metadata", choices=("metadata", "joint", "image", "early", "late"))
    p.add_argument("--max-epochs", type=int, default=40)
    p.add_argument("--min-series", type=int, default=3)
    p.add_argument("--only", nargs="*", default=None, help="hold out only these families")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", default=None)
    p.add_argument("--into-card", default=None, metavar="MODEL", help="also store the table in this model's card")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_families)

    p = sub.add_parser("held-out", help="recompute a checkpoint's held-out folds: distance statistics and "
                                        "out-of-fold scores of real and synthetic series, stored in the card")
    p.add_argument("--model", required=True)
    p.add_argument("--labels", nargs="+", required=True, help="the labels the model was trained on")
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--rate", type=float, default=0.01, help="share of held-out series flagged, per place")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_held_out)
