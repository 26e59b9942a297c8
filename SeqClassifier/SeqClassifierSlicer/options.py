"""The panel's choices as Enums: stable keys stored in the parameter node, translated text shown.

Slicer's parameter node wrapper stores an Enum by its member name and fills a combo box
with ``<Enum>.label(member)`` (``QComboBoxToEnumConnector`` in
``Base/Python/slicer/parameterNodeWrapper/guiConnectors.py``, the same in 5.8, 5.10 and 5.12),
so a translated label never ends up in a saved scene.  The module passes the translated
texts to :func:`set_labels` (they are written with ``_()`` there, for Slicer's translation tools).
"""

from __future__ import annotations

import enum
from typing import Mapping

from SeqClassifierSlicer import review


class Source(enum.Enum):
    """Which series *Classify* sends to the classifier."""

    SCENE = "scene"
    BROWSER = "browser"
    DATABASE = "database"
    FOLDER = "folder"

    def label(self) -> str:
        return _LABELS.get(self, DEFAULT_LABELS[self])


class Preset(enum.Enum):
    """Which series *Apply* ticks for loading (values: :data:`review.PRESETS` keys)."""

    T2_DWI_ADC = review.PRESET_AXIAL_T2_HIGHB_DWI_ADC
    ALL_BUT_OTHER = review.PRESET_ALL_BUT_OTHER
    ALL = review.PRESET_ALL
    NONE = review.PRESET_NONE

    def label(self) -> str:
        return _LABELS.get(self, DEFAULT_LABELS[self])


DEFAULT_LABELS: dict = {
    Source.SCENE: "series loaded in the scene",
    Source.BROWSER: "series selected in the DICOM browser",
    Source.DATABASE: "every series in the DICOM database",
    Source.FOLDER: "a folder",
    **{p: review.PRESET_TEXT[p.value] for p in Preset},
}
_LABELS: dict = {}


def set_labels(labels: Mapping) -> None:
    """Use these (translated) texts for the members named; the others keep their English text."""
    _LABELS.update({k: str(v) for k, v in labels.items() if isinstance(k, (Source, Preset))})


def default_source(n_loaded_volumes: int) -> Source:
    """The source the panel starts with: the loaded series when there are volumes, else the browser."""
    return Source.SCENE if n_loaded_volumes > 0 else Source.BROWSER
