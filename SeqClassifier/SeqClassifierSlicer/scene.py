"""Name and tag MRML volume nodes with their SeqClassifier label.

Imports ``slicer`` (MRML classes and ``slicer.util``; the ``slicer-core``
wheel is enough) but never ``qt`` or ``ctk``, so it runs headless and in
tests.

A tagged volume is named ``<label> <plane> — <description>`` (e.g.
``T2w axial — t2_tse_tra``; ``unlabeled`` when there is no label) and its
subject hierarchy item carries these attributes (strings):

====================================  =============================================
``SeqClassifier.Label``               label used (confirmed, else predicted; "" if none)
``SeqClassifier.PredictedLabel``      the model's label ("" if none, e.g. untrained)
``SeqClassifier.Confidence``          model confidence, ``"0.973"`` ("" if none)
``SeqClassifier.ModelVersion``        model name/version that predicted
``SeqClassifier.Confirmed``           ``"true"`` when a person confirmed the label, else ``"false"``
``SeqClassifier.NeedsReview``         ``"true"``/``"false"``
``SeqClassifier.Plane``               axial/sagittal/coronal/unknown
``SeqClassifier.SeriesInstanceUID``   the DICOM series
====================================  =============================================
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

import slicer

PREFIX = "SeqClassifier."
ATTR_LABEL = PREFIX + "Label"
ATTR_PREDICTED_LABEL = PREFIX + "PredictedLabel"
ATTR_CONFIDENCE = PREFIX + "Confidence"
ATTR_MODEL = PREFIX + "ModelVersion"
ATTR_CONFIRMED = PREFIX + "Confirmed"
ATTR_NEEDS_REVIEW = PREFIX + "NeedsReview"
ATTR_PLANE = PREFIX + "Plane"
ATTR_SERIES_UID = PREFIX + "SeriesInstanceUID"
ALL_ATTRIBUTES = (ATTR_LABEL, ATTR_PREDICTED_LABEL, ATTR_CONFIDENCE, ATTR_MODEL, ATTR_CONFIRMED,
                  ATTR_NEEDS_REVIEW, ATTR_PLANE, ATTR_SERIES_UID)
UNLABELED = "unlabeled"
DASH = "\u2014"  # em dash


def _text(value: Any) -> str:
    """Enum -> its value, None -> ''."""
    if value is None:
        return ""
    return str(getattr(value, "value", value))


def node_name(label: Any, plane: Any = None, description: Any = None, series_number: Any = None) -> str:
    """``<label> <plane> — <description>`` (description falls back to ``series <n>``)."""
    head = _text(label) or UNLABELED
    plane_text = _text(plane)
    if plane_text:
        head += " " + plane_text
    desc = _text(description).strip()
    if not desc and series_number not in (None, ""):
        desc = f"series {series_number}"
    return f"{head} {DASH} {desc}" if desc else head


def subject_hierarchy(scene=None):
    """The scene's subject hierarchy node (created when missing)."""
    scene = scene if scene is not None else slicer.mrmlScene
    return slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)


def item_for_node(node, create: bool = True) -> int:
    """The subject hierarchy item of ``node`` (created under the scene item when missing)."""
    sh = subject_hierarchy(node.GetScene())
    item = sh.GetItemByDataNode(node)
    if not item and create:
        # Inside Slicer the subject hierarchy plugins add every data node; bare
        # MRML scenes (slicer-core, batch scripts) need the item created here.
        item = sh.CreateItem(sh.GetSceneItemID(), node)
    return item


def _bool_text(value: Any) -> str:
    return "true" if bool(value) else "false"


