#!/usr/bin/env python3
"""Benchmark (not a test): classify a study vs a plain pydicom header loop.

Target (issue "Speed: classify a study faster than plain pydicom can read its
headers"): end-to-end classification of a study -- discovery, features, one
image per series, model, output rows, i.e. what ``seqclassifier classify``
does, excluding interpreter start and model load -- takes at most 1.0x the
time of a plain single-threaded ``pydicom.dcmread(f, stop_before_pixels=True)``
loop over the same files, with a warm file cache.

Usage (see Testing/benchmarks/README.md)::

    .venv/bin/python Testing/benchmarks/bench_classify.py            # full
    .venv/bin/python Testing/benchmarks/bench_classify.py --quick    # CI: prostatex, 1 repeat
    .venv/bin/python Testing/benchmarks/bench_classify.py --gpu-only # GPU throughput/latency only

Scaled sets (200 / 2,000 / 20,000 files) are real ProstateX series replicated
under new Study/Series/SOP Instance UIDs, written once into ``--workdir``
(default: a folder under the system temp dir, never inside the repository).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "SeqClassifier"))

DEFAULT_DATA = Path(os.environ.get("SEQCLASSIFIER_DATA", REPO.parent / "shared" / "data")) / "prostatex"


# ----------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------

def timed(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[list[float], Any]:
    """Wall times (s) of ``repeats`` calls after ``warmup`` untimed calls; and the last result
    (:func:`timed_rounds` of one function)."""
    times, results = timed_rounds([fn], repeats, warmup)
    return times[0], results[0]


def timed_rounds(fns: list, repeats: int, warmup: int = 1) -> tuple[list[list[float]], list[Any]]:
    """Wall times (s) of each of ``fns`` over ``repeats`` rounds, each round calling every one once in
    turn (after ``warmup`` untimed rounds), and each one's last result.  A ratio of two of them then
    compares runs made minutes apart at most, never a quiet minute against a busy one: this VM's speed
    drifts by half within an hour (other guests), and measuring one thing after the other let the
    drift into the ratios."""
    results: list[Any] = [None] * len(fns)
    for _ in range(warmup):
        results = [fn() for fn in fns]
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            gc.collect()
            t = time.perf_counter()
            results[i] = fn()
            times[i].append(time.perf_counter() - t)
    return times, results


def ms(s: float) -> str:
    return f"{s * 1e3:9.1f} ms"


def per_file(s: float, n: int) -> str:
    return f"{s * 1e3 / max(n, 1):7.3f} ms/file"


def peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / (1024.0 * 1024.0)


def cpu_busy(seconds: float = 1.0) -> Optional[float]:
    """Fraction of all CPUs busy over ``seconds`` (Linux /proc/stat), or None elsewhere."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:9]]
        return v[3] + v[4], sum(v)

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def row(label: str, times: list[float], n_files: int, ref: Optional[float] = None) -> str:
    lo, med = min(times), statistics.median(times)
    text = f"  {label:38s} min {ms(lo)}  median {ms(med)}  {per_file(lo, n_files)}"
    if ref:
        text += f"  ratio {lo / ref:5.2f}x"
    return text


# ----------------------------------------------------------------------------
# What is timed
# ----------------------------------------------------------------------------

def list_files(root: Path) -> list[str]:
    from SeqClassifierLib.dicom.discovery import iter_files

    return list(iter_files([root], []))


def plain_pydicom_loop(files: list[str]) -> int:
    """The reference: a plain single-threaded pydicom header loop over every file."""
    import pydicom

    n = 0
    for f in files:
        try:
            pydicom.dcmread(f, stop_before_pixels=True)
            n += 1
        except Exception:  # non-DICOM files in the folder cost what they cost
            pass
    return n


def header_loop(files: list[str], reader: Callable[[str], Any]) -> int:
    from SeqClassifierLib.dicom.header import UnusableFile

    n = 0
    for f in files:
        try:
            reader(f)
            n += 1
        except UnusableFile:
            pass
    return n


