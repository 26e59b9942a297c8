"""The module's logic: inputs from Slicer, the classification session, loading and tagging.

Imports ``slicer`` (DICOM database, MRML scene, ``slicer.util``) but never ``qt`` or ``ctk``;
``SeqClassifier.py``'s ``SeqClassifierLogic`` is this class plus Slicer's logic base class.
The review actions themselves live in :class:`~SeqClassifierSlicer.session.ClassificationSession`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
from typing import Any

import slicer
from DICOMLib import DICOMUtils

from SeqClassifierSlicer import compat, dependencies, installer, loaded, review
from SeqClassifierSlicer.options import Source
from SeqClassifierSlicer.session import ClassificationSession
from SeqClassifierLib.records import SeriesKey, lookup

log = logging.getLogger("SeqClassifier")


def _is_empty_path(path: Any) -> bool:
    return path is None or str(path).strip() in ("", ".")


class InputError(ValueError):
    """The chosen source holds nothing to classify (the message says why, for the panel)."""


class ModuleLogic:
    """Classification, label store, loading and tagging; usable from scripts without the panel::

        logic = slicer.util.getModuleLogic("SeqClassifier")
        logic.classifySource(Source.SCENE, blocking=True)        # the loaded series
        logic.confirmLabel(uid, "T2w")                            # renames/tags the loaded node
        logic.loadSeries(sorted(logic.presetSelection("t2_dwi_adc")))
    """

    def __init__(self, module_dir: str, store=None) -> None:
        self.moduleDir = module_dir
        self.session = ClassificationSession(store, module_dir=module_dir)
        #: SeriesInstanceUID -> IDs of the scene's volume nodes of that series (source SCENE).
        self.sceneNodeIDs: dict[str, list[str]] = {}
        #: Volumes of the scene that are not classified, and why.
        self.notClassified: list[loaded.LoadedVolume] = []
        #: What the last :meth:`ensureDependencies` changed (:class:`.installer.InstallReport`).
        self.lastInstallReport = None

    # Session state, for the panel
    store = property(lambda self: self.session.store)
    rows = property(lambda self: self.session.rows)
    isRunning = property(lambda self: self.session.is_running)
    modelTrained = property(lambda self: self.session.model_trained)
    progressFraction = property(lambda self: self.session.progress_fraction)
    statusText = property(lambda self: self.session.status_text)
    inputNote = property(lambda self: self.session.input_note)

    def setStore(self, store) -> None:
        """Use another label store (the self-test uses a temporary one)."""
        self.session.store = store

    def popStoreWarnings(self):
        return self.session.store.pop_warnings()

    # -- dependencies ----------------------------------------------------------------------------
    def requirementLines(self, model=None) -> list[str]:
        """What the chosen model needs on this Python (Resources/requirements*.txt, see
        :mod:`.dependencies`): never timm/open_clip for the shipped model."""
        return dependencies.model_requirements(self.moduleDir, model)

    def missingRequirements(self, model=None) -> list[str]:
        """The requirement lines not installed (or in a version outside the range)."""
        return dependencies.missing_requirements(self.requirementLines(model))

    @staticmethod
    def torchInstalled() -> bool:
        return importlib.util.find_spec("torch") is not None

    def ensureDependencies(self, askConfirmation: bool = True, model=None) -> list[str]:
        """Install what the chosen model needs: called at the first Classify, never at import or setup.

        torch first, from the PyTorch extension (:func:`.installer.install_torch`), then the missing
        requirement lines (:func:`.installer.install`: the same constraints, progress and report on
        5.8, 5.10 and 5.12).  Every package whose version changed is logged and, when asking,
        shown with the restart notice.  Returns the requirement lines installed.
        """
        prompt = askConfirmation and not slicer.app.testingEnabled()
        before = installer.installed_versions()
        if not self.torchInstalled():
            installer.install_torch(slicer, prompt)
        missing = self.missingRequirements(model)
        if missing:
            report = installer.install(slicer, missing, prompt, before=before)
        else:
            report = installer.report_since(before)
        self.lastInstallReport = report
        installer.report_changes(slicer, report, prompt)
        still = self.missingRequirements(model)
        if still:
            raise RuntimeError("Could not install: " + ", ".join(still))
        return missing

    # -- inputs ----------------------------------------------------------------------------------
    @staticmethod
    def database(required: bool = True):
        db = getattr(slicer, "dicomDatabase", None)
        if db is None or not db.isOpen:
            if not required:
                return None
            raise RuntimeError("The DICOM database is not open: open the DICOM module and choose a database.")
        return db

    def databaseFile(self) -> str:
        """The open database's ``ctkDICOM.sql`` (ctkDICOMDatabase's ``databaseFilename``), "" when
        it has none on disk (an in-memory database)."""
        name = str(getattr(self.database(), "databaseFilename", "") or "")
        return name if name and os.path.isfile(name) else ""

    def allDatabaseSeriesUIDs(self) -> list[str]:
        db = self.database()
        return [series for patient in db.patients() for study in db.studiesForPatient(patient)
                for series in db.seriesForStudy(study)]

    def seriesFilesFromDatabase(self, seriesUIDs) -> dict[str, list[str]]:
        """SeriesInstanceUID -> files, from Slicer's DICOM database (``filesForSeries``)."""
        db = self.database()
        out = {}
        for uid in seriesUIDs:
            files = [f for f in db.filesForSeries(uid) if f]
            if files:
                out[uid] = files
        self.session.series_files.update(out)
        return out

    @staticmethod
    def _proxySource(node):
        """The sequence a proxy volume shows (Sequences module), else None."""
        sequences = getattr(slicer.modules, "sequences", None)
        if sequences is None:
            return None
        browser = sequences.logic().GetFirstBrowserNodeForProxyNode(node)
        return browser.GetSequenceNode(node) if browser is not None else None

    def loadedVolumes(self) -> list[loaded.LoadedVolume]:
        """The scene's scalar volumes with their DICOM series (see :mod:`.loaded`)."""
        return loaded.loaded_volumes(slicer.mrmlScene, self.database(required=False), self._proxySource)

    def browserSelection(self) -> compat.Selection:
        """What the DICOM browser of this Slicer release has selected (see :mod:`.compat`)."""
        dicomInstance = getattr(slicer.modules, "DICOMInstance", None)
        return compat.browser_selection(getattr(dicomInstance, "browserWidget", None),
                                        self.database(required=False))

    def _withStudyContext(self, seriesUIDs, what: str):
        files, wanted, added = loaded.study_context(self.database(), seriesUIDs, known=self.session.series_files)
        shown = [u for u in seriesUIDs if u in files]
        if not shown:
            raise InputError(f"The {what} have no files in the DICOM database.")
        note = f"{len(shown)} {what}"
        if added:
            note += f"; the other {added} series of their studies were read for study context (not shown)"
        self.session.series_files.update(files)
        return files, set(shown), note

    def classifySource(self, source, folder=None, seriesUIDs=None, device="auto", model=None, blocking=False,
                       onEvent=None):
        """Classify the loaded series, the browser selection, the database or a folder (:class:`Source`)."""
        source = Source(getattr(source, "value", source))
        wanted = None
        self.sceneNodeIDs = {}
        self.notClassified = []
        if source is Source.FOLDER:
            if _is_empty_path(folder) or not os.path.isdir(str(folder)):
                raise InputError("Choose an existing DICOM folder.")
            files, note = [str(folder)], f"folder {folder}"
        elif source is Source.DATABASE:
            dbFile = self.databaseFile()
            if dbFile:  # the classifier process reads ctkDICOM.sql itself: no query per series here
                return self.classifyFiles([], device, model, blocking, onEvent,
                                          note="every series of the DICOM database", slicerDb=dbFile)
            files = self.seriesFilesFromDatabase(self.allDatabaseSeriesUIDs())
            if not files:
                raise InputError("The DICOM database holds no series.")
            note = f"{len(files)} series of the DICOM database"
        elif source is Source.SCENE:
            volumes = self.loadedVolumes()
            dicom = [v for v in volumes if v.series_uid and v.files]
            self.notClassified = [v for v in volumes if v not in dicom]
            if not dicom:
                raise InputError("No volume of the scene comes from the DICOM database." if volumes else
                                 "No volume is loaded: load DICOM series, or choose another source.")
            for v in dicom:
                self.sceneNodeIDs.setdefault(v.series_uid, []).append(v.node_id)
            files, wanted, note = self._withStudyContext(list(self.sceneNodeIDs), "loaded series")
            if self.notClassified:
                note += "; not classified: " + "; ".join(f"{v.name} ({v.note})" for v in self.notClassified)
        else:
            uids = list(seriesUIDs) if seriesUIDs is not None else self.browserSelection().series
            if not uids:
                raise InputError("Select series (or a study/patient) in the DICOM browser first.")
            files, wanted, note = self._withStudyContext(uids, "selected series")
        return self.classifyFiles(files, device, model, blocking, onEvent, wanted=wanted, note=note)

    @staticmethod
    def pythonExecutable() -> str:
        """Slicer's ``PythonSlicer`` launcher (it sets Slicer's environment up), else this interpreter."""
        return shutil.which("PythonSlicer") or sys.executable

    @staticmethod
    def childEnvironment(python: str) -> dict:
        """The launcher gets the environment Slicer started with (it adds its own paths)."""
        if os.path.splitext(os.path.basename(python))[0] == "PythonSlicer":
            return dict(slicer.util.startupEnvironment())
        return dict(os.environ)

    def classifyFiles(self, files, device="auto", model=None, blocking=False, onEvent=None, wanted=None,
                      note: str = "", slicerDb=None):
        """Classify DICOM files in a background process (``python -m SeqClassifierLib.app.cli classify``).

        ``files``: paths or SeriesInstanceUID -> files; ``wanted``: the series to show (the others
        are study context); ``slicerDb``: also every series of this ``ctkDICOM.sql``.
        ``blocking=True`` waits and returns the review rows; otherwise returns the
        BackgroundProcess and the panel calls :meth:`pollProcess` from a QTimer.
        """
        python = self.pythonExecutable()
        self.session.python = python
        self.session.env = self.childEnvironment(python)
        run = self.session.run if blocking else self.session.start
        result = run(files, device, model, onEvent, wanted, slicerDb)
        self.session.input_note = note
        return result

    def pollProcess(self):
        return self.session.poll()

    def cancel(self) -> None:
        self.session.cancel()

    # -- review ----------------------------------------------------------------------------------
    def showStoredSeries(self, seriesUIDs):
        """Show what the label store knows about these series (no model run)."""
        self.sceneNodeIDs = {}
        return self.session.show_stored(seriesUIDs)

    def reviewRows(self, onlyLabels="", shipped=False):
        """The rows shown; ``shipped``: the shipped model's answers instead of the site-adapted ones."""
        return self.session.review_rows(onlyLabels, shipped=shipped)

    def modelStatusText(self, shipped=False):
        return self.session.model_status_text(shipped=shipped)

    def setAdaptToSite(self, enabled):
        """Classify with the label store's site memory (default) or with the shipped model only."""
        self.session.adapt = bool(enabled)

    def presetSelection(self, preset):
        return self.session.preset_selection(getattr(preset, "value", preset))

    def confirmLabel(self, seriesUID, label, user=None):
        """Record a person's label (None withdraws the confirmation); retags its loaded volumes."""
        entry = self.session.confirm_label(seriesUID, label, user=user)
        self._retagLoaded([seriesUID])
        return entry

    def confirmAll(self, seriesUIDs, user=None):
        """Confirm the label shown for each series; returns (confirmed, left out without label)."""
        result = self.session.confirm_all(seriesUIDs, user=user)
        self._retagLoaded(seriesUIDs)
        return result

    def _retagLoaded(self, seriesUIDs) -> None:
        seriesUIDs = [uid for uid in seriesUIDs if self.sceneNodeIDs.get(uid)]
        if not seriesUIDs:
            return  # none of them is loaded: the label store is not read
        entries = self.session.writes.entries()
        for uid in seriesUIDs:
            for nodeID in self.sceneNodeIDs.get(uid, []):
                node = slicer.mrmlScene.GetNodeByID(nodeID)
                if node is None:
                    continue
                row = self.session.row_of(uid)
                row, label, confirmed = review.label_to_load(uid, row, _entry(entries, uid, row))
                loaded.tag_with_row(node, uid, row, label, confirmed)

    def flushStoreWrites(self) -> int:
        """Retry the label-store writes that wait for the lock (the panel's QTimer); returns how many
        still wait.  The loaded volumes of series whose label was saved are tagged again."""
        waiting = {uid for uid in self.session.writes.provisional}
        left = self.session.writes.flush()
        if not left and waiting:
            self._retagLoaded(sorted(waiting))
        return left

    def storeWaitingText(self) -> str:
        return self.session.writes.waiting_text()

    def exportLabels(self, path, confirmedOnly=False):
        if self.session.writes.flush():
            raise RuntimeError(self.session.writes.waiting_text())
        return self.session.export_labels(path, confirmed_only=confirmedOnly)

    # -- loading ---------------------------------------------------------------------------------
    def loadSeries(self, seriesUIDs, labels=None):
        """Load series through Slicer's DICOM plugins, then name and tag each volume.

        ``labels``: optional SeriesInstanceUID -> label overriding the table's label.  Series
        classified from a folder are imported into the DICOM database first (files are linked,
        not copied).  Series already loaded in the scene are tagged in place, not loaded again.
        Returns uid -> volume nodes.
        """
        db = self.database()
        entries = self.session.writes.entries()
        result = {}
        for uid in seriesUIDs:
            nodes = [slicer.mrmlScene.GetNodeByID(i) for i in self.sceneNodeIDs.get(uid, [])]
            nodes = [n for n in nodes if n is not None]
            if not nodes:
                if not db.filesForSeries(uid, 1):
                    row = self.session.row_of(uid)
                    if row is None or not row.folder:
                        raise InputError(f"Series {uid} is not in the DICOM database.")
                    DICOMUtils.importDicom(row.folder, db)
                nodes = [slicer.mrmlScene.GetNodeByID(i) for i in DICOMUtils.loadSeriesByUID([uid])]
            volumes = [n for n in nodes if n is not None and n.IsA("vtkMRMLVolumeNode")]
            row = self.session.row_of(uid)
            row, label, confirmed = review.label_to_load(uid, row, _entry(entries, uid, row), labels)
            for node in volumes:
                loaded.tag_with_row(node, uid, row, label, confirmed)
            result[uid] = volumes
        return result


def _entry(entries, uid, row):
    """The store entry of a series: by its row's SeriesKey when shown, else the one entry of the UID."""
    if row is not None:
        return lookup(entries, row.key)
    found = [e for k, e in entries.items() if k.series_uid == uid]
    return found[0] if len(found) == 1 else lookup(entries, SeriesKey.of_uid(uid))
