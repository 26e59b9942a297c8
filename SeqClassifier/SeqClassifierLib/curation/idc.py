"""Plan and download MR series from NCI's Imaging Data Commons (IDC).

``seqclassifier idc plan`` reads the series index that the ``idc-index-data``
package ships (a parquet file installed with it: no network) and writes a
manifest CSV of the MR series of the chosen collections -- by default the
seven prostate collections of Denner et al. (Table 2, :data:`PAPER_TABLE2`) --
with size, instance count, manufacturer, description and a *candidate* label
guessed from the series description (:func:`candidate_label`, always marked
``unconfirmed``: it is a hint for planning, never a label).

``seqclassifier idc download`` hands the manifest's SeriesInstanceUIDs to
``idc-index``'s own downloader (``IDCClient.download_from_selection``, which
runs s5cmd against IDC's public buckets) into
``DEST/<collection>/<patient>/<study>/<modality>_<series>/``: one folder per
study, the layout ``classify`` partitions by, so the downloaded tree feeds
``classify``, the review panel and ``train`` unchanged.

``idc-index`` and ``idc-index-data`` are optional (``pip install
"seqclassifier[idc]"``) and imported only inside the functions that use them.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Iterable, Optional, Sequence

from SeqClassifierLib.atomic import atomic_write_text
from SeqClassifierLib.labels import CLASS_NAMES, SequenceLabel

#: The paper's seven collections: IDC collection_id -> (name in the paper, Table 2 counts as
#: {label: (series, patients)}; labels a collection does not list are absent).
PAPER_TABLE2: dict[str, tuple[str, dict[str, tuple[int, int]]]] = {
    "qin_prostate_repeatability": ("QIN-Prostate-Repeatability",
                                   {"T2w": (30, 15), "DWI": (30, 15), "ADC": (30, 15), "DCE": (30, 15)}),
    "prostatex": ("ProstateX", {"T2w": (431, 340), "DWI": (337, 340), "ADC": (350, 340), "DCE": (15450, 540)}),
    "prostate_mri": ("Prostate-MRI", {"T2w": (26, 26), "DWI": (52, 26), "DCE": (51, 26)}),
    "prostate_3t": ("Prostate-3T", {"T2w": (64, 64)}),
    "prostate_diagnosis": ("PROSTATE-DIAGNOSIS", {"T2w": (93, 91)}),
    "prostate_mri_us_biopsy": ("Prostate-MRI-US-Biopsy",
                               {"T2w": (958, 792), "DWI": (110, 108), "ADC": (1019, 836)}),
    "prostate_fused_mri_pathology": ("Prostate-Fused-MRI-Pathology",
                                     {"T2w": (46, 27), "DWI": (13, 12), "ADC": (12, 12), "DCE": (102, 28)}),
}
DEFAULT_COLLECTIONS: tuple[str, ...] = tuple(PAPER_TABLE2)

#: Folder layout of downloads (idc-index template): one folder per study, one per series.
DIR_TEMPLATE = "%collection_id/%PatientID/%StudyInstanceUID/%Modality_%SeriesInstanceUID"
CANDIDATE_STATUS = "unconfirmed"

_INDEX_COLUMNS = ("collection_id", "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality",
                  "StudyDate", "SeriesNumber", "SeriesDescription", "Manufacturer", "ManufacturerModelName",
                  "instanceCount", "series_size_MB", "series_aws_url")


@dataclass
class ManifestRow:
    """One series of the manifest (columns in this order)."""

    collection_id: str
    PatientID: str
    StudyInstanceUID: str
    SeriesInstanceUID: str
    Modality: str
    StudyDate: str
    SeriesNumber: str
    SeriesDescription: str
    Manufacturer: str
    ManufacturerModelName: str
    instanceCount: int
    series_size_MB: float
    candidate_label: str
    candidate_status: str
    series_aws_url: str


MANIFEST_FIELDS = tuple(f.name for f in fields(ManifestRow))


class IDCUnavailable(RuntimeError):
    """idc-index / idc-index-data is not installed."""


# Candidate rules, first match wins.  Localizers and reference scans are OTHER even when
# named T2 (the label definitions); diffusion words come before "dyn" because Siemens
# names diffusion series ep2d_diff_..._DYNDIST.
_RULES: tuple[tuple[SequenceLabel, re.Pattern], ...] = tuple((label, re.compile(p, re.I)) for label, p in (
    (SequenceLabel.OTHER, r"locali[sz]er|\bloc\b|_loc\b|scout|survey|pilot|calibrat|\bref(erence)?\b|ref_|"
                          r"\bpd\b|\bpre\b|_pre\b|\bvfa\b|t1.?map|flip"),
    (SequenceLabel.ADC, r"adc|apparent"),
    (SequenceLabel.DWI, r"diff|dwi|\bdw\b|ep2d|trace|b.?val|\bb ?\d{2,4}\b|\bb\d{2,4}"),
    (SequenceLabel.DCE, r"dce|dyn|twist|thrive|tricks|perf|gad|\bgd\b|post|contrast|vibe"),
    (SequenceLabel.T2w, r"t2"),
))


def candidate_label(description: str) -> str:
    """A label guessed from a series description: a planning hint, never a confirmed label."""
    text = description or ""
    for label, pattern in _RULES:
        if pattern.search(text):
            return label.value
    return SequenceLabel.OTHER.value


def index_path() -> str:
    """The parquet series index shipped by ``idc-index-data`` (offline)."""
    try:
        import idc_index_data  # optional dependency: only for the idc commands
    except ImportError as exc:
        raise IDCUnavailable('the idc commands need idc-index: pip install "idc-index>=0.8" idc-index-data '
                             '(or "seqclassifier[idc]")') from exc
    return str(idc_index_data.IDC_INDEX_PARQUET_FILEPATH)


def index_version() -> str:
    import idc_index_data  # optional dependency

    return str(idc_index_data.__version__)


def read_index(collections: Sequence[str], modality: Optional[str] = "MR",
               path: Optional[str] = None) -> list[dict[str, Any]]:
    """Series of ``collections`` (and ``modality``; None: every modality) from the bundled index."""
    import pyarrow.parquet as pq  # optional dependency (comes with idc-index)

    filters = [("collection_id", "in", list(collections))]
    if modality:
        filters.append(("Modality", "==", modality))
    table = pq.read_table(path or index_path(), columns=list(_INDEX_COLUMNS), filters=filters)
    return table.to_pylist()


def plan(collections: Sequence[str] = DEFAULT_COLLECTIONS, modality: Optional[str] = "MR",
         path: Optional[str] = None) -> list[ManifestRow]:
    """Manifest rows of the series to download, sorted by collection, patient, study, series number."""
    unknown = [c for c in collections if not re.fullmatch(r"[a-z0-9_]+", c)]
    if unknown:
        raise ValueError(f"not an IDC collection_id (lower case with underscores, e.g. prostatex): "
                         f"{', '.join(unknown)}")
    rows = []
    for r in read_index(collections, modality, path):
        desc = r.get("SeriesDescription") or ""
        rows.append(ManifestRow(
            collection_id=r["collection_id"], PatientID=r.get("PatientID") or "",
            StudyInstanceUID=r.get("StudyInstanceUID") or "", SeriesInstanceUID=r["SeriesInstanceUID"],
            Modality=r.get("Modality") or "", StudyDate=str(r.get("StudyDate") or ""),
            SeriesNumber=str(r.get("SeriesNumber") or ""), SeriesDescription=desc,
            Manufacturer=r.get("Manufacturer") or "", ManufacturerModelName=r.get("ManufacturerModelName") or "",
            instanceCount=int(r.get("instanceCount") or 0), series_size_MB=float(r.get("series_size_MB") or 0.0),
            candidate_label=candidate_label(desc), candidate_status=CANDIDATE_STATUS,
            series_aws_url=r.get("series_aws_url") or ""))

    def number(s: str) -> float:
        try:
            return float(s)
        except ValueError:
            return float("inf")
    rows.sort(key=lambda m: (m.collection_id, m.PatientID, m.StudyInstanceUID, number(m.SeriesNumber),
                             m.SeriesInstanceUID))
    missing = sorted(set(collections) - {m.collection_id for m in rows})
    if missing:
        raise ValueError(f"no {modality or ''} series in the IDC index {index_version()} for: "
                         f"{', '.join(missing)}".replace("  ", " "))
    return rows


def manifest_csv(rows: Iterable[ManifestRow]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(asdict(r))
    return out.getvalue()


def write_manifest(rows: Iterable[ManifestRow], path: os.PathLike) -> None:
    """Write the manifest CSV atomically."""
    atomic_write_text(path, manifest_csv(rows))


def read_manifest(path: os.PathLike) -> list[dict[str, str]]:
    """Rows of a manifest CSV; ValueError naming the file when it has no SeriesInstanceUID column."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if "SeriesInstanceUID" not in (reader.fieldnames or []):
            raise ValueError(f"{path}: not a manifest (no SeriesInstanceUID column)")
        return [r for r in reader if (r.get("SeriesInstanceUID") or "").strip()]


