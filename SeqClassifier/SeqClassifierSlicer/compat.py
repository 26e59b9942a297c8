"""Everything that differs between the Slicer releases the module supports (5.8, 5.10, 5.12).

One place for each difference, with the release and the source file that shows it
(Slicer/Slicer at the tags ``v5.8.1``, ``v5.10.0``, ``v5.12.3``; CTK at the commit each
release pins in ``SuperBuild/External_CTK.cmake``: 5.8.1 ``82cae578``, 5.10.0 ``dd4caeae``,
5.12.3 ``5056664a``).  The functions take the Slicer/CTK objects as arguments and import
neither ``qt`` nor ``ctk`` nor ``slicer``, so the project's stand-ins of each release test them.

====================================  =========================  ===========================================
difference                            releases                   source
====================================  =========================  ===========================================
``DICOMPlugin.tags`` has              5.12 only (5.8/5.10 have   ``Modules/Scripted/DICOMLib/DICOMPlugin.py``
``seriesInstanceUID``, ``modality``,  ``seriesDescription``,     (5.8.1/5.10.0 l. 88-91; 5.12.3 l. 92-98)
``instanceUID``, ``sopClassUID``      ``seriesNumber``,
                                      ``frameOfReferenceUID``)
``DICOMPlugin.examineFiles`` +        5.12 only                  same file (5.12.3 l. 228-251)
caching ``examineForImport``
``ctkDICOMBrowser.selectedItems``     CTK of 5.12 only           ``Libs/DICOM/Widgets/ctkDICOMBrowser.h``
                                                                 (5056664a l. 158; absent at 82cae578/dd4caeae)
``ctkDICOMTableManager.current-       5.8, 5.10, 5.12            ``Libs/DICOM/Widgets/ctkDICOMTableManager.h``
{Series,Studies,Patients}Selection``                             l. 84-86 at all three commits
visual browser flag on                ``useExpertimental-        ``Modules/Scripted/DICOMLib/DICOMBrowser.py``
``SlicerDICOMBrowser``                VisualDICOMBrowser``       (5.8.1/5.10.0 l. 147-148;
                                      5.8/5.10,                  5.12.3 l. 159-160)
                                      ``useVisualDICOMBrowser``
                                      5.12
visual browser selection              5.12                       ``ctkDICOMVisualBrowserWidget.h``
``patientView().selectedSeries-                                  (5056664a l. 289) and ``ctkDICOMPatientView.h``
InstanceUIDs()``                                                 l. 120
visual browser selection:             5.8, 5.10                  ``ctkDICOMVisualBrowserWidget.h`` l. 263
``patientsTabWidget().currentWidget()``                          (82cae578; dd4caeae l. 262),
-> ``studyItemWidgetsList()`` ->                                 ``ctkDICOMPatientItemWidget.h`` l. 171,
``seriesListTableWidget()`` selected                             ``ctkDICOMStudyItemWidget.h`` l. 183-186,
cells -> ``seriesInstanceUID``                                   ``ctkDICOMSeriesItemWidget.h`` l. 49 (what
                                                                 ``ctkDICOMVisualBrowserWidget.cpp`` l. 961-975
                                                                 reads for its own load action)
visual browser shown only once        5.8, 5.10, 5.12            ``DICOM.py`` calls ``toggleBrowsers`` when the
``toggleBrowsers`` ran (the flag                                 DICOM layout is shown (5.12.3 l. 476), not on
attribute is created there)                                      the dock-panel path: the classic table is
                                                                 read until then
``slicer.packaging.pip_ensure``       5.12 only                  ``Base/Python/slicer/packaging.py`` l. 329
(restart prompt included)                                        (absent at v5.8.1/v5.10.0: only
                                                                 ``slicer.util.pip_install``)
bundled pydicom                       2.4 on 5.8/5.10, 3 on 5.12 ``Resources/requirements.txt`` says
                                                                 ``pydicom>=2.4,<4``
====================================  =========================  ===========================================
"""

from __future__ import annotations

import importlib
from typing import Any, Iterable, Optional

#: DICOM tags the module reads through ``slicer.dicomDatabase.fileValue``, for every release
#: (DICOMPlugin of 5.8/5.10 defines only the first three of these in ``self.tags``).
TAGS = {
    "seriesDescription": "0008,103E",
    "seriesNumber": "0020,0011",
    "frameOfReferenceUID": "0020,0052",
    "seriesInstanceUID": "0020,000E",
    "studyInstanceUID": "0020,000D",
    "patientID": "0010,0020",
    "modality": "0008,0060",
    "instanceUID": "0008,0018",
    "sopClassUID": "0008,0016",
}


def plugin_tag(plugin: Any, name: str) -> str:
    """The ``group,element`` of a symbolic tag: the plugin's own table, else :data:`TAGS`."""
    tags = getattr(plugin, "tags", None) or {}
    return tags.get(name) or TAGS[name]


def ensure_plugin_tags(plugin: Any) -> None:
    """Add the tags of :data:`TAGS` the base class of this release lacks (5.8/5.10)."""
    tags = getattr(plugin, "tags", None)
    if tags is None:
        plugin.tags = tags = {}
    for name, tag in TAGS.items():
        tags.setdefault(name, tag)