def threaded_header_loop(files: list[str], threads: int) -> int:
    """Headers read by a thread pool (for the record: the GIL makes this slower)."""
    from concurrent.futures import ThreadPoolExecutor

    from SeqClassifierLib.dicom.discovery import _read_chunk

    chunks = [files[i::threads] for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        return sum(len(c) for c in pool.map(_read_chunk, chunks))


class EndToEnd:
    """``seqclassifier classify PATH --format table`` minus interpreter start and model load."""

    def __init__(self, classifier: Any, workers: Optional[int] = None, fmt: str = "table"):
        self.classifier = classifier
        self.workers = workers
        self.fmt = fmt
        self.parts: dict[str, list[float]] = {"discovery": [], "classify (features+images+model)": [],
                                               "output rows": []}

    def __call__(self, root: Path) -> tuple[int, int]:
        from SeqClassifierLib.app.output import format_json, format_table, make_row
        from SeqClassifierLib.dicom.discovery import discover_series

        t0 = time.perf_counter()
        discovery = discover_series([str(root)], workers=self.workers)
        t1 = time.perf_counter()
        predictions = self.classifier.classify(discovery.series)
        t2 = time.perf_counter()
        rows = [make_row(r, p) for r, p in zip(discovery.series, predictions)]
        if self.fmt == "json":
            text = format_json(rows, discovery.skipped, {"name": self.classifier.model_name})
        else:
            text = format_table(rows, untrained=not self.classifier.is_trained)
        io.StringIO().write(text)
        t3 = time.perf_counter()
        for key, dt in zip(self.parts, (t1 - t0, t2 - t1, t3 - t2)):
            self.parts[key].append(dt)
        return len(discovery.series), discovery.n_files

    def reset(self) -> None:
        for v in self.parts.values():
            v.clear()


# ----------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------

#: The issue's targets: end to end <= 0.5x the plain loop, >= 8x dcm-classifier, the CLI (start-up
#: included) <= 1.0x a plain-loop program on the 2,000-file set, peak RSS <= 600 MiB there.
TARGET_RATIO, TARGET_DCM, TARGET_CLI, TARGET_RSS_MIB = 0.5, 8.0, 1.0, 600.0

_PLAIN_PROGRAM = (
    "import os, sys, pydicom\n"
    "for top, dirs, names in os.walk(sys.argv[1]):\n"
    "    dirs.sort()\n"
    "    for name in sorted(names):\n"
    "        try:\n"
    "            pydicom.dcmread(os.path.join(top, name), stop_before_pixels=True)\n"
    "        except Exception:\n"
    "            pass\n")


#: Runs argv[1:] and prints "wall_s peak_rss_kib exit_code peak_anonymous_kib".  A small interpreter
#: starts the command, so its peak RSS (wait4) is its own: forked from this benchmark process, the pages
#: the fork shared before exec would be counted too.  The RSS counts the clean file pages of the
#: libraries it maps, which depend on the page cache (``import torch`` of the CUDA build: 520 MB in a
#: long-lived venv, 714 MB right after installing it, 286 MB anonymous in both); the anonymous part
#: (``RssAnon``, sampled every 10 ms) is the process's own memory.
_MEASURE = """
import os, subprocess, sys, threading, time
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
anon = [0]
def poll():
    while True:
        try:
            with open(f"/proc/{p.pid}/status") as fh:
                for line in fh:
                    if line.startswith("RssAnon:"):
                        anon[0] = max(anon[0], int(line.split()[1]))
        except OSError:  # reaped (or no /proc)
            return
        time.sleep(0.01)
threading.Thread(target=poll, daemon=True).start()
_, st, ru = os.wait4(p.pid, 0)
print(time.perf_counter() - t0, ru.ru_maxrss, os.waitstatus_to_exitcode(st), anon[0])
"""


def _run_process(cmd: list, env: dict) -> tuple[float, float, int, float]:
    """(wall s, peak RSS MiB of the command and the children it waited for, exit code, peak anonymous
    RSS MiB of the command itself, 0 where /proc is not there) of one command."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[0]), float(out[1]) / 1024.0, int(out[2]), float(out[3]) / 1024.0


def fresh_process_env(workdir: Path) -> dict:
    """The environment of the fresh processes timed here: the package on the path, and compiled
    modules (.pyc) kept in ``WORKDIR/pycache`` -- as an installed package has them -- also where
    PYTHONDONTWRITEBYTECODE is set.  It is on the build machine, where every timed run compiled the
    package's ~60 modules again (0.25-0.3 s) while pydicom and torch came compiled from pip."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "SeqClassifier") + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PYTHONPYCACHEPREFIX=str(workdir / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def cli_cold(root: Path, model_path: Path, device: str, repeats: int, tmp: Path, env: dict) -> dict:
    """``seqclassifier classify ROOT --format csv --out F`` as a fresh process (interpreter start,
    imports, torch, model load, discovery, classification, output, exit) against a fresh Python
    process running the plain pydicom loop over the same files, both in ``env``
    (:func:`fresh_process_env`); min over ``repeats``."""
    cli = [sys.executable, "-m", "SeqClassifierLib.app.cli", "classify", str(root), "--format", "csv",
           "--out", str(tmp / "cli.csv"), "--quiet", "--device", device, "--model", str(model_path)]
    plain = [sys.executable, "-c", _PLAIN_PROGRAM, str(root)]
    _run_process(cli, env)  # warm-up: file cache, .pyc files
    _run_process(plain, env)
    runs = {"cli": [], "plain": [], "rss": [], "plain_rss": [], "anon": []}
    for _ in range(repeats):
        wall, rss, code, anon = _run_process(cli, env)
        if code not in (0, 1, 2):
            raise RuntimeError(f"seqclassifier classify {root} exited with {code}")
        runs["cli"].append(wall)
        runs["rss"].append(rss)
        runs["anon"].append(anon)
        wall, rss, _, _ = _run_process(plain, env)
        runs["plain"].append(wall)
        runs["plain_rss"].append(rss)
    return runs


def cli_lines(runs: dict) -> list[str]:
    cli, plain = min(runs["cli"]), min(runs["plain"])
    return [f"  CLI, start-up included (fresh process)  min {ms(cli)}  median {ms(statistics.median(runs['cli']))}"
            f"  ratio {cli / plain:5.2f}x  peak RSS {max(runs['rss']):.0f} MiB"
            f" (anonymous {max(runs['anon']):.0f} MiB)",
            f"  plain loop as a fresh process          min {ms(plain)}  median "
            f"{ms(statistics.median(runs['plain']))}  peak RSS {max(runs['plain_rss']):.0f} MiB"]


def cold_model_load(model_path: Path, device: str, env: dict) -> tuple[float, float]:
    """(import time, Classifier() time) in a fresh interpreter, as every run of the CLI pays them
    (the second of two runs in ``env``: the first may compile modules into its .pyc cache)."""
    import json
    import subprocess

    code = ("import json, sys, time; t0 = time.perf_counter(); sys.path.insert(0, sys.argv[1]); "
            "import torch; from SeqClassifierLib.model.classifier import Classifier; t1 = time.perf_counter(); "
            "Classifier(sys.argv[2], device=sys.argv[3]); t2 = time.perf_counter(); "
            "print(json.dumps([t1 - t0, t2 - t1]))")
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code, str(REPO / "SeqClassifier"), str(model_path), device],
                             check=True, capture_output=True, text=True, env=env).stdout
    imports, load = json.loads(out.strip().splitlines()[-1])
    return imports, load