@dataclass
class CollectionSummary:
    collection_id: str
    paper_name: str
    series: int
    patients: int
    studies: int
    instances: int
    size_gb: float
    manufacturers: str
    candidates: dict[str, int]
    paper: dict[str, tuple[int, int]]


def summarize(rows: Sequence[ManifestRow]) -> list[CollectionSummary]:
    """Per collection: counts from the index, candidate labels, and the paper's Table 2."""
    by: dict[str, list[ManifestRow]] = defaultdict(list)
    for r in rows:
        by[r.collection_id].append(r)
    out = []
    for cid, rs in sorted(by.items()):
        makers = Counter((r.Manufacturer or "?").split()[0].upper() for r in rs)
        name, paper = PAPER_TABLE2.get(cid, (cid, {}))
        out.append(CollectionSummary(
            collection_id=cid, paper_name=name, series=len(rs), patients=len({r.PatientID for r in rs}),
            studies=len({r.StudyInstanceUID for r in rs}), instances=sum(r.instanceCount for r in rs),
            size_gb=sum(r.series_size_MB for r in rs) / 1000.0,
            manufacturers=", ".join(f"{m} {n}" for m, n in makers.most_common(3)),
            candidates=dict(Counter(r.candidate_label for r in rs)), paper=dict(paper)))
    return out


