"""``seqclassifier`` command line.

Subcommands::

    seqclassifier classify PATH... [--model FILE] [--device auto|cpu|cuda]
                                   [--format table|csv|json|jsonl] [--out FILE]
    seqclassifier classify --slicer-db PATH/ctkDICOM.sql
    seqclassifier classify PATH... --adapt labels.json|labels.csv    (the site memory, see adapt_cli)
    seqclassifier adapt FILE [PATH...] [--export OUT | --import IN]
    seqclassifier classify ARCHIVE --format jsonl --out F [--resume] [--engine dask [--scheduler ADDR]]
    seqclassifier idc plan [--collections ID...] --out manifest.csv
    seqclassifier idc download manifest.csv DEST
    seqclassifier sort SRC... DEST [--only T2w,DWI,ADC] [--plane axial] [--link] [--labels]
    seqclassifier synth OUTDIR [--studies N] [--seed S] [--size tiny|small]
    seqclassifier train --labels CSV... --data ROOT... --out MODEL [--strategy ...] [--backbone ...]
    seqclassifier evaluate --models MODEL... --labels CSV... --data ROOT... [--out DIR]

Exit codes (``classify``):

====  ===========================================================
0     every file was used and every series classified
1     usage error or fatal error (bad model file, unwritable --out)
2     series classified, but some files were skipped (listed on stderr
      and in the JSON/JSONL output with their reasons)
3     nothing classified: no MR series found in the inputs
130   interrupted (Ctrl-C); no output file is left behind, except the
      streamed ``--format jsonl --out F``: its rows so far stay, and
      ``--resume`` continues from them
====  ===========================================================

When no trained model is installed, ``classify`` still lists every series but
gives no label, and says so (table banner, ``"model": "untrained"``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from typing import Optional, Sequence

from SeqClassifierLib import __version__, config
from SeqClassifierLib.allocator import keep_freed_memory
from SeqClassifierLib.labels import CLASS_NAMES
from SeqClassifierLib.app import adapt_cli, archive_cli, by_source_cli, validation_commands
from SeqClassifierLib.app.output import (event_line, format_csv, format_json, format_jsonl, format_table, make_row,
                                         model_info, safe_text, summary_event)
from SeqClassifierLib.app.progress import JsonProgress, ProgressBar
from SeqClassifierLib.app.startup import start_discovery
from SeqClassifierLib.app.stream import Partition, run_partition
from SeqClassifierLib.app.thumbnails import SIZE as THUMBNAIL_SIZE, format_jsonl_with_thumbnails
from SeqClassifierLib.atomic import ATOMIC, atomic_write_text, write_plan
from SeqClassifierLib.curation.label_store import LabelStore, LabelStoreError, LabelStoreWarning
from SeqClassifierLib.curation.sorting import SortError, sort_series
from SeqClassifierLib.dicom.slicer_db import SlicerDatabaseError, database_file, series_files_from_slicer_db
from SeqClassifierLib.lifetime import EXIT_TERMINATED, Terminated, terminate_as_interrupt
from SeqClassifierLib.model.classifier import Classifier
from SeqClassifierLib.records import ResultRow, SkippedFile
from SeqClassifierLib.safe_paths import Sources, UnsafeTargetError, check_writable

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_SKIPPED = 2
EXIT_NOTHING = 3
EXIT_INTERRUPTED = 130


def _progress(label: str, enabled: Optional[bool], json_stage: Optional[str] = None):

    if json_stage is not None:
        return JsonProgress(json_stage)
    return ProgressBar(label, enabled=enabled)


def _say(kind: str, message: object) -> None:
    """One line on stderr (``error: ...`` / ``warning: ...``), made safe for the terminal."""

    print(f"{kind}: {safe_text(message)}" if kind else safe_text(message), file=sys.stderr)


def _reason(exc: BaseException) -> str:
    """The reason of an error without Python's decoration (``[Errno 28]``, quoted file names)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _report_skipped(skipped, verbose: bool) -> None:
    limit = None if verbose else 20
    for s in skipped[:limit]:
        _say("", f"skipped {s.path}: {s.reason}")
    if limit is not None and len(skipped) > limit:
        print(f"... and {len(skipped) - limit} more skipped files (use --verbose to list all)", file=sys.stderr)