def resolve_model(args: argparse.Namespace, tmp: Path) -> tuple[Path, str]:
    """--model, else the shipped default, else (or with ``--model fresh``) a fresh untrained model."""
    if args.model and args.model != "fresh":
        return Path(args.model), "--model"
    shipped = REPO / "SeqClassifier" / "SeqClassifierLib" / "model" / "assets" / "seqclassifier_default.json"
    if shipped.is_file() and args.model != "fresh":
        return shipped, "shipped default"
    import torch

    from SeqClassifierLib.model.checkpoint import save_checkpoint
    from SeqClassifierLib.inputs.features import FEATURE_SCHEMA_VERSION, N_FEATURES
    from SeqClassifierLib.model.fusion import create_model

    torch.manual_seed(0)
    models = [create_model("joint", "compact_cnn", num_meta_features=N_FEATURES) for _ in range(args.folds)]
    cfg = models[0].config
    card = {"name": "bench_untrained", "feature_schema_version": FEATURE_SCHEMA_VERSION,
            "preprocessing": {"input_size": cfg["input_size"], "mean": cfg["mean"], "std": cfg["std"]}}
    path = save_checkpoint(tmp / "bench_model.json", models, card)
    return path, f"fresh untrained compact_cnn joint, {args.folds} fold(s)"