def tag_volume_node(node, label: Any, *, plane: Any = None, description: Any = None,
                    confidence: Optional[float] = None, model: Any = None, confirmed: bool = False,
                    predicted_label: Any = None, needs_review: Optional[bool] = None,
                    series_uid: Optional[str] = None, series_number: Any = None,
                    rename: bool = True) -> int:
    """Name ``node`` after its label and set the ``SeqClassifier.*`` subject hierarchy attributes.

    ``label``: the label to show (confirmed, else predicted; None = no label).
    Returns the subject hierarchy item ID.
    """
    if node is None:
        raise ValueError("no node to tag")
    if node.GetScene() is None:
        raise ValueError(f"node {node.GetName()!r} is not in a scene")
    if rename:
        node.SetName(node_name(label, plane, description, series_number))
    sh = subject_hierarchy(node.GetScene())
    item = item_for_node(node)
    values = {
        ATTR_LABEL: _text(label),
        ATTR_PREDICTED_LABEL: _text(predicted_label if predicted_label is not None else
                                    (None if confirmed else label)),
        ATTR_CONFIDENCE: "" if confidence is None else f"{float(confidence):.3f}",
        ATTR_MODEL: _text(model),
        ATTR_CONFIRMED: _bool_text(confirmed),
        ATTR_NEEDS_REVIEW: "" if needs_review is None else _bool_text(needs_review),
        ATTR_PLANE: _text(plane),
        ATTR_SERIES_UID: _text(series_uid),
    }
    for key, value in values.items():
        sh.SetItemAttribute(item, key, value)
    if series_uid:
        uid_name = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName()
        if not sh.GetItemUID(item, uid_name):
            sh.SetItemUID(item, uid_name, str(series_uid))
    return item


def tag_from_prediction(node, prediction: Any, *, confirmed_label: Any = None, plane: Any = None,
                        description: Any = None, series_number: Any = None, rename: bool = True) -> int:
    """Tag ``node`` from a :class:`~SeqClassifierLib.records.Prediction`, a result row (dict)
    or a :class:`~SeqClassifierLib.curation.label_store.LabelEntry`; ``confirmed_label`` wins over the prediction.
    """
    if isinstance(prediction, Mapping):
        get = prediction.get
    else:
        def get(key, default=None):
            return getattr(prediction, key, default)
    if get("predicted_label") is not None or get("confirmed_label") is not None \
            or hasattr(prediction, "predicted_label"):  # a label store entry (object or dict)
        predicted = get("predicted_label")
        if confirmed_label is None:
            confirmed_label = get("confirmed_label")
    else:  # a Prediction or a result row
        predicted = get("label")
    label = confirmed_label if confirmed_label is not None else predicted
    return tag_volume_node(
        node, label,
        plane=plane if plane is not None else get("plane"),
        description=description if description is not None else get("description"),
        confidence=get("confidence"), model=get("model"), confirmed=confirmed_label is not None,
        predicted_label=predicted, needs_review=get("needs_review"),
        series_uid=get("series_uid"),
        series_number=series_number if series_number is not None else get("series_number"),
        rename=rename)


def read_tags(node_or_item, scene=None) -> dict[str, str]:
    """The ``SeqClassifier.*`` attributes of a node (or subject hierarchy item ID)."""
    if isinstance(node_or_item, int):
        sh = subject_hierarchy(scene)
        item = node_or_item
    else:
        sh = subject_hierarchy(node_or_item.GetScene())
        item = sh.GetItemByDataNode(node_or_item)
    if not item:
        return {}
    return {name: sh.GetItemAttribute(item, name) for name in sh.GetItemAttributeNames(item)
            if name.startswith(PREFIX)}


def tagged_nodes(scene=None, label: Any = None) -> list:
    """Data nodes whose subject hierarchy item has a SeqClassifier label (optionally a given one)."""
    scene = scene if scene is not None else slicer.mrmlScene
    sh = subject_hierarchy(scene)
    wanted = _text(label) if label is not None else None
    out = []
    nodes = scene.GetNodesByClass("vtkMRMLVolumeNode")
    for i in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(i)
        item = sh.GetItemByDataNode(node)
        if not item or not sh.HasItemAttribute(item, ATTR_LABEL):
            continue
        if wanted is None or sh.GetItemAttribute(item, ATTR_LABEL) == wanted:
            out.append(node)
    return out


def add_slice_volume(array2d, name: str = "", scene=None, spacing: Iterable[float] = (1.0, 1.0),
                     node_class: str = "vtkMRMLScalarVolumeNode"):
    """Put a 2D numpy image (rows, cols) into ``scene`` as a one-slice volume node (e.g. a thumbnail)."""
    import numpy as np

    scene = scene if scene is not None else slicer.mrmlScene
    arr = np.asarray(array2d)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {arr.shape}")
    node = scene.AddNewNodeByClass(node_class, name)
    sx, sy = (float(s) for s in spacing)
    node.SetSpacing(sy, sx, 1.0)  # IJK order: columns, rows, slice
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(arr[np.newaxis, :, :]))
    node.CreateDefaultDisplayNodes()
    return node