class InputError(Exception):
    """An input that cannot be used at all (one line)."""


def _inputs(args: argparse.Namespace):
    """(input paths, their :class:`Sources`, inputs reported as skipped).

    The positional PATHs, plus the files of a Slicer DICOM database.  A
    database that cannot be read is an :class:`InputError` when it is the only
    input, else it is reported as skipped and the run goes on.
    """

    inputs = list(args.paths)
    sources = Sources.of(args.paths)
    skipped = []
    db = getattr(args, "slicer_db", None)
    if db:
        problems: list[str] = []
        try:
            db_file = database_file(db)
        except (OSError, SlicerDatabaseError) as exc:
            db_file, files, reason = None, {}, _reason(exc)
        else:
            try:
                files = series_files_from_slicer_db(db_file, check_exists=False, problems=problems)
                reason = ""
            except (OSError, SlicerDatabaseError) as exc:
                files, reason = {}, _reason(exc)
        listed = [f for fs in files.values() for f in fs]
        sources.add_database(db_file if db_file is not None else db, listed)
        for p in problems:
            _say("warning", p)
        if reason:
            if not args.paths:
                raise InputError(f"--slicer-db {db}: {reason}" if str(db) not in reason else reason)
            skipped.append(SkippedFile(str(db), reason))
        inputs += listed
    return inputs, sources, skipped


def _check_target(target, sources, what: str, need_folder: bool = True) -> Optional[str]:
    """Why ``target`` (an output file) may not be written, or None: the one source check + the write rule."""

    try:
        check_writable(target, sources, what)
        how, resolved = write_plan(target)
    except UnsafeTargetError as exc:
        return str(exc)
    except OSError as exc:
        return f"{what} {target}: {_reason(exc)}"
    if how == ATOMIC and need_folder:
        folder = os.path.dirname(os.path.abspath(resolved))
        if not os.path.isdir(folder):
            return f"{what} folder does not exist: {folder}"
    return None


def _discover_and_classify(args: argparse.Namespace, inputs: list, jsonl_stream: bool = False,
                           sources=None, skipped_inputs=()):
    """Discovery + classification shared by ``classify`` and ``sort``: the inputs are one partition
    of the streaming engine (:func:`~SeqClassifierLib.app.stream.run_partition`); None on a fatal error."""

    show = True if args.progress else (False if args.quiet else None)
    reading = _progress("reading headers", show, "discover" if jsonl_stream else None)

    def discovered(done: int, total: int) -> None:
        reading(done, total)
        if done >= total:
            reading.close()

    # headers are read in a forked child while torch imports and the model loads (app.startup)
    thumbnails = getattr(args, "format", None) == "jsonl" and getattr(args, "thumbnails", False)
    early = start_discovery(list(inputs), discovered, model=args.model, cache=getattr(args, "cache", None),
                            thumbnail_size=THUMBNAIL_SIZE if thumbnails else None)
    try:
        classifier = Classifier(args.model, device=args.device, batch_size=args.batch_size,
                                precision=getattr(args, "precision", "auto"), hand_back_gpu_pages=True)
    except Exception as exc:
        if early is not None:
            early.cancel()
        _say("error", f"cannot load model: {exc}")
        return None
    except BaseException:
        if early is not None:
            early.cancel()
        raise
    if not classifier.is_trained and not args.quiet:
        print("warning: no trained model is installed: series are listed WITHOUT labels "
              "(model: untrained)", file=sys.stderr)
    if thumbnails:
        classifier.thumbnails = {}  # filled from the slices the model reads: each decoded once
    adapting = adapt_cli.install(args, classifier)  # --adapt FILE: the site memory's hook (else None)
    cache, cache_problem = _header_cache(args, sources)
    classifying = _progress("classifying", show, "classify" if jsonl_stream else None)

    try:
        found = early.result() if early is not None else None
        ready = early.prepared(classifier.card) if early is not None else None
        run = run_partition(Partition(0, list(inputs), 0), classifier, cache=cache, stamps=False,
                            discover_progress=discovered, classify_progress=classifying, discovery=found,
                            prepared=ready)
    finally:
        if early is not None:
            early.cancel()
        reading.close()
        classifying.close()
    discovery = run.discovery
    discovery.skipped[:0] = list(skipped_inputs)
    for w in dict.fromkeys(w for r in discovery.series for w in r.warnings):
        _say("warning", w)
    if cache is not None:
        for w in cache.pop_warnings():
            _say("warning", w)
        if cache_problem:
            _say("warning", f"header cache not saved: {cache_problem}")
        else:
            try:
                cache.save(inputs=sorted(sources.folders) if sources is not None else args.paths)
            except (OSError, ValueError) as exc:
                _say("warning", f"header cache not saved: {_reason(exc)}")
        if not args.quiet:
            print(f"header cache {cache.path}: {cache.hits} of {cache.hits + cache.misses} files unchanged "
                  "since the last run", file=sys.stderr)
    predictions = adapt_cli.finish(adapting, classifier, discovery.series, run.predictions, quiet=args.quiet)
    return discovery, classifier, predictions