# ----------------------------------------------------------------------------
# Scaled data sets: real series under new UIDs
# ----------------------------------------------------------------------------

def build_scaled_set(source: Path, n_files: int, workdir: Path) -> Path:
    """``n_files`` files: ProstateX series replicated (whole series, the last one cut) under new UIDs."""
    import pydicom
    from pydicom.uid import generate_uid

    from SeqClassifierLib.dicom.discovery import discover_series

    dest = workdir / f"replicated_{n_files}"
    marker = dest / ".complete"
    if marker.is_file() and marker.read_text().strip() == str(n_files):
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    series = discover_series([str(source)], workers=1).series
    written = 0
    copy = 0
    print(f"  writing {n_files} files into {dest} (once) ...", flush=True)
    while written < n_files:
        for s in series:
            if written >= n_files:
                break
            study_uid = generate_uid(entropy_srcs=[f"study-{copy}", s.study_uid])
            series_uid = generate_uid(entropy_srcs=[f"series-{copy}", s.series_uid])
            folder = dest / f"copy{copy:04d}" / (s.patient_id or "patient") / f"{s.series_number or 0:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i, f in enumerate(s.files):
                if written >= n_files:
                    break
                ds = pydicom.dcmread(f)
                ds.StudyInstanceUID = study_uid
                ds.SeriesInstanceUID = series_uid
                sop = generate_uid(entropy_srcs=[f"sop-{copy}", str(ds.SOPInstanceUID)])
                ds.SOPInstanceUID = sop
                if "MediaStorageSOPInstanceUID" in ds.file_meta:
                    ds.file_meta.MediaStorageSOPInstanceUID = sop
                ds.PatientID = f"{ds.get('PatientID', '')}-c{copy}"
                ds.save_as(folder / f"{i:05d}.dcm")
                written += 1
        copy += 1
    marker.write_text(str(n_files))
    return dest


# ----------------------------------------------------------------------------
# dcm-classifier (the 'dcm_classifier' package), when installed
# ----------------------------------------------------------------------------

def study_folders(root: Path) -> list[Path]:
    """The deepest folder holding all series of each study (dcm-classifier takes one study at a time)."""
    from SeqClassifierLib.dicom.discovery import discover_series

    by_study: dict[str, list[str]] = {}
    for s in discover_series([str(root)], workers=1).series:
        by_study.setdefault(s.study_uid, []).extend(s.files)
    return sorted({Path(os.path.commonpath(files)) for files in by_study.values()})


def dcm_classifier_run(root: Path) -> tuple[str, Optional[Callable[[], int]]]:
    """(a line saying what is run, the run: dcm-classifier over every study folder under ``root``,
    returning its series count), or (why not, None) where it is not installed."""
    try:
        import dcm_classifier  # noqa: F401
        from dcm_classifier.image_type_inference import ImageTypeClassifierBase
        from dcm_classifier.study_processing import ProcessOneDicomStudyToVolumesMappingBase
    except Exception as exc:  # not installed, or its dependencies are missing
        return f"  dcm-classifier: not installed ({type(exc).__name__}: {exc})", None
    try:
        from importlib.metadata import version

        ver = version("dcm-classifier")
    except Exception:
        ver = "?"
    t = time.perf_counter()
    inferer = ImageTypeClassifierBase()
    load = time.perf_counter() - t
    folders = study_folders(root)

    def run() -> int:
        n = 0
        for folder in folders:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                study = ProcessOneDicomStudyToVolumesMappingBase(study_directory=folder, inferer=inferer)
                study.run_inference()
            n += len(study.get_study_dictionary())
        return n

    return (f"  dcm-classifier {ver} (ProcessOneDicomStudyToVolumesMappingBase + run_inference, "
            f"{len(folders)} study folder(s); model load {load * 1e3:.0f} ms)"), run


