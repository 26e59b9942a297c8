"""Command-line parts for archives: streamed / resumable / Dask ``classify``, and ``idc``.

``classify --format jsonl --out F`` streams (see :mod:`.stream`)::

    seqclassifier classify ARCHIVE --format jsonl --out F [--resume]
                           [--engine local|dask] [--scheduler tcp://HOST:8786] [--dask-workers 2]

    seqclassifier idc plan [--collections prostatex ...] --out manifest.csv
    seqclassifier idc download manifest.csv DEST [--dry-run]

Kept apart from :mod:`.cli` so that the archive options stay in one place;
:mod:`.cli` calls :func:`add_classify_options`, :func:`streams`,
:func:`classify_streaming` and :func:`add_idc_parser`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Optional

from SeqClassifierLib.app.dask_engine import DaskUnavailable, dask_results, model_spec
from SeqClassifierLib.app.output import model_info, summary_event
from SeqClassifierLib.app.stream import (JsonlStream, StreamProgress, local_results, plan_partitions, run_stream,
                                         slicer_db_partitions)
from SeqClassifierLib.curation import idc
from SeqClassifierLib.dicom.slicer_db import read_slicer_db
from SeqClassifierLib.model.classifier import Classifier

EXIT_OK, EXIT_ERROR, EXIT_SKIPPED, EXIT_NOTHING = 0, 1, 2, 3


def add_classify_options(p: argparse.ArgumentParser) -> None:
    """The archive options of ``classify``."""
    p.add_argument("--resume", action="store_true",
                   help="with --format jsonl --out F: keep the series already in F (same SeriesInstanceUID, "
                        "files' sizes and modification times unchanged) and classify only the rest")
    p.add_argument("--engine", default="local", choices=("local", "dask"),
                   help="local: this process; dask: partitions by study folder on a Dask cluster "
                        "(needs --format jsonl --out F and pip install \"dask[distributed]\")")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="with --engine dask: a running scheduler (tcp://host:8786); default: a LocalCluster here")
    p.add_argument("--dask-workers", type=int, default=2,
                   help="with --engine dask and no --scheduler: worker processes of the LocalCluster (1 thread each)")


def streams(args: argparse.Namespace) -> bool:
    """True when ``classify`` streams rows into a JSON-lines file (``--format jsonl --out F``)."""
    return args.format == "jsonl" and bool(args.out)


def check_options(args: argparse.Namespace) -> Optional[str]:
    """An error message when the archive options are used without a streamed output, else None."""
    if streams(args):
        return None
    if args.resume:
        return "--resume needs --format jsonl --out FILE"
    if args.engine != "local" or args.scheduler:
        return "--engine dask needs --format jsonl --out FILE (rows are streamed into FILE)"
    return None


def _partitions(args: argparse.Namespace) -> list:
    parts = plan_partitions(args.paths)
    if getattr(args, "slicer_db", None):
        series = read_slicer_db(args.slicer_db, check_exists=False)
        parts += slicer_db_partitions({s.series_uid: list(s.files) for s in series},
                                      {s.series_uid: s.study_uid for s in series}, start=len(parts))
    return parts


def classify_streaming(args: argparse.Namespace, header_cache: Any = None) -> int:
    """``classify --format jsonl --out F``: rows written as each partition is classified."""
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    parts = _partitions(args)
    total = sum(p.n_files for p in parts)
    log(f"{total} files in {len(parts)} partitions")
    if args.engine == "dask":
        try:
            spec = model_spec(args.model, args.device, getattr(args, "precision", "auto"), args.batch_size)
        except OSError as exc:
            print(f"error: cannot read model: {exc}", file=sys.stderr)
            return EXIT_ERROR
        if args.model is not None and not spec["sha256"]:
            print(f"error: model checkpoint not found: {args.model}", file=sys.stderr)
            return EXIT_ERROR
        model = model_info(name=None, trained=bool(spec["sha256"]), path=spec["path"], device=args.device,
                           precision=getattr(args, "precision", "auto"))
    else:
        try:
            classifier = Classifier(args.model, device=args.device, batch_size=args.batch_size,
                                    precision=getattr(args, "precision", "auto"), hand_back_gpu_pages=True)
        except Exception as exc:
            print(f"error: cannot load model: {exc}", file=sys.stderr)
            return EXIT_ERROR
        model = model_info(classifier)
        if not classifier.is_trained:
            log("warning: no trained model is installed: series are listed WITHOUT labels (model: untrained)")
    try:
        out = JsonlStream(args.out, resume=args.resume)
    except (OSError, ValueError) as exc:
        print(f"error: cannot write --out {args.out}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.resume:
        log(f"resuming {args.out}: {len(out.done)} series already classified")
    if args.engine == "dask":
        try:
            results = dask_results(parts, spec, done=out.done, scheduler=args.scheduler,
                                   n_workers=args.dask_workers, log=log)
        except DaskUnavailable as exc:
            out.close(None)
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
    else:
        results = local_results(parts, classifier, done=out.done, cache=header_cache)
    progress = StreamProgress(total, enabled=bool(args.progress or not args.quiet))
    try:
        stats = run_stream(results, out, progress)
    except BaseException:
        out.close(None)  # rows so far stay: --resume continues from them
        raise
    finally:
        progress.close()
    model = stats["model"] or model
    code = EXIT_NOTHING if out.n_series == 0 else (EXIT_SKIPPED if out.n_skipped else EXIT_OK)
    out.close(summary_event(out.n_series, out.n_skipped, stats["n_files"], model, code))
    log(f"{out.n_series} series from {stats['n_files']} files ({out.n_skipped} skipped) in "
        f"{time.perf_counter() - t0:.2f} s into {args.out}; model: {model.get('name')} on "
        f"{model.get('device')} ({model.get('precision')}), engine {args.engine}")
    if code == EXIT_NOTHING:
        print("no MR series found in: " + ", ".join(map(str, args.paths or [args.slicer_db])), file=sys.stderr)
    return code


# ----------------------------------------------------------------------------
# seqclassifier idc
# ----------------------------------------------------------------------------

def add_idc_parser(sub: Any) -> None:
    p = sub.add_parser("idc", help="plan / download MR series from NCI Imaging Data Commons (needs idc-index)")
    actions = p.add_subparsers(dest="idc_command", required=True)
    q = actions.add_parser("plan", help="manifest of the MR series of IDC collections, from the offline index")
    q.add_argument("--collections", nargs="+", default=list(idc.DEFAULT_COLLECTIONS), metavar="ID",
                   help="IDC collection_id values (default: the paper's seven prostate collections)")
    q.add_argument("--modality", default="MR", help="modality to keep ('' for all; default MR)")
    q.add_argument("--out", required=True, help="manifest CSV to write")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_idc_plan)
    d = actions.add_parser("download", help="download a manifest's series with idc-index (s5cmd; needs internet)")
    d.add_argument("manifest")
    d.add_argument("dest", help="folder for DEST/<collection>/<patient>/<study>/<modality>_<series>/")
    d.add_argument("--dry-run", action="store_true", help="check size and disk space, download nothing")
    d.set_defaults(func=cmd_idc_download)


def idc_extra_missing(exc: BaseException) -> Optional[str]:
    """The one line for an optional dependency of the idc commands that is not installed (an
    ImportError, or an IDCUnavailable raised from one), else None."""
    missing = exc if isinstance(exc, ImportError) else exc.__cause__
    if not isinstance(missing, ImportError):
        return None
    name = (getattr(missing, "name", None) or str(missing)).split(".")[0]
    return f'error: the idc commands need the "idc" extra ({name} is not installed): pip install "seqclassifier[idc]"'


def cmd_idc_plan(args: argparse.Namespace) -> int:
    try:
        rows = idc.plan(args.collections, modality=args.modality or None)
        idc.write_manifest(rows, args.out)
    except (ImportError, idc.IDCUnavailable) as exc:
        print(idc_extra_missing(exc) or f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    sys.stdout.write(idc.format_summary(idc.summarize(rows)))
    if not args.quiet:
        print(f"wrote {len(rows)} series to {args.out} (IDC index {idc.index_version()}); candidate labels are "
              "unconfirmed", file=sys.stderr)
    return EXIT_OK


def cmd_idc_download(args: argparse.Namespace) -> int:
    try:
        n, mb = idc.download(args.manifest, args.dest, dry_run=args.dry_run)
    except (ImportError, idc.IDCUnavailable) as exc:
        print(idc_extra_missing(exc) or f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # idc-index / s5cmd / network failures
        print(f"error: download from IDC failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    verb = "would download" if args.dry_run else "downloaded"
    print(f"{verb} {n} series ({mb / 1000:.1f} GB) into {os.path.abspath(args.dest)}; next: "
          f"seqclassifier classify {args.dest} --format jsonl --out results.jsonl", file=sys.stderr)
    return EXIT_OK
