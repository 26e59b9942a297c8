"""The project's stand-ins for the Slicer/CTK APIs the module uses, one set per release.

Written from reading Slicer's and CTK's sources at the releases named (no Slicer code here):

* ``DICOMPlugin`` base class: ``Modules/Scripted/DICOMLib/DICOMPlugin.py`` at v5.8.1 / v5.10.0
  (``self.tags``: seriesDescription, seriesNumber, frameOfReferenceUID only; ``examineForImport``
  returns [] and ``examine`` calls it) and at v5.12.3 (also seriesInstanceUID, modality,
  instanceUID, sopClassUID; ``examineForImport`` caches ``examineFiles``).
* ``DICOMUtils.getLoadablesFromFileLists`` (v5.8.1 l. 802-842): examineForImport, then examine
  when that returned nothing; an exception is logged as "DICOM Plugin failed".
* ``SlicerDICOMBrowser`` (``DICOMLib/DICOMBrowser.py``): ``dicomBrowser`` (ctkDICOMBrowser),
  ``dicomVisualBrowser``, the flag ``useExpertimentalVisualDICOMBrowser`` (5.8/5.10) or
  ``useVisualDICOMBrowser`` (5.12), set by ``toggleBrowsers``.
* ``ctkDICOMBrowser`` (``Libs/DICOM/Widgets/ctkDICOMBrowser.h``): ``dicomTableManager()`` always,
  ``selectedItems(level)`` only at CTK 5056664a (Slicer 5.12).
* ``ctkDICOMTableManager.h``: ``currentPatientsSelection``/``currentStudiesSelection``/
  ``currentSeriesSelection`` at all three CTK commits.
* ``ctkDICOMVisualBrowserWidget.h``: ``patientView()`` (-> ``ctkDICOMPatientView.selectedSeriesInstanceUIDs``)
  only at 5056664a; before (82cae578, dd4caeae): ``patientsTabWidget()`` (a QTabWidget of
  ``ctkDICOMPatientItemWidget``: ``studyItemWidgetsList()``), ``ctkDICOMStudyItemWidget``
  (``seriesListTableWidget()``: a QTableWidget whose cells are ``ctkDICOMSeriesItemWidget``s with
  the Q_PROPERTY ``seriesInstanceUID``; PythonQt shows a property as an attribute).
* ``DICOMUtils.selectHighestConfidenceLoadables`` / ``loadLoadables`` (v5.8.1 l. 223 / 846, same at
  v5.12.3): per series only the highest-confidence loadables stay selected; the last plugin with a
  selected loadable loads it.
* ``slicer.util.pip_install(requirements)`` (5.8.1 l. 3899, 5.10.0 l. 3991: ``python -m pip install``
  through ``launchConsoleProcess``, output to the log, no progress), ``slicer.packaging`` (5.12.3
  only: ``pip_ensure(requirements, constraints, skip_packages, prompt_install, prompt_restart,
  requester, skip_in_testing, show_progress)`` l. 329) and ``PyTorchUtils.PyTorchUtilsLogic``
  (fepegar/SlicerPyTorch: ``torchInstalled()`` static, ``installTorch(askConfirmation,
  forceComputationBackend, torchVersionRequirement, torchvisionVersionRequirement)``), over a
  pretend site-packages (:class:`PythonEnvironment`) and a pretend package index.
* ``ctkDICOMDatabase.h``: the query methods below (same at every commit), here over real files read
  with pydicom.
"""

from __future__ import annotations

import os
import types
from pathlib import Path

import pydicom

RELEASES = ("5.8", "5.10", "5.12")


# ---- DICOMLib ----------------------------------------------------------------------------------
class DICOMLoadable:
    def __init__(self, qLoadable=None):
        self.files = []
        self.name = "Unknown"
        self.tooltip = "No further information available"
        self.warning = ""
        self.selected = False
        self.confidence = 0.5


def dicom_plugin_base(release: str):
    """The DICOMPlugin base class as ``release`` defines it."""

    class DICOMPlugin:
        def __init__(self):
            self.loadType = "Generic DICOM"
            self.loadableCache = {}
            self.tags = {"seriesDescription": "0008,103E", "seriesNumber": "0020,0011",
                         "frameOfReferenceUID": "0020,0052"}
            if release == "5.12":
                self.tags.update({"seriesInstanceUID": "0020,000E", "modality": "0008,0060",
                                  "instanceUID": "0008,0018", "sopClassUID": "0008,0016"})

        def examineForImport(self, fileList):
            if release != "5.12":
                return []
            loadables = []
            for files in fileList:
                key = tuple(files)
                if key not in self.loadableCache:
                    self.loadableCache[key] = self.examineFiles(files)
                loadables += self.loadableCache[key]
            return loadables

        def examineFiles(self, files):  # 5.12; absent before, so only defined there
            return []

        def examine(self, fileList):
            return self.examineForImport(fileList)

        def load(self, loadable):
            return True

    if release != "5.12":
        del DICOMPlugin.examineFiles
    DICOMPlugin.__qualname__ = f"DICOMPlugin[{release}]"
    return DICOMPlugin


