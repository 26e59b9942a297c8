"""``classify --adapt FILE`` and ``seqclassifier adapt FILE``: the site memory on the command line.

``classify PATH... --adapt FILE`` (FILE: a label store ``.json`` or a labels CSV):

* a label store: its site file (``<store>.site.json`` / ``.npy``, or ``--site``) adapts the
  rows when it exists; the run's feature rows go to the recent-rows file so that a later
  confirmation (the Slicer panel, ``adapt``) joins the site without another run;
* a labels CSV: the series of this run that the CSV labels join the site memory in memory
  (plus the site file beside the CSV or ``--site``, when there is one); nothing is written.

Each adapted row says so: ``note`` (``site: label DWI -> ADC from 3 confirmed series``) and
``adapted`` in JSON.  A site file of another model is refused, a damaged one ignored, each with
one warning line; the rows are then the shipped model's.

``seqclassifier adapt FILE [PATH...] [--site S] [--export OUT | --import IN]`` builds or
updates the site file from FILE's confirmations (series found in PATH..., else in the
``series_dir`` the store or CSV names), then reports what it holds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from SeqClassifierLib.adaptation import build, sitefile
from SeqClassifierLib.adaptation.hook import SiteHook, features_of
from SeqClassifierLib.adaptation.memory import Geometry, SiteMemory
from SeqClassifierLib.app.output import safe_text
from SeqClassifierLib.model.classifier import Classifier
from SeqClassifierLib.safe_paths import Sources, UnsafeTargetError, check_writable


def _say(kind: str, message: object) -> None:
    print(f"{kind}: {safe_text(message)}" if kind else safe_text(message), file=sys.stderr)


def add_classify_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapt", default=None, metavar="FILE",
                   help="adapt labels and review flags to this site's confirmed series: a label store "
                        "(.json, its site file beside it) or a labels CSV (SeriesInstanceUID,label)")
    p.add_argument("--site", default=None, metavar="FILE",
                   help="the site file (.site.json) to use instead of the one beside --adapt FILE")


def check_options(args: argparse.Namespace, streams: bool) -> Optional[str]:
    if getattr(args, "site", None) and not getattr(args, "adapt", None):
        return "--site needs --adapt FILE"
    if getattr(args, "adapt", None) and streams:
        return "--adapt is not available with a streamed --format jsonl --out FILE; use --format json"
    return None


@dataclass
class AdaptRun:
    """What :func:`install` set up for one ``classify`` run."""

    path: str
    anchor: str
    hook: SiteHook
    geometry: Optional[Geometry]
    identity: Dict[str, str]
    confirmations: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    memory: Optional[SiteMemory] = None
    site_used: bool = False
    sources: Optional[Sources] = None


def install(args: argparse.Namespace, classifier: Classifier) -> Optional[AdaptRun]:
    """Put the site hook on ``classifier`` for ``--adapt``; None when there is nothing to adapt with."""
    path = getattr(args, "adapt", None)
    if not path:
        return None
    if not classifier.is_trained:
        _say("warning", f"--adapt {path}: no trained model, nothing to adapt")
        return None
    identity = sitefile.model_identity(classifier.card)
    geometry = Geometry.from_classifier(classifier)
    anchor = getattr(args, "site", None) or path
    try:
        confirmations = build.load_confirmations(path)
    except ValueError as exc:
        _say("warning", f"{exc}; the shipped model's answers are given")
        return None
    memory = None
    refused = False
    try:
        memory = sitefile.read(anchor, identity)
    except sitefile.SiteModelMismatch as exc:
        _say("warning", exc)
        refused = True
    except sitefile.SiteFileError as exc:
        _say("warning", exc)
    csv_mode = not build.is_store(path)
    if memory is not None:
        build.sync(memory, confirmations)
    elif csv_mode and geometry is not None and not refused:
        memory = SiteMemory(geometry.layout())
    site_used = memory is not None and not refused
    hook = SiteHook(memory if site_used else None, geometry, record=True,
                    confirmations=confirmations if site_used else None)
    classifier.site = hook
    return AdaptRun(str(path), str(anchor), hook, geometry, identity, confirmations, memory, site_used,
                    Sources.of(list(getattr(args, "paths", None) or [])))


def finish(run: Optional[AdaptRun], classifier: Classifier, records: List[Any], predictions: List[Any],
           quiet: bool = False) -> List[Any]:
    """After ``classify``: CSV series of this run join the memory (rows replayed); recent rows saved."""
    if run is None:
        return predictions
    classifier.site = None
    hook = run.hook
    if not build.is_store(run.path) and run.site_used and run.memory is not None:
        added = build.add_rows(run.memory, run.confirmations, hook.rows, source=os.path.basename(run.path))
        if added:
            again = SiteHook(run.memory, run.geometry, confirmations=run.confirmations)
            predictions = [_replay(again, classifier, hook, r, p) for r, p in zip(records, predictions)]
    recent = sitefile.site_paths(build.recent_path(run.path))[0]
    problem = _writable(str(recent), run.sources or Sources(), "the recent feature rows")
    if problem and build.is_store(run.path) and not quiet:
        _say("warning", f"{problem}: not saved")
    if build.is_store(run.path) and run.geometry is not None and hook.rows and not problem:
        try:
            build.save_recent(run.path, run.geometry.layout(), run.identity, hook.shipped, hook.rows)
        except (OSError, ValueError) as exc:
            _say("warning", f"recent feature rows not saved beside {run.path}: {exc}")
    if not quiet:
        changed = [p.adapted for p in predictions if getattr(p, "adapted", None)]
        n = len(run.memory) if run.memory is not None and run.site_used else 0
        if run.site_used:
            _say("", f"site memory {sitefile.site_paths(run.anchor)[0].name}: {n} confirmed series with features, "
                     f"{len(run.confirmations)} confirmations; "
                     f"{sum(a['label_changed'] for a in changed)} labels and "
                     f"{sum(a['flag_changed'] for a in changed)} review flags changed")
        else:
            _say("", f"no site memory for {run.path} yet: the shipped model's answers "
                     "(confirm series, or run `seqclassifier adapt`)")
    return predictions


def _replay(hook: SiteHook, classifier, recorder: SiteHook, record, pred):
    inputs = recorder.inputs.get(record.series_uid)
    shipped = recorder.shipped.get(record.series_uid)
    if inputs is None or shipped is None:
        return pred
    rec, probs, unlike, note, context, quality, has_image = inputs
    return hook.adapt_row(classifier, rec, probs, shipped, recorder.rows.get(record.series_uid), unlike, note,
                          context, quality, has_image)


# -- seqclassifier adapt ------------------------------------------------------------------------
def add_parser(sub) -> None:
    p = sub.add_parser("adapt", help="build / show / export / import the site memory of a label store or CSV")
    p.add_argument("file", help="label store (.json) or labels CSV (SeriesInstanceUID,label)")
    p.add_argument("paths", nargs="*", help="DICOM folders holding the confirmed series (default: their "
                                            "series_dir in FILE)")
    p.add_argument("--site", default=None, help="site file (.site.json); default: beside FILE")
    p.add_argument("--model", default=None, help="checkpoint; default: the shipped model")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--export", default=None, metavar="OUT", help="write the site memory to OUT (.site.json + .npy)")
    g.add_argument("--import", dest="import_", default=None, metavar="IN",
                   help="merge another reader's exported site memory (same model) into this one")
    p.add_argument("--no-build", action="store_true", help="report only: classify nothing")
    p.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    p.set_defaults(func=cmd_adapt)


def _writable(target: str, sources: Sources, what: str) -> Optional[str]:
    try:
        check_writable(target, sources, what)
    except UnsafeTargetError as exc:
        return str(exc)
    return None


def cmd_adapt(args: argparse.Namespace) -> int:
    try:
        classifier = Classifier(args.model, device="cpu", precision="fp32")
    except Exception as exc:
        _say("error", f"cannot load model: {exc}")
        return 1
    if not classifier.is_trained:
        _say("error", "no trained model: a site memory needs one")
        return 1
    identity = sitefile.model_identity(classifier.card)
    geometry = Geometry.from_classifier(classifier)
    if geometry is None:
        _say("error", f"model {identity['name']} holds no feature statistics: no site memory possible")
        return 1
    anchor = args.site or args.file
    try:
        confirmations = build.load_confirmations(args.file)
    except ValueError as exc:
        _say("error", exc)
        return 1
    try:
        memory = sitefile.read(anchor, identity)
    except sitefile.SiteModelMismatch as exc:
        _say("error", exc)
        return 1
    except sitefile.SiteFileError as exc:
        _say("warning", f"{exc}; rebuilt")
        memory = None
    memory = memory if memory is not None else SiteMemory(geometry.layout())
    removed, relabelled = build.sync(memory, confirmations)
    changed = bool(removed or relabelled)
    if args.import_:
        try:
            other = sitefile.read(args.import_, identity)
        except sitefile.SiteFileError as exc:
            _say("error", exc)
            return 1
        if other is None:
            _say("error", f"--import {args.import_}: no site file there")
            return 1
        mine = {e["series_uid"] for e in memory.entries}
        keep = [i for i, e in enumerate(other.entries) if e["series_uid"] not in mine]  # own labels win
        memory.add_many([dict(other.entries[i], imported_from=str(args.import_)) for i in keep],
                        other.vectors[keep])
        changed = changed or len(keep) > 0
        _say("", f"imported {len(keep)} confirmed series from {args.import_} "
                 f"({len(other) - len(keep)} already confirmed here)")
    sources = Sources.of(args.paths)
    missing = {u: c for u, c in confirmations.items() if u not in memory}
    if missing and not args.no_build:
        folders = list(args.paths) or sorted({c["series_dir"] for c in missing.values()
                                              if c.get("series_dir") and os.path.isdir(c["series_dir"])})
        for f in folders:
            sources.add_folder(f, f"the DICOM input folder {f}")
        if folders:
            from SeqClassifierLib.dicom.discovery import discover_series  # pydicom: only for this command

            discovery = discover_series(folders)
            todo = [r for r in discovery.series if r.series_uid in missing]
            if todo:
                _, hook = features_of(classifier, todo)
                n = build.add_rows(memory, missing, hook.rows, source=os.path.basename(str(args.file)))
                changed = changed or n > 0
                _say("", f"added {n} confirmed series from {len(folders)} folder(s)")
        left = len([u for u in confirmations if u not in memory])
        if left:
            _say("", f"{left} confirmed series not found in the folders (they keep their confirmed label)")
    if changed:
        problem = _writable(sitefile.site_paths(anchor)[0], sources, "the site file")
        if problem:
            _say("error", f"{problem}; give --site FILE elsewhere")
            return 1
        sitefile.save(memory, anchor, identity)
    if args.export:
        problem = _writable(sitefile.site_paths(args.export)[0], sources, "--export")
        if problem:
            _say("error", problem)
            return 1
        paths = sitefile.save(memory, args.export, identity)
        _say("", f"exported {len(memory)} confirmed series to {paths[0]} (+ {paths[1].name})")
    report = build.summary(memory, identity)
    report["site_file"] = str(sitefile.site_paths(anchor)[0]) if len(memory) or changed else None
    report["n_confirmations"] = len(confirmations)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"site memory {report['site_file'] or '(none)'}")
        print(f"model {identity['name']} (weights {identity['weights_sha256'][:12]})")
        print(f"{report['n_series']} confirmed series with features, of {len(confirmations)} confirmations")
        print("per label: " + ", ".join(f"{k} {v}" for k, v in report["per_label"].items()))
        print("confirmed by: " + (", ".join(f"{k} {v}" for k, v in report["confirmed_by"].items()) or "-"))
    return 0