def format_summary(summaries: Sequence[CollectionSummary]) -> str:
    """A table for people: the index's MR counts next to the paper's Table 2 (series (patients))."""
    labels = [c for c in CLASS_NAMES if c != "OTHER"]
    head = (f"{'collection':30} {'MR series':>9} {'patients':>8} {'studies':>7} {'files':>8} {'GB':>7}  "
            + "  ".join(f"{c + ' cand/paper':>18}" for c in labels) + "  manufacturers")
    lines = [head]
    for s in summaries:
        cells = []
        for c in labels:
            paper = s.paper.get(c)
            cells.append(f"{s.candidates.get(c, 0):>7} / " + (f"{paper[0]} ({paper[1]})" if paper else "-").ljust(9))
        lines.append(f"{s.paper_name:30} {s.series:>9} {s.patients:>8} {s.studies:>7} {s.instances:>8} "
                     f"{s.size_gb:>7.1f}  " + "  ".join(f"{c:>18}" for c in cells) + f"  {s.manufacturers}")
    lines.append(f"{'total':30} {sum(s.series for s in summaries):>9} {sum(s.patients for s in summaries):>8} "
                 f"{sum(s.studies for s in summaries):>7} {sum(s.instances for s in summaries):>8} "
                 f"{sum(s.size_gb for s in summaries):>7.1f}")
    lines.append("cand = candidate labels guessed from SeriesDescription (unconfirmed: classify and review them); "
                 "paper = Denner et al. Table 2, series (patients) used in the paper")
    return "\n".join(lines) + "\n"


def _default_client() -> Any:
    try:
        from idc_index import IDCClient  # optional dependency: only for downloads
    except ImportError as exc:
        raise IDCUnavailable('idc download needs idc-index: pip install "idc-index>=0.8"') from exc
    return IDCClient()


def download(manifest: os.PathLike, dest: os.PathLike, *, dry_run: bool = False,
             client_factory: Optional[Callable[[], Any]] = None, chunk: int = 5000) -> tuple[int, float]:
    """Download the manifest's series into ``dest`` with idc-index (s5cmd); (series, MB) asked for.

    The series go in chunks of ``chunk`` UIDs; idc-index skips files already
    present when asked to sync, so an interrupted download can be run again.
    """
    rows = read_manifest(manifest)
    uids = list(dict.fromkeys(r["SeriesInstanceUID"].strip() for r in rows))
    size = sum(float(r.get("series_size_MB") or 0) for r in rows)
    os.makedirs(dest, exist_ok=True)
    client = (client_factory or _default_client)()
    for i in range(0, len(uids), chunk):
        client.download_from_selection(downloadDir=str(dest), seriesInstanceUID=uids[i:i + chunk],
                                       dirTemplate=DIR_TEMPLATE, dry_run=dry_run, use_s5cmd_sync=True,
                                       quiet=True, show_progress_bar=True)
    return len(uids), size
