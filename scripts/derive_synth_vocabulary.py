"""Derive the synthetic generator's series-name vocabulary from the IDC index (run by hand, not by the library).

Needs ``pip install idc-index-data pandas pyarrow`` (PyPI; not project dependencies).  Reads the
IDC series index shipped by idc-index-data, keeps the MR series of the seven prostate collections
of the paper, labels each SeriesDescription with a *candidate* class by the keyword rules below
(no human check: a candidate, not ground truth), and writes, per vendor family and class, the
most frequent descriptions with the number of distinct studies that hold them.  Per-time-point
trigger times ("TT=12.3s") are replaced by "TT={tt}s" so the generator can fill them in.

    python scripts/derive_synth_vocabulary.py SeqClassifier/SeqClassifierLib/synth/vocabulary.json
"""

from __future__ import annotations

import json
import re
import sys

import idc_index_data  # noqa: E402  (a hand-run tool: these are not library dependencies)
import pandas as pd

COLLECTIONS = ("prostatex", "prostate_mri_us_biopsy", "qin_prostate_repeatability", "prostate_diagnosis",
               "prostate_3t", "prostate_mri", "prostate_fused_mri_pathology")
PER_CLASS = 40

RULES = [  # first match wins
    ("OTHER", r"loc|scout|survey|pilot|calib|\bref\b|reference|pd ref"),
    ("ADC", r"adc|apparent"),
    ("DWI", r"diff|dwi|ep2d|trace|calc_bval|focus|\bb ?\d{3,4}\b|bval|b-value|dsSh|ssh_dwi"),
    ("OTHER", r"sub\b|_sub|subtract|mip|ktrans|\bve\b|kep|auc|t1 ?map|_t1map"),
    ("DCE", r"dyn|dce|twist|perf|tricks|disco|lava|thrive|bliss|dynamisch|tt=|kinetic"),
    ("OTHER", r"pre\b|_pre|flip|vfa|\bfa ?\d"),
    ("T2w", r"t2|haste|space|spc|blade|propeller"),
]


def vendor(m: str) -> str:
    m = (m or "").upper()
    return "SIEMENS" if "SIEMENS" in m else "PHILIPS" if "PHILIPS" in m else "GE" if m.startswith("GE") else ""


def candidate(desc: str) -> str:
    d = desc.lower()
    for cls, rx in RULES:
        if re.search(rx, d):
            return cls
    return "OTHER"


def main(out: str) -> None:
    df = pd.read_parquet(idc_index_data.IDC_INDEX_PARQUET_FILEPATH)
    m = df[df.collection_id.isin(COLLECTIONS) & (df.Modality == "MR")].copy()
    m["vendor"] = m.Manufacturer.map(vendor)
    m = m[m.vendor != ""]
    m["name"] = (m.SeriesDescription.fillna("").str.strip()
                 .str.replace(r"TT=[0-9.]+s", "TT={tt}s", regex=True))
    m["cls"] = m.name.map(candidate)
    vocab: dict[str, dict[str, list[list]]] = {}
    for (v, cls), g in m.groupby(["vendor", "cls"]):
        studies = g.groupby("name").StudyInstanceUID.nunique().sort_values(ascending=False)
        vocab.setdefault(v, {})[cls] = [[str(n), int(c)] for n, c in studies.head(PER_CLASS).items() if n]
    counts = {v: {c: int(n) for c, n in g.groupby("cls").size().items()} for v, g in m.groupby("vendor")}
    doc = {
        "source": ("IDC index (idc-index-data %s, idc_index.parquet), MR series of the collections %s"
                   % (getattr(idc_index_data, "__version__", "?"), ", ".join(COLLECTIONS))),
        "method": ("SeriesDescription per vendor family (Manufacturer contains SIEMENS / PHILIPS / starts with GE); "
                   "candidate class by the first matching keyword rule of scripts/derive_synth_vocabulary.py "
                   "(not checked by a person); per class the %d names held by the most distinct studies, "
                   "with that study count; TT=<seconds>s replaced by TT={tt}s" % PER_CLASS),
        "n_series": int(len(m)),
        "series_per_vendor_and_class": counts,
        "rules": RULES,
        "vocabulary": vocab,
    }
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, ensure_ascii=False)
        fh.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