def compare_in_rounds(label: str, root: Path, files: list[str], e2e: "EndToEnd", repeats: int,
                      with_dcm: bool) -> tuple[float, float, Optional[float]]:
    """The plain loop, ours end to end and (``with_dcm``) dcm-classifier over the same files, timed in
    alternation (:func:`timed_rounds`); prints their rows; returns their min times (dcm: None if not run)."""
    n = len(files)
    dcm_line, dcm_run = dcm_classifier_run(root) if with_dcm else ("", None)
    fns = [lambda: plain_pydicom_loop(files), lambda: e2e(root)] + ([dcm_run] if dcm_run else [])
    e2e.reset()
    times, results = timed_rounds(fns, repeats)
    plain = min(times[0])
    n_series = results[1][0]
    print(row("plain pydicom loop (reference)", times[0], n))
    print(row(f"ours end to end ({n_series} series)", times[1], n, plain))
    for key, vals in e2e.parts.items():
        vals = vals[-repeats:]
        print(f"    {key:36s} min {ms(min(vals))}  median {ms(statistics.median(vals))}")
    dcm = None
    if with_dcm:
        print(dcm_line)
        if dcm_run is not None:
            dcm = min(times[2])
            print(row(f"dcm-classifier end to end ({results[2]} series)", times[2], n, plain))
    print(f"  ({label}: the rows above were timed in {repeats} alternating rounds)")
    if len(times[1]) > 1 and statistics.median(times[1]) > 1.5 * min(times[1]):
        print("  WARNING: median >> min: the machine was busy during this set; re-run it")
    return min(times[1]), plain, dcm


# ----------------------------------------------------------------------------
# GPU
# ----------------------------------------------------------------------------

def bench_gpu(batch: int = 256, seconds: float = 8.0) -> list[str]:
    import torch

    from SeqClassifierLib.inputs.features import N_FEATURES
    from SeqClassifierLib.model.fusion import create_model

    lines = [f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, bf16 autocast, "
             f"inference_mode, batch {batch}"]
    for backbone in ("compact_cnn", "vit_b16"):
        t = time.perf_counter()
        model = create_model("joint", backbone, num_meta_features=N_FEATURES, pretrained=False)
        model = model.to("cuda").eval()
        torch.cuda.synchronize()
        build = time.perf_counter() - t
        size = int(model.config["input_size"])

        def step(n: int) -> None:
            img = torch.randn(n, 3, size, size, device="cuda")
            meta = torch.randn(n, N_FEATURES, device="cuda")
            ones = torch.ones(n, dtype=torch.bool, device="cuda")
            with torch.inference_mode(), torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                model(img, meta, image_present=ones, meta_present=ones)

        # first series once loaded (includes kernel selection on the first call)
        torch.cuda.synchronize()
        t = time.perf_counter()
        step(1)
        torch.cuda.synchronize()
        first = time.perf_counter() - t
        for _ in range(3):
            step(1)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(20):
            step(1)
        torch.cuda.synchronize()
        single = (time.perf_counter() - t) / 20
        for _ in range(3):
            step(batch)
        torch.cuda.synchronize()
        n_batches, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds / 2:
            step(batch)
            n_batches += 1
            if n_batches % 5 == 0:
                torch.cuda.synchronize()
        torch.cuda.synchronize()
        rate = n_batches * batch / (time.perf_counter() - t)
        mem = torch.cuda.max_memory_allocated() / 2**30
        lines.append(f"  {backbone:12s} input {size:3d}: {rate:9.0f} series/s (batch {batch}); first series "
                     f"{first * 1e3:7.1f} ms, then {single * 1e3:6.2f} ms/series at batch 1; "
                     f"build+to(cuda) {build:.1f} s; peak GPU memory {mem:.1f} GiB")
        del model, step
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return lines


# ----------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------