def uses_visual_browser(browser_widget: Any) -> bool:
    """Whether the DICOM module shows the visual browser (flag renamed in 5.12)."""
    if browser_widget is None:
        return False
    if hasattr(browser_widget, "useVisualDICOMBrowser"):  # 5.12
        return bool(browser_widget.useVisualDICOMBrowser)
    return bool(getattr(browser_widget, "useExpertimentalVisualDICOMBrowser", False))  # 5.8, 5.10


class Selection:
    """What the DICOM browser has selected, as series UIDs.

    ``level``: ``"series"``, ``"study"``, ``"patient"`` or ``""`` (nothing); ``available``:
    False when the browser in use cannot tell its selection (visual browser before 5.12);
    ``note``: one line for the panel when something is not as asked.
    """

    def __init__(self, series: Iterable[str] = (), level: str = "", available: bool = True, note: str = ""):
        self.series = [str(s) for s in series if s]
        self.level = level
        self.available = available
        self.note = note

    def __repr__(self) -> str:
        return f"Selection({len(self.series)} series, level={self.level!r}, available={self.available})"


def _series_of_studies(db: Any, studies: Iterable[str]) -> list[str]:
    return [str(se) for st in studies for se in db.seriesForStudy(st)]


def _value(obj: Any, name: str) -> Any:
    """A Qt property (PythonQt: attribute) or getter of a CTK object."""
    value = getattr(obj, name, None)
    return value() if callable(value) else value


def _visual_selection_512(visual: Any) -> Optional[list[str]]:
    view = visual.patientView() if hasattr(visual, "patientView") else None
    if view is None or not hasattr(view, "selectedSeriesInstanceUIDs"):
        return None
    return [str(s) for s in view.selectedSeriesInstanceUIDs()]


def _visual_selection_58(visual: Any) -> Optional[list[str]]:
    """5.8/5.10: the selected cells of each study's series table in the current patient tab."""
    tabs = visual.patientsTabWidget() if hasattr(visual, "patientsTabWidget") else None
    if tabs is None:
        return None
    patient = tabs.currentWidget()
    if patient is None or not hasattr(patient, "studyItemWidgetsList"):
        return []
    series: list[str] = []
    for study in patient.studyItemWidgetsList() or []:
        if study is None:
            continue
        table = study.seriesListTableWidget()
        for index in table.selectedIndexes():
            cell = table.cellWidget(index.row(), index.column())
            uid = str(_value(cell, "seriesInstanceUID") or "") if cell is not None else ""
            if uid and uid not in series:
                series.append(uid)
    return series


def visual_browser_selection(visual: Any) -> Optional[list[str]]:
    """The series selected in the visual browser (5.12, else 5.8/5.10's widgets), None if unreadable."""
    if visual is None:
        return None
    found = _visual_selection_512(visual)
    return found if found is not None else _visual_selection_58(visual)


def browser_selection(browser_widget: Any, db: Any) -> Selection:
    """The series selected in the DICOM browser of any supported release.

    Classic browser: the table manager's ``currentSeriesSelection()``, else every series of
    ``currentStudiesSelection()``, else of ``currentPatientsSelection()`` (same API in the CTK
    of 5.8, 5.10 and 5.12).  Visual browser (once ``toggleBrowsers`` showed it): see
    :func:`visual_browser_selection`.
    """
    if browser_widget is None:
        return Selection(available=False, note="The DICOM browser has not been opened yet.")
    if uses_visual_browser(browser_widget):
        series = visual_browser_selection(getattr(browser_widget, "dicomVisualBrowser", None))
        if series is not None:
            return Selection(series, "series" if series else "")
        return Selection(available=False, note=(
            "The visual DICOM browser does not tell its selection here: switch to the classic browser, "
            "or classify the loaded series, a folder or the whole database."))
    dicom_browser = getattr(browser_widget, "dicomBrowser", None)
    manager = dicom_browser.dicomTableManager() if dicom_browser is not None else None
    if manager is None:
        return Selection(available=False, note="The DICOM browser has no table.")
    series = list(manager.currentSeriesSelection())
    if series:
        return Selection(series, "series")
    studies = list(manager.currentStudiesSelection())
    if studies:
        return Selection(_series_of_studies(db, studies), "study")
    patients = list(manager.currentPatientsSelection())
    if patients:
        studies = [st for p in patients for st in db.studiesForPatient(p)]
        return Selection(_series_of_studies(db, studies), "patient")
    return Selection()


def table_manager(browser_widget: Any) -> Optional[Any]:
    """The classic browser's ``ctkDICOMTableManager`` (its ``seriesSelectionChanged(QStringList)``
    signal exists in every supported release), or None."""
    dicom_browser = getattr(browser_widget, "dicomBrowser", None) if browser_widget is not None else None
    if dicom_browser is None or not hasattr(dicom_browser, "dicomTableManager"):
        return None
    return dicom_browser.dicomTableManager()


def pip_ensure_function(slicer_module: Any) -> Optional[Any]:
    """``slicer.packaging.pip_ensure`` (5.12), or None on 5.8/5.10."""
    packaging = getattr(slicer_module, "packaging", None)
    if packaging is None:
        try:
            packaging = importlib.import_module("slicer.packaging")
        except ImportError:  # 5.8, 5.10
            return None
    return getattr(packaging, "pip_ensure", None)
