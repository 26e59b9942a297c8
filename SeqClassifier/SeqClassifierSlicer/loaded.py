"""The fourth source: the scalar volumes already loaded in the scene, by their DICOM series.

A volume loaded through Slicer's DICOM module carries its series in the subject hierarchy
(``DICOMPlugin.addSeriesInSubjectHierarchy``: item UID ``DICOM`` = SeriesInstanceUID, item UID
``DICOMInstanceUID`` = the instance UIDs; the scalar volume plugin also sets the node attribute
``DICOM.instanceUIDs``), the same in 5.8, 5.10 and 5.12.  Its files come from the DICOM database
(``filesForSeries``, ``fileForInstance``/``seriesForFile``).  A volume without DICOM origin
(NRRD, NIfTI, a computed map) gets a note saying why it is not classified.

Duck-typed on MRML/CTK objects (no ``qt``/``ctk`` import); tested on a real MRML scene of the
``slicer-core`` wheel with a stand-in database over real files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional

from SeqClassifierSlicer import scene as sc

DICOM_UID_NAME = "DICOM"                    # vtkMRMLSubjectHierarchyConstants::GetDICOMUIDName()
DICOM_INSTANCE_UID_NAME = "DICOMInstanceUID"  # vtkMRMLSubjectHierarchyConstants::GetDICOMInstanceUIDName()
INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"
NOT_DICOM = "not loaded from DICOM: SeqClassifier classifies DICOM series only"
NOT_IN_DATABASE = "its DICOM series is not in the DICOM database"


@dataclass
class LoadedVolume:
    """One scalar volume node of the scene and the DICOM series it came from ("" when none)."""

    node_id: str
    name: str
    series_uid: str = ""
    files: list[str] = field(default_factory=list)
    note: str = ""


def _uid_of_item(sh: Any, item: int) -> str:
    uid = sh.GetItemUID(item, DICOM_UID_NAME) if item else ""
    return str(uid or "").strip()


def _series_from_instances(text: str, db: Any) -> str:
    for instance in str(text or "").split():
        path = db.fileForInstance(instance) if db is not None else ""
        if path:
            series = db.seriesForFile(path)
            if series:
                return str(series)
    return ""


def series_uid_of_node(node: Any, sh: Any, db: Any = None,
                       proxy_source: Optional[Callable[[Any], Any]] = None) -> str:
    """The SeriesInstanceUID a volume node was loaded from, or "".

    Looks at the node's subject hierarchy item (UID ``DICOM``), then its instance UIDs (item
    UID ``DICOMInstanceUID``, node attribute ``DICOM.instanceUIDs``) through the database, then,
    for a sequence proxy node, at the node ``proxy_source(node)`` returns (the sequence).
    """
    item = sh.GetItemByDataNode(node)
    uid = _uid_of_item(sh, item)
    if uid:
        return uid
    instances = (sh.GetItemUID(item, DICOM_INSTANCE_UID_NAME) if item else "") or \
        (node.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) or "")
    uid = _series_from_instances(instances, db)
    if uid:
        return uid
    source = proxy_source(node) if proxy_source is not None else None
    if source is not None and source is not node:
        return _uid_of_item(sh, sh.GetItemByDataNode(source))
    return ""


def loaded_volumes(mrml_scene: Any, db: Any, proxy_source: Optional[Callable[[Any], Any]] = None,
                   node_class: str = "vtkMRMLScalarVolumeNode") -> list[LoadedVolume]:
    """Every scalar volume (labelmaps excluded) of the scene with its DICOM series and files."""
    sh = sc.subject_hierarchy(mrml_scene)
    out = []
    for node in _nodes(mrml_scene, node_class):
        if node.IsA("vtkMRMLLabelMapVolumeNode"):
            continue
        v = LoadedVolume(node_id=node.GetID(), name=node.GetName() or "")
        v.series_uid = series_uid_of_node(node, sh, db, proxy_source)
        if not v.series_uid:
            v.note = NOT_DICOM
        else:
            v.files = [f for f in (db.filesForSeries(v.series_uid) if db is not None else []) if f]
            if not v.files:
                v.note = NOT_IN_DATABASE
        out.append(v)
    return out


def _nodes(mrml_scene: Any, node_class: str) -> list:
    collection = mrml_scene.GetNodesByClass(node_class)
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]


def study_context(db: Any, series_uids: Iterable[str], known: Optional[Mapping[str, list]] = None
                  ) -> tuple[dict[str, list[str]], set[str], int]:
    """Files of every series of the studies of ``series_uids``, the wanted set, and how many
    series were added for study context (the classifier compares sibling series).

    Each study is listed once (``seriesForStudy``) and ``filesForSeries`` is asked only for the
    series ``known`` (SeriesInstanceUID -> files read before) does not hold.
    """
    known = known or {}
    wanted = [str(u) for u in series_uids if u]
    files: dict[str, list[str]] = {}
    studies: dict[str, list[str]] = {}
    for uid in wanted:
        study = db.studyForSeries(uid)
        if study and study not in studies:
            studies[study] = list(db.seriesForStudy(study))
        for se in (studies.get(study) if study else None) or [uid]:
            if se in files:
                continue
            fs = known.get(se)
            if not fs:
                fs = [f for f in db.filesForSeries(se) if f]
            if fs:
                files[se] = list(fs)
    added = len([u for u in files if u not in set(wanted)])
    return files, set(wanted), added


def tag_with_row(node: Any, series_uid: str, row: Any, label: Any, confirmed: bool) -> None:
    """Name and tag a volume with its review row (``row`` may be None: label only)."""
    sc.tag_volume_node(
        node, label, plane=row.plane if row else None,
        description=row.description if row else node.GetName(),
        confidence=row.confidence if row else None, model=row.model if row else None,
        confirmed=confirmed, predicted_label=row.predicted_label if row else None,
        needs_review=row.needs_review if row else None, series_uid=series_uid,
        series_number=row.series_number if row else None)