def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="study folder (default: the ProstateX data)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (min and median shown)")
    p.add_argument("--sizes", default="200,2000,20000", help="file counts of the replicated sets ('' = none)")
    p.add_argument("--quick", action="store_true", help="short CI run: --data only, 1 repeat, no scaled sets")
    p.add_argument("--model", help="checkpoint to use; 'fresh': a new untrained compact_cnn joint model "
                                   "(default: the shipped model, else a fresh one)")
    p.add_argument("--folds", type=int, default=1, help="folds of the fresh untrained model (default 1)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--workers", type=int, default=None, help="discover_series workers (default: automatic)")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "seqclassifier-bench",
                   help="where replicated sets are written once (never inside the repository)")
    p.add_argument("--gpu-only", action="store_true", help="only the GPU section (needs CUDA)")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.sizes = 1, ""
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    workdir = args.workdir.resolve()
    if workdir == REPO or REPO in workdir.parents:
        p.error("--workdir must be outside the repository")

    # what the command line does first (SeqClassifierLib.allocator): every measurement of this process,
    # the plain loop and dcm-classifier included, runs with freed memory kept
    from SeqClassifierLib.allocator import keep_freed_memory

    kept = keep_freed_memory()

    import numpy
    import torch

    try:  # --gpu-only needs neither pydicom nor data
        import pydicom

        pydicom_version = pydicom.__version__
    except ImportError:
        pydicom_version = "not installed"
    print(f"SeqClassifier benchmark -- Python {platform.python_version()}, pydicom {pydicom_version}, "
          f"numpy {numpy.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{os.cpu_count()} CPUs, {platform.platform()}; freed memory kept (allocator): {kept}")
    busy = cpu_busy()
    if busy is not None:
        print(f"CPU busy before start: {busy * 100:.0f}%" + (
            "  WARNING: other processes are running; timings (torch's above all) will be slow and noisy"
            if busy > 0.10 else ""))
    if args.gpu_only:
        if not torch.cuda.is_available():
            print("no CUDA device: nothing to do for --gpu-only")
            return 1
        print("\n".join(bench_gpu()))
        return 0

    from SeqClassifierLib.model.classifier import Classifier
    from SeqClassifierLib.dicom.discovery import read_file_header
    from SeqClassifierLib.dicom.pydicom_reader import read_file_header_pydicom

    results: list[tuple[str, float, float]] = []  # (what, ours, plain)
    vs_dcm: list[tuple[str, float, float]] = []  # (what, ours, dcm-classifier)
    cli_results: list[tuple[str, dict]] = []  # (what, cli_cold runs)
    with tempfile.TemporaryDirectory(prefix="seqclassifier-bench-") as tmp:
        model_path, model_kind = resolve_model(args, Path(tmp))
        t = time.perf_counter()
        classifier = Classifier(model_path, device=args.device)
        load = time.perf_counter() - t
        print(f"model: {model_path} ({model_kind}); load {load * 1e3:.0f} ms on {classifier.device}; "
              f"trained={classifier.is_trained}")
        env = fresh_process_env(workdir)
        print(f"fresh processes: .pyc files cached in {workdir / 'pycache'}")
        cold = cold_model_load(model_path, args.device, env)
        print(f"model load in a fresh process: import torch + SeqClassifierLib {cold[0] * 1e3:.0f} ms, "
              f"then Classifier() {cold[1] * 1e3:.0f} ms")
        e2e = EndToEnd(classifier, workers=args.workers)

        # -- the study -----------------------------------------------------
        files = list_files(args.data)
        n = len(files)
        print(f"\n[{args.data}] {n} files, warm cache, {args.repeats} repeat(s)")
        ours, plain, dcm = compare_in_rounds("the study", args.data, files, e2e, args.repeats, with_dcm=True)
        slow_t, _ = timed(lambda: header_loop(files, read_file_header_pydicom), args.repeats)
        print(row("headers: pydicom reader (old path)", slow_t, n, plain))
        fast_t, _ = timed(lambda: header_loop(files, read_file_header), args.repeats)
        print(row("headers: fast reader (+fallback)", fast_t, n, plain))
        results.append((f"study {args.data.name} ({n} files)", ours, plain))
        tracemalloc.start()
        e2e(args.data)
        _, py_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"  model load {load * 1e3:.0f} ms (not in the timed region); peak Python heap of one end-to-end "
              f"run {py_peak / 2**20:.1f} MiB (tracemalloc); process peak RSS so far {peak_rss_mb():.0f} MiB")
        if dcm is not None:
            vs_dcm.append((f"study {args.data.name} ({n} files)", ours, dcm))
        runs = cli_cold(args.data, model_path, args.device, args.repeats, Path(tmp), env)
        print("\n".join(cli_lines(runs)))
        cli_results.append((f"study {args.data.name} ({n} files)", runs))

        # -- replicated sets ------------------------------------------------
        for size in sizes:
            root = build_scaled_set(args.data, size, workdir)
            sfiles = list_files(root)
            reps = args.repeats if size <= 2000 else max(1, min(args.repeats, 2))
            print(f"\n[{size} files: {root}] warm cache, {reps} repeat(s)")
            # dcm-classifier costs ~5 ms/file: compared on the smaller sets only
            ours, splain, dcm = compare_in_rounds(f"{size} files", root, sfiles, e2e, reps, with_dcm=size <= 2000)
            from SeqClassifierLib.dicom.discovery import discover_series

            for label, w in (("discovery serial (workers=1)", 1), ("discovery 2 processes (workers=2)", 2),
                             ("discovery automatic (workers=None)", None)):
                dt, _ = timed(lambda: discover_series([str(root)], workers=w), reps)
                print(row(label, dt, size, splain))
            dt, _ = timed(lambda: threaded_header_loop(sfiles, 2), reps)
            print(row("headers in 2 threads (for the record)", dt, size, splain))
            if dcm is not None:
                vs_dcm.append((f"{size} replicated files", ours, dcm))
            runs = cli_cold(root, model_path, args.device, reps, Path(tmp), env)
            print("\n".join(cli_lines(runs)))
            cli_results.append((f"{size} replicated files", runs))
            print(f"  benchmark process peak RSS so far {peak_rss_mb():.0f} MiB")
            results.append((f"{size} replicated files", ours, splain))

    if torch.cuda.is_available():
        print()
        print("\n".join(bench_gpu()))

    # -- verdict -------------------------------------------------------------
    print(f"\nTarget: ours end to end <= {TARGET_RATIO}x plain pydicom header loop (min over repeats)")
    print(f"  {'set':34s} {'ours':>12s} {'plain':>12s} {'ratio':>7s}  verdict")
    ok = True
    for what, ours, ref in results:
        ratio = ours / ref
        met = ratio <= TARGET_RATIO
        ok &= met
        margin = abs(TARGET_RATIO - ratio) / TARGET_RATIO * 100
        verdict = f"MET by {margin:.0f}%" if met else f"MISSED by {margin:.0f}%"
        print(f"  {what:34s} {ms(ours)} {ms(ref)} {ratio:6.2f}x  {verdict}")
    if vs_dcm:
        print(f"\nTarget: at least {TARGET_DCM:g}x faster than dcm-classifier (min over repeats)")
        print(f"  {'set':34s} {'ours':>12s} {'dcm-cls':>12s} {'speed-up':>8s}  verdict")
        for what, ours, ref in vs_dcm:
            speedup = ref / ours
            ok &= speedup >= TARGET_DCM
            print(f"  {what:34s} {ms(ours)} {ms(ref)} {speedup:7.1f}x  {'MET' if speedup >= TARGET_DCM else 'MISSED'}")
    if cli_results:
        print(f"\nTarget: the CLI, start-up included, <= {TARGET_CLI:g}x a plain-loop program on 2,000 files; "
              f"peak RSS <= {TARGET_RSS_MIB:.0f} MiB there")
        print(f"  {'set':34s} {'CLI':>12s} {'plain':>12s} {'ratio':>7s} {'peak RSS':>9s} {'anon.':>8s}  verdict")
        for what, runs in cli_results:
            cli, ref, rss, anon = min(runs["cli"]), min(runs["plain"]), max(runs["rss"]), max(runs["anon"])
            judged = what.startswith("2000 ")
            met = cli / ref <= TARGET_CLI and rss <= TARGET_RSS_MIB
            if judged:
                ok &= met
            verdict = ("MET" if met else "MISSED") if judged else "(for the record)"
            print(f"  {what:34s} {ms(cli)} {ms(ref)} {cli / ref:6.2f}x {rss:5.0f} MiB {anon:4.0f} MiB  {verdict}")
    print(f"\nTarget: model load under 2 s: {cold[1]:.2f} s in a fresh process ({load:.2f} s in this one; "
          f"importing torch first costs {cold[0]:.2f} s)  {'MET' if cold[1] < 2.0 else 'MISSED'}")
    ok &= cold[1] < 2.0
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