def _header_cache(args: argparse.Namespace, sources=None):
    """(the header cache asked for with ``--cache [FILE]`` or None, why it may not be saved or None).

    A cache whose file would lie in a source (or is not a file) is still read
    but never written.
    """
    if getattr(args, "cache", None) is None:
        return None, None
    from SeqClassifierLib.dicom.header_cache import HeaderCache  # the DICOM readers: see _discover_and_classify

    cache = HeaderCache(None if args.cache == "default" else args.cache)
    if cache.path is None:
        cache = HeaderCache.persistent(None)
    problem = _check_target(cache.path, sources, "--cache", need_folder=False) if sources is not None else None
    if problem is None:
        cache.load()  # a damaged cache is only a slower run: one warning line, rebuilt on save
    for w in cache.pop_warnings():
        _say("warning", w)
    return cache, problem


def _exit_code(discovery) -> int:
    if not discovery.series:
        return EXIT_NOTHING
    return EXIT_SKIPPED if discovery.skipped else EXIT_OK


def cmd_classify(args: argparse.Namespace) -> int:

    jsonl_stream = args.format == "jsonl" and args.out is None
    if not args.paths and not args.slicer_db:
        _say("error", "give PATH(s) and/or --slicer-db")
        return EXIT_ERROR
    try:
        inputs, sources, skipped_inputs = _inputs(args)
    except InputError as exc:
        _say("error", exc)
        return EXIT_ERROR
    if args.out:
        problem = _check_target(args.out, sources, "--out")
        if problem:
            _say("error", problem)
            return EXIT_ERROR
    problem = archive_cli.check_options(args) or adapt_cli.check_options(args, archive_cli.streams(args))
    if problem:
        _say("error", problem)
        return EXIT_ERROR
    if archive_cli.streams(args):
        return _classify_streaming(args, sources)
    t0 = time.perf_counter()
    result = _discover_and_classify(args, inputs, jsonl_stream, sources, skipped_inputs)
    if result is None:
        return EXIT_ERROR
    discovery, classifier, predictions = result
    rows = [make_row(r, p) for r, p in zip(discovery.series, predictions)]
    model = model_info(classifier)
    if args.format == "table":
        text = format_table(rows, untrained=not classifier.is_trained)
    elif args.format == "csv":
        text = format_csv(rows)
    elif args.format == "json":
        text = format_json(rows, discovery.skipped, model)
    elif getattr(args, "thumbnails", False):
        text = format_jsonl_with_thumbnails(rows, discovery.skipped, discovery.series, classifier.thumbnails)
    else:
        text = format_jsonl(rows, discovery.skipped)

    code = _exit_code(discovery)
    if args.format == "jsonl":
        text += event_line(summary_event(len(rows), len(discovery.skipped), discovery.n_files, model, code))
    if args.out:
        try:
            atomic_write_text(args.out, text)
        except OSError as exc:  # full disk, quota, a FIFO without reader ...: nothing half-written is left
            _say("error", f"cannot write --out {args.out}: {_reason(exc)}")
            return EXIT_ERROR
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if args.format != "jsonl":
        _report_skipped(discovery.skipped, args.verbose)
    if not args.quiet:
        print(f"{len(rows)} series from {discovery.n_files} files "
              f"({len(discovery.skipped)} skipped) in {time.perf_counter() - t0:.2f} s; "
              f"model: {classifier.model_name} on {classifier.device} ({classifier.precision})", file=sys.stderr)
    if code == EXIT_NOTHING:
        _say("", "no MR series found in: " + ", ".join(map(str, args.paths or [args.slicer_db])))
    return code


