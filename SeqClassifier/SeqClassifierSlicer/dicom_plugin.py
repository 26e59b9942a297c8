"""The DICOM plugin: the stored SeqClassifier label of each series in the DICOM browser's loadables.

Registered by ``SeqClassifier.py`` in ``slicer.modules.dicomPlugins`` (as Slicer's own plugins
do, e.g. ``DICOMScalarVolumePlugin.py``).  ``examine`` reads the label store only (no model
run): a series with a stored label gets a loadable ``<label> (<confidence>) — <description>``
of confidence 0.1, so the regular loaders stay the default while the label is visible in the
advanced view.  Loading delegates to the scalar volume plugin and then names and tags the volume.

Works with the ``DICOMPlugin`` base class of 5.8 and 5.10 (three tags in ``self.tags``, no
``examineFiles``) as well as 5.12: see :mod:`.compat`.
"""

from __future__ import annotations

import logging

import slicer
from DICOMLib import DICOMLoadable, DICOMPlugin

from SeqClassifierLib.curation.label_store import LabelStore
from SeqClassifierLib.records import SeriesKey, lookup
from SeqClassifierSlicer import compat, review
from SeqClassifierSlicer import scene as sc

#: What the loadables say (English; the module passes translated texts with :func:`set_texts`).
TEXTS = {
    "loadType": "SeqClassifier labelled volume",
    "confirmed": "confirmed",
    "label": "SeqClassifier label: {label}",
    "predicted": "predicted {label} by {model}",
    "nothing": "nothing",
    "confirmedBy": "confirmed by {who} at {when}",
}


def set_texts(texts) -> None:
    TEXTS.update({k: str(v) for k, v in texts.items() if k in TEXTS})


class SeqClassifierDICOMPlugin(DICOMPlugin):
    """Shows the stored label of each series in the DICOM browser's loadables."""

    def __init__(self):
        DICOMPlugin.__init__(self)
        compat.ensure_plugin_tags(self)  # 5.8/5.10 lack seriesInstanceUID
        self.loadType = TEXTS["loadType"]
        #: The label store to read (None: the default one, as the module uses).
        self.store = None
        self._entries = None

    def _storeEntries(self):
        if self._entries is None:
            try:
                self._entries = (self.store or LabelStore()).load()
            except Exception as exc:  # a broken store must not break the DICOM browser
                logging.warning("SeqClassifier: cannot read the label store: %s", exc)
                self._entries = {}
        return self._entries

    def examineForImport(self, fileLists):
        """Every release calls this (5.12's base would call :meth:`examineFiles` with caching;
        the store can change between examinations, so it is re-read instead)."""
        self._entries = None
        loadables = []
        for files in fileLists:
            loadables += self.examineFiles(files)
        return loadables

    def examineFiles(self, files):
        if not files:
            return []
        db = slicer.dicomDatabase
        uid = db.fileValue(files[0], compat.plugin_tag(self, "seriesInstanceUID"))
        key = SeriesKey(*(str(db.fileValue(files[0], compat.plugin_tag(self, name)) or "").strip()
                          for name in ("patientID", "studyInstanceUID")), str(uid or "").strip())
        entry = lookup(self._storeEntries(), key)  # never another patient's label of the same UID
        if entry is None or entry.label is None:
            return []
        loadable = DICOMLoadable()
        loadable.files = list(files)
        status = TEXTS["confirmed"] if entry.is_confirmed else review.format_confidence(entry.confidence)
        loadable.name = f"{entry.label} ({status}) \u2014 {entry.description or uid}"
        lines = [TEXTS["label"].format(label=entry.label),
                 TEXTS["predicted"].format(label=entry.predicted_label or TEXTS["nothing"], model=entry.model or "?")]
        if entry.is_confirmed:
            lines.append(TEXTS["confirmedBy"].format(who=entry.confirmed_by, when=entry.confirmed_at))
        lines += list(entry.review_reasons or [])
        lines += [f"{k}: {v:.3f}" for k, v in (entry.probabilities or {}).items() if v is not None]
        loadable.tooltip = "\n".join(lines)
        loadable.selected = False
        loadable.confidence = 0.1
        loadable.seqClassifierSeriesUID = uid
        loadable.seqClassifierSeriesKey = tuple(key)
        return [loadable]

    def load(self, loadable):
        scalarPlugin = slicer.modules.dicomPlugins["DICOMScalarVolumePlugin"]()
        candidates = scalarPlugin.examineFiles(loadable.files)
        if not candidates:
            return None
        best = max(candidates, key=lambda c: (c.selected, c.confidence))
        node = scalarPlugin.load(best)
        if node:
            key = getattr(loadable, "seqClassifierSeriesKey", None)
            entry = lookup(self._storeEntries(), SeriesKey.coerce(key)) if key else None
            if entry is not None:
                sc.tag_from_prediction(node, entry)
        return node
