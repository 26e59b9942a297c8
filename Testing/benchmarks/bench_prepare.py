"""How the model inputs of many series are best prepared on this machine: one thread, threads, processes.

Prints, from one run, the min over repeats of
:func:`~SeqClassifierLib.inputs.prepare_pool.prepare_many` on the series of a
folder (default: the 2,000-file replicated set of ``bench_classify.py``) in
this thread, in 4 threads and in 2..N processes (this one included), each as a
ratio to one thread, after loading the shipped model (so the forks copy a
process with torch in it, as the classifier's do).  Also checks that every
mode gives the same bits.  A benchmark, not a test: nothing is asserted on time.

    .venv/bin/python Testing/benchmarks/bench_prepare.py [FOLDER] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "SeqClassifier"))

from SeqClassifierLib.dicom.discovery import discover_series  # noqa: E402
from SeqClassifierLib.inputs.prepare_pool import prepare_many  # noqa: E402
from SeqClassifierLib.inputs.study import study_contexts  # noqa: E402
from SeqClassifierLib.parallel import available_cpus  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?",
                   default=os.path.join(tempfile.gettempdir(), "seqclassifier-bench", "replicated_2000"))
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    if not Path(args.folder).is_dir():
        print(f"{args.folder}: not a folder (bench_classify.py --sizes 2000 writes the default one)")
        return 1
    from SeqClassifierLib.model.classifier import Classifier

    clf = Classifier(device="cpu")
    if clf.card is not None:
        pre = clf.card.preprocessing
        spec = (pre.input_size, tuple(pre.mean), tuple(pre.std), clf.card.uses_image)
    else:
        spec = (128, (0.5,) * 3, (0.5,) * 3, True)
    records = discover_series([args.folder]).series
    contexts = study_contexts(records)
    modes = [("this thread", dict(processes=1, threads=1)), ("4 threads", dict(processes=1, threads=4))]
    modes += [(f"{n} processes", dict(processes=n)) for n in range(2, max(2, min(available_cpus(), 8)) + 1)]
    times: dict[str, list[float]] = {name: [] for name, _ in modes}
    reference = None
    for _ in range(args.repeats):
        for name, kw in modes:  # interleaved, so a slow minute of the machine hits every mode
            t = time.perf_counter()
            got = prepare_many(records, contexts, spec, **kw)
            times[name].append(time.perf_counter() - t)
            bits = [(q.meta.tobytes(), None if q.image is None else q.image.tobytes()) for q in got]
            if reference is None:
                reference = bits
            elif bits != reference:
                print(f"{name}: DIFFERENT inputs")
                return 2
    base = min(times["this thread"])
    print(f"{len(records)} series of {args.folder}, {available_cpus()} CPUs, min of {args.repeats}")
    for name, _ in modes:
        best = min(times[name])
        print(f"  {name:14s} {best * 1e3:8.1f} ms  {best / len(records) * 1e3:6.2f} ms/series  "
              f"speed-up {base / best:4.2f}x")
    print("  every mode gave the same bits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