def get_loadables_from_file_lists(plugin, fileLists):
    """What ``DICOMUtils.getLoadablesFromFileLists`` does with one plugin (raises instead of logging)."""
    loadables = plugin.examineForImport(fileLists)
    if not loadables:
        loadables = plugin.examine(fileLists)
    return loadables


def dicomlib_module(release: str, dicom_utils=None) -> types.ModuleType:
    mod = types.ModuleType("DICOMLib")
    mod.DICOMPlugin = dicom_plugin_base(release)
    mod.DICOMLoadable = DICOMLoadable
    mod.DICOMUtils = dicom_utils or types.SimpleNamespace()
    mod.__seqclassifier_release__ = release
    return mod


# ---- ctkDICOMDatabase over real files ----------------------------------------------------------
class DICOMDatabase:
    """The query part of ``ctkDICOMDatabase`` over real DICOM files (read with pydicom)."""

    isOpen = True
    databaseFilename = ""  # ctkDICOMDatabase.h Q_PROPERTY databaseFilename ("" here: in memory)

    def __init__(self, roots):
        self.calls = {"filesForSeries": 0}
        self._files = {}       # path -> dataset (header only)
        for root in roots:
            for dirpath, _dirs, names in os.walk(root):
                for name in sorted(names):
                    path = os.path.join(dirpath, name)
                    try:
                        self._files[path] = pydicom.dcmread(path, stop_before_pixels=True)
                    except Exception:
                        continue
        self.series = {}
        self.study_of = {}
        self.patient_of = {}
        for path, ds in sorted(self._files.items()):
            se, st = str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID)
            self.series.setdefault(se, []).append(path)
            self.study_of[se] = st
            self.patient_of[st] = str(ds.PatientID)

    def patients(self):
        return sorted(set(self.patient_of.values()))

    def studiesForPatient(self, patient):
        return sorted(st for st, p in self.patient_of.items() if p == patient)

    def seriesForStudy(self, study):
        return sorted(se for se, st in self.study_of.items() if st == study)

    def studyForSeries(self, series):
        return self.study_of.get(series, "")

    def filesForSeries(self, series, hits=-1):
        self.calls["filesForSeries"] += 1
        files = list(self.series.get(series, []))
        return files if hits < 0 else files[:hits]

    def fileValue(self, path, tag):
        group, element = (int(x, 16) for x in tag.split(","))
        ds = self._files.get(path)
        if ds is None or (group, element) not in ds:
            return ""
        return str(ds[group, element].value)

    def fileForInstance(self, instance):
        for path, ds in self._files.items():
            if str(ds.SOPInstanceUID) == instance:
                return path
        return ""

    def seriesForFile(self, path):
        ds = self._files.get(path)
        return str(ds.SeriesInstanceUID) if ds is not None else ""

    def instanceForFile(self, path):
        ds = self._files.get(path)
        return str(ds.SOPInstanceUID) if ds is not None else ""


# ---- the DICOM browser ---------------------------------------------------------------------------
class TableManager:
    """``ctkDICOMTableManager``: the three tables' selections (what the user clicked)."""

    def __init__(self):
        self.patients, self.studies, self.series = [], [], []
        self.connections = []

    def currentPatientsSelection(self):
        return list(self.patients)

    def currentStudiesSelection(self):
        return list(self.studies)

    def currentSeriesSelection(self):
        return list(self.series)

    def connect(self, signal, slot):
        self.connections.append((signal, slot))

    def disconnect(self, signal, slot):
        self.connections.remove((signal, slot))


class CtkDICOMBrowser:
    def __init__(self, release: str):
        self._manager = TableManager()
        if release == "5.12":  # ctkDICOMBrowser.h l. 158 at CTK 5056664a only
            self.selectedItems = lambda level: list(
                {0: self._manager.patients, 1: self._manager.studies, 2: self._manager.series}[level])

    def dicomTableManager(self):
        return self._manager


