#!/usr/bin/env python3
"""The real-series corpus: one manifest (data/real_series.csv), the DICOM outside the repository.

    scripts/real_corpus.py merge FRAGMENT.csv... [--shared ../shared/data] [--out data/real_series.csv]
    scripts/real_corpus.py check [data/real_series.csv]
    scripts/real_corpus.py build --mirrors DIR --out CORPUS [data/real_series.csv]

``merge`` joins per-source manifest fragments with the series of ``../shared/data``
(rows of source ``shared_prostatex`` / ``shared_vendors``) into one table, sorted by
source and path.  ``check`` validates it (columns, labels, one row per
(source, SeriesInstanceUID), no reserved repository).  ``build`` copies each
source's files out of local git snapshots of its repository (``DIR/owner+name``,
as the project's fetch tool lays them out) at the recorded commit into
``CORPUS/<source>/<path>``: the DICOM never enters this repository.  Labels for
training (``CORPUS/<source>/labels.csv``) are written by the people labelling,
with the same rows.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

COLUMNS = ["source", "repository", "commit", "path", "StudyInstanceUID", "SeriesInstanceUID", "label",
           "manufacturer", "note"]
LABELS = {"T2w", "DWI", "ADC", "DCE", "OTHER", "?"}
#: Never used for training, tuning or tests (kept for the external test).
RESERVED = ("neurolabusc/dcm_qa", "diagnijmegen/picai_prep", "rordenlab/dcm2niix")
#: The two studies of DIAGNijmegen/picai_prep in ../shared are allowed (the shared fixtures).
SHARED_SOURCES = {"prostatex": ("shared_prostatex", "DIAGNijmegen/picai_prep"),
                  "vendors": ("shared_vendors", "icometrix/dicom2nifti")}


def read(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _header(folder: Path) -> tuple[str, str]:
    """(StudyInstanceUID, Manufacturer) of the first DICOM file in ``folder`` ('' when unreadable)."""
    try:
        import pydicom
    except ImportError:
        return "", ""
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        except Exception:
            continue
        return str(ds.get("StudyInstanceUID", "")), str(ds.get("Manufacturer", ""))
    return "", ""


def shared_rows(shared: Path) -> list[dict]:
    out = []
    for sub, (source, repo) in SHARED_SOURCES.items():
        lab = shared / sub / "labels.csv"
        if not lab.is_file():
            continue
        for r in read(lab):
            study, maker = _header(shared / sub / r["series_dir"])
            out.append({"source": source, "repository": repo, "commit": "", "path": f"../shared/data/{sub}/"
                        f"{r['series_dir']}", "StudyInstanceUID": study,
                        "SeriesInstanceUID": r["SeriesInstanceUID"], "label": r["label"], "manufacturer": maker,
                        "note": (r.get("note") or "") + " (in ../shared/data)"})
    return out


def problems(rows: list[dict]) -> list[str]:
    out = []
    seen = set()
    for i, r in enumerate(rows, 2):
        missing = [c for c in COLUMNS if c not in r]
        if missing:
            out.append(f"line {i}: missing columns {missing}")
            continue
        if r["label"] not in LABELS:
            out.append(f"line {i}: label {r['label']!r} is not one of {sorted(LABELS)}")
        repo = r["repository"].lower()
        if r["source"] not in {s for s, _ in SHARED_SOURCES.values()} and any(repo.startswith(x) for x in RESERVED):
            out.append(f"line {i}: repository {r['repository']} is reserved for the external test")
        key = (r["source"], r["SeriesInstanceUID"])
        if not r["SeriesInstanceUID"]:
            out.append(f"line {i}: no SeriesInstanceUID")
        elif key in seen:
            out.append(f"line {i}: series {r['SeriesInstanceUID']} twice in source {r['source']}")
        seen.add(key)
        if r["label"] != "?" and not r["note"].strip():
            out.append(f"line {i}: no reason in note")
    return out


def cmd_merge(args) -> int:
    rows = shared_rows(Path(args.shared)) if args.shared else []
    shared_uids = {r["SeriesInstanceUID"] for r in rows}
    for frag in args.fragments:
        for r in read(Path(frag)):
            if r.get("SeriesInstanceUID") in shared_uids:
                continue
            rows.append({c: (r.get(c) or "").strip() for c in COLUMNS})
    rows.sort(key=lambda r: (r["source"], r["path"], r["SeriesInstanceUID"]))
    bad = problems(rows)
    for p in bad:
        print(f"{args.out}: {p}", file=sys.stderr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    print(f"{args.out}: {len(rows)} series from {len({r['source'] for r in rows})} sources")
    return 1 if bad else 0


def cmd_check(args) -> int:
    rows = read(Path(args.manifest))
    bad = problems(rows)
    for p in bad:
        print(f"{args.manifest}: {p}", file=sys.stderr)
    by = {}
    for r in rows:
        by.setdefault(r["source"], {}).setdefault(r["label"], 0)
        by[r["source"]][r["label"]] += 1
    for s, c in sorted(by.items()):
        print(f"{s:40s} " + " ".join(f"{k}={v}" for k, v in sorted(c.items())))
    return 1 if bad else 0


def cmd_build(args) -> int:
    failed = 0
    for r in read(Path(args.manifest)):
        if not r["commit"]:
            continue
        git_dir = Path(args.mirrors) / r["repository"].replace("/", "+")
        dest = Path(args.out) / r["source"] / r["path"]
        listing = subprocess.run(["git", "--git-dir", str(git_dir), "ls-tree", "-r", "--name-only", r["commit"],
                                  "--", r["path"]], capture_output=True, text=True)
        if listing.returncode != 0 or not listing.stdout.strip():
            print(f"{r['repository']}@{r['commit'][:12]}:{r['path']}: not found in {git_dir}", file=sys.stderr)
            failed += 1
            continue
        for name in listing.stdout.splitlines():
            target = Path(args.out) / r["source"] / name
            target.parent.mkdir(parents=True, exist_ok=True)
            blob = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{r['commit']}:{name}"],
                                  capture_output=True)
            if blob.returncode == 0:
                target.write_bytes(blob.stdout)
        print(f"{dest}: done")
    return 1 if failed else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("merge")
    p.add_argument("fragments", nargs="+")
    p.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "data" / "real_series.csv"))
    p.set_defaults(func=cmd_merge)
    default = str(Path(__file__).resolve().parents[1] / "data" / "real_series.csv")
    p = sub.add_parser("check")
    p.add_argument("manifest", nargs="?", default=default)
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("build")
    p.add_argument("manifest", nargs="?", default=default)
    p.add_argument("--mirrors", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_build)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
