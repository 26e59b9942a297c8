"""Archive scale: ``classify --format jsonl --out F`` over 1,000 / 10,000 / 50,000 one-file series.

For each archive size and engine (local; Dask LocalCluster with 2 workers)
the command line runs in a fresh process (``nice``d, model load included) and
the parent records: wall time, time until the first series row is in F,
time per series, the steady time per series after the first row, and the
peak RSS of the largest process (the CLI, or a Dask worker) from ``wait4``.
A 20,000-file study (``--big``) checks that a big study streams too.

Archives are written once by ``archive_gen`` into ``--workdir`` (default
``$TMPDIR/seqclassifier-archive``), never into the shared data.

    python Testing/benchmarks/bench_archive.py --sizes 1000,10000,50000 --engines local,dask --big
    python Testing/benchmarks/bench_archive.py --sizes 1000 --model shipped   # the shipped 4-fold model

It prints a Markdown table (the one in README.md) and the ratio of time per
series at the largest size to the smallest (flat: within 1.2x).  A benchmark,
not a test: it never fails the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "SeqClassifier"))

import archive_gen  # noqa: E402


def fresh_model(tmp: Path) -> Path:
    """An untrained 1-fold compact_cnn joint model: the real per-series model work at a quarter of the
    shipped 4-fold ensemble's cost."""
    import torch

    from SeqClassifierLib.inputs.features import FEATURE_SCHEMA_VERSION, N_FEATURES
    from SeqClassifierLib.model.checkpoint import save_checkpoint
    from SeqClassifierLib.model.fusion import create_model

    torch.manual_seed(0)
    model = create_model("joint", "compact_cnn", num_meta_features=N_FEATURES)
    cfg = model.config
    card = {"name": "bench_untrained", "feature_schema_version": FEATURE_SCHEMA_VERSION,
            "preprocessing": {"input_size": cfg["input_size"], "mean": cfg["mean"], "std": cfg["std"]}}
    return save_checkpoint(tmp / "bench_model.json", [model], card)


def run_once(root: Path, engine: str, model: Optional[Path], out: Path) -> dict:
    if out.exists():
        out.unlink()
    cmd = ["nice", "-n", "10", sys.executable, "-m", "SeqClassifierLib.app.cli", "classify", str(root),
           "--format", "jsonl", "--out", str(out), "--quiet", "--engine", engine]
    if model is not None:
        cmd += ["--model", str(model)]
    env = dict(os.environ, PYTHONPATH=str(REPO / "SeqClassifier"))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    first, ru, status = None, None, 0
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)  # rusage of the CLI and its waited-for children
        if pid:
            break
        if first is None and out.exists():
            with open(out, "rb") as fh:
                if b'"type": "series"' in fh.read(4096):
                    first = time.perf_counter() - t0
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read()
    lines = out.read_text().splitlines()
    summary = json.loads(lines[-1])
    return {"wall": wall, "first": first if first is not None else wall, "n_series": summary["n_series"],
            "rc": proc.returncode, "err": err.strip()[-400:], "rss_mb": ru.ru_maxrss / 1024,
            "cpu": ru.ru_utime + ru.ru_stime}


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1000,10000,50000")
    p.add_argument("--engines", default="local,dask")
    p.add_argument("--big", action="store_true", help="also a 20,000-file study (local engine)")
    p.add_argument("--model", default="fresh", help="fresh (1-fold untrained compact_cnn), shipped, or a checkpoint")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "seqclassifier-archive"))
    p.add_argument("--source", default=os.path.join(os.environ.get("SEQCLASSIFIER_DATA", REPO.parent / "shared" / "data"),
                                                    "prostatex"))
    args = p.parse_args(argv)
    work = Path(args.workdir)
    if REPO in work.resolve().parents:
        p.error("--workdir must be outside the repository")
    work.mkdir(parents=True, exist_ok=True)
    model = None if args.model == "shipped" else (fresh_model(work) if args.model == "fresh" else Path(args.model))
    sets = [(f"{int(n):,} one-file series", archive_gen.one_file_series(work / f"one_file_{n}", int(n), args.source))
            for n in args.sizes.split(",") if n]
    if args.big:
        sets.append(("20,000-file study", archive_gen.big_studies(work / "big_study_20000", 1, 20000, args.source)))
    rows = []
    for name, root in sets:
        for engine in args.engines.split(","):
            if name.startswith("20,000") and engine != "local":
                continue
            r = run_once(root, engine, model, work / f"out_{engine}.jsonl")
            r["name"], r["engine"] = name, engine
            rows.append(r)
            per = r["wall"] / max(1, r["n_series"])
            steady = (r["wall"] - r["first"]) / max(1, r["n_series"])
            print(f"{name:24} {engine:5} rc={r['rc']} series={r['n_series']} wall={r['wall']:.1f}s "
                  f"first row={r['first']:.1f}s {per * 1000:.2f} ms/series steady {steady * 1000:.2f} ms/series "
                  f"cpu {r['cpu'] * 1000 / max(1, r['n_series']):.2f} ms/series peak RSS {r['rss_mb']:.0f} MB", flush=True)
            if r["rc"] not in (0, 2):
                print(r["err"], file=sys.stderr)
    print("\n| archive | engine | series | wall (s) | first row (s) | ms / series | steady ms / series "
          "| CPU ms / series | peak RSS (MB) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['engine']} | {r['n_series']:,} | {r['wall']:.1f} | {r['first']:.1f} | "
              f"{r['wall'] / max(1, r['n_series']) * 1000:.2f} | "
              f"{(r['wall'] - r['first']) / max(1, r['n_series']) * 1000:.2f} | "
              f"{r['cpu'] / max(1, r['n_series']) * 1000:.2f} | {r['rss_mb']:.0f} |")
    for engine in args.engines.split(","):
        er = [r for r in rows if r["engine"] == engine and "one-file" in r["name"]]
        if len(er) >= 2:
            a, b = er[0], er[-1]
            ratio = (b["wall"] / b["n_series"]) / (a["wall"] / a["n_series"])
            print(f"{engine}: time per series {b['name']} / {a['name']} = {ratio:.2f}x "
                  f"({'flat' if ratio <= 1.2 else 'NOT flat'}: target <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