class PatientView:
    def __init__(self):
        self.series = []

    def selectedSeriesInstanceUIDs(self):
        return list(self.series)


class _Index:
    def __init__(self, row, column):
        self._rc = (row, column)

    def row(self):
        return self._rc[0]

    def column(self):
        return self._rc[1]


class SeriesItemWidget:
    """``ctkDICOMSeriesItemWidget``: Q_PROPERTY seriesInstanceUID (an attribute in PythonQt)."""

    def __init__(self, uid):
        self.seriesInstanceUID = uid


class SeriesListTable:
    """The QTableWidget of a study item: series widgets in cells, 3 per row; selected cells."""

    def __init__(self, uids):
        self.cells = {(i // 3, i % 3): SeriesItemWidget(u) for i, u in enumerate(uids)}
        self.selected = []

    def cellWidget(self, row, column):
        return self.cells.get((row, column))

    def selectedIndexes(self):
        return [_Index(*rc) for rc in self.selected]


class StudyItemWidget:
    def __init__(self, study, uids):
        self.studyInstanceUID = study
        self._table = SeriesListTable(uids)
        self._series = list(self._table.cells.values())

    def seriesListTableWidget(self):
        return self._table

    def seriesItemWidgetsList(self):
        return list(self._series)


class PatientItemWidget:
    def __init__(self, patient, studies):
        self.patientID = patient
        self._studies = studies

    def studyItemWidgetsList(self):
        return list(self._studies)


class PatientsTabWidget:
    def __init__(self):
        self.tabs, self.current = [], -1

    def currentWidget(self):
        return self.tabs[self.current] if 0 <= self.current < len(self.tabs) else None

    @property
    def count(self):
        return len(self.tabs)


class VisualBrowser:
    def __init__(self, release: str):
        self.release = release
        if release == "5.12":
            self._view = PatientView()
            self.patientView = lambda: self._view
        else:
            self._tabs = PatientsTabWidget()
            self.patientsTabWidget = lambda: self._tabs

    def show_patients(self, db):
        """5.8/5.10 ``onShowPatients``: one tab per patient, one study item per study."""
        self._tabs.tabs = [PatientItemWidget(p, [StudyItemWidget(st, db.seriesForStudy(st))
                                                 for st in db.studiesForPatient(p)]) for p in db.patients()]
        self._tabs.current = 0 if self._tabs.tabs else -1

    def select(self, uids):
        """What clicking these series does in this release's visual browser."""
        if self.release == "5.12":
            self._view.series = list(uids)
            return
        for i, patient in enumerate(self._tabs.tabs):
            for study in patient.studyItemWidgetsList():
                table = study.seriesListTableWidget()
                table.selected = [rc for rc, w in table.cells.items() if w.seriesInstanceUID in uids]
                if table.selected:
                    self._tabs.current = i


class SlicerDICOMBrowser:
    """``DICOMLib.SlicerDICOMBrowser`` of ``release`` (the flag exists after ``toggleBrowsers``)."""

    def __init__(self, release: str):
        self.release = release
        self.dicomBrowser = CtkDICOMBrowser(release)
        self.dicomVisualBrowser = VisualBrowser(release)

    def toggleBrowsers(self, visual: bool):
        if self.release == "5.12":
            self.useVisualDICOMBrowser = visual
        else:
            self.useExpertimentalVisualDICOMBrowser = visual


def select_highest_confidence_loadables(db, loadablesByPlugin):
    """``DICOMUtils.selectHighestConfidenceLoadables`` (v5.8.1 l. 223)."""
    bySeries = {}
    for plugin in loadablesByPlugin:
        for loadable in loadablesByPlugin[plugin]:
            bySeries.setdefault(db.fileValue(loadable.files[0], "0020,000E"), []).append(loadable)
    for loadables in bySeries.values():
        highest = max(ld.confidence for ld in loadables)
        for ld in loadables:
            ld.selected = ld.confidence == highest


def load_loadables(loadablesByPlugin):
    """``DICOMUtils.loadLoadables`` (v5.8.1 l. 846): the last plugin with a selected loadable loads it;
    returns the loaded nodes (Slicer collects node IDs by observing the scene)."""
    chosen = {}
    for plugin in loadablesByPlugin:
        for loadable in loadablesByPlugin[plugin]:
            if loadable.selected:
                chosen[loadable] = plugin
    nodes = []
    for loadable, plugin in chosen.items():
        node = plugin.load(loadable)
        loadable.loadSuccess = bool(node)
        if node:
            nodes.append(node)
    return nodes


def series_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_dir() and any(f.is_file() for f in p.iterdir()))