def _confirmed_labels(args: argparse.Namespace, sources):
    """Confirmed labels of the label store for ``sort --labels``; None after a one-line error."""

    try:
        store = LabelStore(args.store, sources=sources)
        with warnings.catch_warnings():  # reported below in one line each, not as Python warnings
            warnings.simplefilter("ignore", LabelStoreWarning)
            labels = store.confirmed_labels()
    except (LabelStoreError, UnsafeTargetError, OSError) as exc:
        _say("error", _reason(exc) if not isinstance(exc, OSError) else f"label store {args.store}: {_reason(exc)}")
        return None
    for w in store.pop_warnings():
        _say("warning", w)
    if not args.quiet:
        _say("", f"using {len(labels)} confirmed labels from {store.path}")
    return labels


def _classify_streaming(args: argparse.Namespace, sources) -> int:
    """``classify --format jsonl --out F``: rows streamed as they are classified (see archive_cli)."""
    cache, cache_problem = _header_cache(args, sources) if args.engine == "local" else (None, None)
    try:
        return archive_cli.classify_streaming(args, cache)
    finally:
        if cache is not None and cache_problem is None:
            try:
                cache.save(inputs=args.paths)
            except (OSError, ValueError) as exc:
                _say("warning", f"header cache not saved: {exc}")


def cmd_sort(args: argparse.Namespace) -> int:

    *sources_paths, dest = args.paths
    if not sources_paths:
        _say("error", "sort needs SRC... DEST")
        return EXIT_ERROR
    args.paths = sources_paths
    try:
        inputs, sources, skipped_inputs = _inputs(args)
    except InputError as exc:
        _say("error", exc)
        return EXIT_ERROR
    labels = None
    if args.labels:
        labels = _confirmed_labels(args, sources)
        if labels is None:
            return EXIT_ERROR
    result = _discover_and_classify(args, inputs, sources=sources, skipped_inputs=skipped_inputs)
    if result is None:
        return EXIT_ERROR
    discovery, classifier, predictions = result
    if not classifier.is_trained and not labels:
        _say("error", "no trained model and no confirmed labels: nothing to sort by")
        return EXIT_ERROR
    try:
        rows = [ResultRow.from_series(r, p) for r, p in zip(discovery.series, predictions)]
        summary = sort_series(rows, dest, only=args.only, plane=args.plane, link=args.link, labels=labels,
                              sources=sources_paths, protected=sources, dry_run=args.dry_run)
    except (SortError, ValueError) as exc:
        _say("error", exc)
        return EXIT_ERROR
    _report_skipped(discovery.skipped, args.verbose)
    for s in summary.series:
        print(f"{s.label or '-':6} {s.plane:9} {s.n_files:5} files -> {s.folder}")
    for c in summary.conflicts:
        _say("", f"conflict (left as is): {c}")
    for f, why in summary.failed:
        _say("", f"not copied {f}: {why}")
    if not args.quiet:
        verb = "would " if args.dry_run else ""
        _say("", f"{verb}{'link' if args.link else 'copy'} {summary.n_series} series ({summary.n_files} files) "
                 f"into {summary.dest}; sources untouched")
    if summary.conflicts:
        return EXIT_ERROR
    return EXIT_SKIPPED if summary.failed else _exit_code(discovery)


def cmd_synth(args: argparse.Namespace) -> int:
    from SeqClassifierLib.synth import generate_studies  # the phantom and DICOM writer: only for synth

    bar = _progress("writing studies", None if not args.quiet else False)
    try:
        series = generate_studies(args.outdir, studies=args.studies, seed=args.seed, size=args.size,
                                  kinds=tuple(args.kinds), prostate_extras=args.prostate_extras,
                                  realism=args.realism, progress=bar)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        bar.close()
    if not args.quiet:
        n_files = sum(s.n_files for s in series)
        print(f"wrote {args.studies} studies, {len(series)} series, {n_files} files to {args.outdir} "
              f"(labels in {os.path.join(args.outdir, 'labels.csv')})", file=sys.stderr)
    return EXIT_OK


def _oversample(specs: Sequence[str], roots: Sequence[str]) -> dict:
    """``ROOT=N`` pairs as {data root as given to --data: N}; ValueError naming a bad one."""
    out = {}
    for spec in specs or []:
        root, _, n = spec.rpartition("=")
        match = [r for r in roots if os.path.realpath(r) == os.path.realpath(root)]
        if not match or not n.isdigit() or int(n) < 1:
            raise ValueError(f"--oversample {spec}: give ROOT=N with ROOT one of the --data roots and N >= 1")
        out[str(match[0])] = int(n)
    return out


def _source_summary(samples) -> list:
    """The card's data sources by name (the data root's folder name, never this machine's path) with counts."""
    by: dict = {}
    for s in samples:
        name = os.path.basename(str(s.source).rstrip("/\\")) or str(s.source)
        by.setdefault(name, [0] * len(CLASS_NAMES))[s.label] += 1
    return [{"name": n, "n_series": sum(c), "per_class": dict(zip(CLASS_NAMES, c))} for n, c in sorted(by.items())]


def cmd_train(args: argparse.Namespace) -> int:
    from SeqClassifierLib.model.backbones import get_backbone_config
    from SeqClassifierLib.training.train import TrainConfig, load_samples, train

    try:
        oversample = _oversample(args.oversample, args.data)
    except ValueError as exc:
        _say("error", exc)
        return EXIT_ERROR
    cfg = TrainConfig(strategy=args.strategy, backbone=args.backbone, pretrained=args.pretrained or False,
                      folds=args.folds, recipe=args.recipe, max_epochs=args.max_epochs, patience=args.patience,
                      batch_size=args.batch_size, seed=args.seed, device=args.device, lora_rank=args.lora_rank,
                      head_epochs=args.head_epochs, min_image_quality=args.min_image_quality, oversample=oversample,
                      folds_by_source=tuple(sorted({os.path.basename(str(r).rstrip("/\\")) for r in args.fold_by_source})))
    if cfg.pretrained in ("true", "True", "1", "yes"):
        cfg.pretrained = True
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        size = get_backbone_config(args.backbone).input_size
    except KeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    bar = ProgressBar("reading labelled series", enabled=None if not args.quiet else False)
    try:
        samples = load_samples(args.labels, args.data, input_size=size, log=log, progress=bar)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        bar.close()
    if not samples:
        print("error: no labelled series found under the data roots", file=sys.stderr)
        return EXIT_NOTHING
    log(f"{len(samples)} labelled series from {len({s.group for s in samples})} patients")
    command = "seqclassifier " + " ".join(sys.argv[1:]) if args.command_line is None else args.command_line
    summary = {"sources": _source_summary(samples)}
    try:
        train(samples, cfg, args.out, log=log, command=command, data_summary=summary)
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from SeqClassifierLib.training.evaluate import evaluate_models

    try:
        text = evaluate_models(args.models, args.labels, args.data, out_dir=args.out, device=args.device,
                               test_names=args.name)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    sys.stdout.write(text)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(
        prog="seqclassifier",
        description="Tell what each MR series of a prostate study is (T2w, DWI, ADC, DCE, OTHER).",
        epilog="Exit codes of classify: 0 all classified; 1 error; 2 classified with skipped files; "
               "3 nothing classified; 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("classify", help="classify every MR series under the given folders/files")
    p.add_argument("paths", nargs="*", help="DICOM folders and/or files (read only, never modified)")
    p.add_argument("--slicer-db", help="also classify every series of this Slicer DICOM database (ctkDICOM.sql)")
    p.add_argument("--model", help="checkpoint (.json card or .safetensors); default: the shipped model")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--format", default="table", choices=("table", "csv", "json", "jsonl"))
    p.add_argument("--out", help="write the result to this file instead of stdout: atomically, except "
                                 "--format jsonl, whose rows are streamed into it as they are classified")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="model arithmetic: auto = bfloat16 on a GPU or a CPU with native bfloat16 "
                        "(AMX/AVX512-BF16), else float32; fp32 gives the same rows whatever the thread count "
                        "or batch size")
    p.add_argument("--cache", nargs="?", const="default", default=None, metavar="FILE",
                   help="keep the headers read in a cache (default FILE: the user's cache folder, "
                        "e.g. ~/.cache/seqclassifier/headers.json) and skip files whose size and "
                        "modification time are unchanged on the next run; never inside an input folder")
    p.add_argument("--progress", action="store_true", help="always draw progress bars on stderr")
    p.add_argument("--quiet", action="store_true", help="no progress, no summary on stderr")
    p.add_argument("--verbose", action="store_true", help="list every skipped file")
    p.add_argument("--thumbnails", action="store_true",
                   help="with --format jsonl: add a 64x64 grey thumbnail of the center slice to each series event")
    archive_cli.add_classify_options(p)
    adapt_cli.add_classify_options(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("sort", help="copy or link the chosen series into DEST/<patient>/<study>/<label>_<plane>_<n>/")
    p.add_argument("paths", nargs="+", metavar="SRC... DEST", help="source folders (never modified), then DEST")
    p.add_argument("--only", default=None, help="labels to keep, e.g. T2w,DWI,ADC (default: all)")
    p.add_argument("--plane", default=None, help="planes to keep, e.g. axial")
    p.add_argument("--link", action="store_true", help="symbolic links instead of copies")
    p.add_argument("--labels", action="store_true", help="use confirmed labels from the label store over predictions")
    p.add_argument("--store", default=None, help="label store file (default: the user's store)")
    p.add_argument("--dry-run", action="store_true", help="show what would be done, write nothing")
    p.add_argument("--slicer-db", default=None, help=argparse.SUPPRESS)
    p.add_argument("--model", default=None)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=cmd_sort)

    p = sub.add_parser("train", help="train a K-fold ensemble from labelled series (Denner et al. recipe)")
    p.add_argument("--labels", nargs="+", required=True, type=str,
                   help="labels CSV files (series_dir and/or SeriesInstanceUID, label)")
    p.add_argument("--data", nargs="+", required=True, help="data roots holding the labelled series")
    p.add_argument("--out", required=True, help="checkpoint path (.json card + .safetensors weights)")
    p.add_argument("--strategy", default="joint", choices=("image", "metadata", "early", "late", "joint"))
    p.add_argument("--backbone", default="compact_cnn", help="backbone name (see backbones.list_backbones())")
    p.add_argument("--pretrained", default=None,
                   help="pretrained weights: 'true' (HF cache / declared URL) or a local file; default none")
    p.add_argument("--recipe", default="auto", choices=("auto", "paper", "scratch"),
                   help="paper: head 5 epochs @1e-4 then full @1e-6; scratch: one stage @1e-3 (auto: by --pretrained)")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--max-epochs", type=int, default=60)
    p.add_argument("--head-epochs", type=int, default=5)
    p.add_argument("--patience", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lora-rank", type=int, default=0, help="LoRA adapters of this rank on the ViT (0: off)")
    p.add_argument("--fold-by-source", nargs="*", default=[], metavar="ROOT",
                   help="real data roots (sources) each held out whole in one fold: the out-of-fold predictions "
                        "of their series are out-of-source ones (seqclassifier by-source --model)")
    p.add_argument("--oversample", nargs="*", default=[], metavar="ROOT=N",
                   help="count the series of a --data root N times per epoch (e.g. the few real studies)")
    p.add_argument("--min-image-quality", type=float, default=0.0,
                   help="train the image branch only on slices scoring at least this (inputs.quality, 0-1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--command-line", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score models on labelled series (F1, confusion, calibration)")
    p.add_argument("--models", nargs="+", required=True, help="checkpoints to score")
    p.add_argument("--labels", nargs="+", required=True, help="labels CSV of each test set (one per --data)")
    p.add_argument("--data", nargs="+", required=True, help="data root of each test set")
    p.add_argument("--name", nargs="*", default=None, help="names of the test sets (default: folder names)")
    p.add_argument("--out", default=None, help="folder for confusion matrices, reliability diagrams, report JSON")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("synth", help="write synthetic prostate mpMRI DICOM studies")
    p.add_argument("outdir")
    p.add_argument("--studies", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="small", choices=("tiny", "small"))
    p.add_argument("--kinds", nargs="+", default=["prostate"], choices=("prostate", "neuro"),
                   help="study kinds, alternating (neuro: brain DWI/DTI/ADC, fMRI, ASL, field maps, T1w ...)")
    p.add_argument("--prostate-extras", action="store_true",
                   help="also 3-scan trace DWI and TWIST-named per-time-point DCE in Siemens prostate studies")
    p.add_argument("--realism", action="store_true",
                   help="realistic header gaps and protocols (docs/ATTRIBUTES.md): use for training sets")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_synth)

    validation_commands.add_parsers(sub)
    by_source_cli.add_parser(sub)
    adapt_cli.add_parser(sub)
    archive_cli.add_idc_parser(sub)
    return parser


def _safe_streams() -> None:
    """stdout/stderr never fail on a character their encoding lacks (e.g. LANG=C): ``\\uXXXX`` instead."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a stream already written in binary, or closed
                pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    _safe_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with terminate_as_interrupt():  # SIGTERM: the same clean-up as Ctrl-C (workers killed, no partial file)
            return int(args.func(args))
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except (OSError, RecursionError, MemoryError) as exc:
        # last guard: an environment failure not caught where it happened still ends in one line
        if config.debug():
            raise
        _say("error", f"{type(exc).__name__}: {_reason(exc)}"
                      + (f" ({exc.filename})" if getattr(exc, "filename", None) else "")
                      + " (set SEQCLASSIFIER_DEBUG=1 for the traceback)")
        return EXIT_ERROR


def console() -> None:
    """The ``seqclassifier`` command: :func:`main`, then a quick exit.

    Every output is complete (written atomically, streams flushed) when :func:`main` returns; what
    is left is the interpreter's shutdown, which with torch loaded takes 0.3-0.9 s (its modules,
    thread pools and the model's tensors torn down one by one).  Once torch is imported the process
    therefore ends with ``os._exit`` after flushing; without torch, as usual.

    Before :func:`main`, this process keeps the memory it frees for its next arrays
    (:func:`~SeqClassifierLib.allocator.keep_freed_memory`; the processes it forks inherit it)."""
    keep_freed_memory()
    code = main()
    if "torch" not in sys.modules:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    os._exit(code)


if __name__ == "__main__":
    console()
