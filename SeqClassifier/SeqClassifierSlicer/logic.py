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

from SeqClassifierSlicer import compat, dependencies, loaded, review
from SeqClassifierSlicer.options import Source
from SeqClassifierSlicer.session import ClassificationSession

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
    def requirementsPath(self) -> str:
        return os.path.join(self.moduleDir, "Resources", "requirements.txt")

    def missingRequirements(self) -> list[str]:
        """Lines of Resources/requirements.txt not installed (or in a version outside the range)."""
        return dependencies.missing_requirements(self.requirementsPath())

    @staticmethod
    def torchInstalled() -> bool:
        return importlib.util.find_spec("torch") is not None

    def ensureDependencies(self, askConfirmation: bool = True) -> list[str]:
        """Install what the classifier needs: called at the first Classify, never at import or setup.

        torch first, from the PyTorch extension (PyTorchUtils picks the build matching the GPU
        driver), else PyPI's default build after asking.  Then the missing lines of
        Resources/requirements.txt: ``slicer.packaging.pip_ensure`` where it exists (5.12: it asks
        and prompts for the restart itself), else ``slicer.util.pip_install`` after asking, and a
        warning that Slicer must be restarted when a package it has already imported was updated.
        Returns the requirement lines installed.
        """
        prompt = askConfirmation and not slicer.app.testingEnabled()
        if not self.torchInstalled():
            self._installTorch(prompt)
        missing = self.missingRequirements()
        if not missing:
            return []
        imported = dependencies.already_imported(missing)
        pipEnsure = compat.pip_ensure_function(slicer)
        if pipEnsure is not None:
            pipEnsure(missing, prompt_install=prompt, prompt_restart=prompt, requester="SeqClassifier",
                      skip_in_testing=False)
        else:
            if prompt:
                text = ("SeqClassifier needs these Python packages, which will be downloaded and installed now "
                        "(this may take a few minutes):\n\n" + "\n".join(missing))
                if imported:
                    text += "\n\n" + dependencies.restart_message(imported)
                if not slicer.util.confirmOkCancelDisplay(text, windowTitle="Install Python packages"):
                    raise RuntimeError("Python packages required by SeqClassifier were not installed.")
            slicer.util.pip_install(missing)
        still = self.missingRequirements()
        if still:
            raise RuntimeError("Could not install: " + ", ".join(still))
        if imported and pipEnsure is None:
            message = dependencies.restart_message(imported)
            log.warning("SeqClassifier: %s", message)
            if prompt:
                slicer.util.warningDisplay(message, windowTitle="Restart Slicer")
        return missing

    @staticmethod
    def _installTorch(prompt: bool) -> None:
        try:
            import PyTorchUtils  # the PyTorch extension (a dependency of this extension)
        except ImportError:
            PyTorchUtils = None
        if PyTorchUtils is not None:
            torchLogic = PyTorchUtils.PyTorchUtilsLogic()
            if not torchLogic.torchInstalled():
                if torchLogic.installTorch(askConfirmation=prompt, torchVersionRequirement=">=2.1") is None:
                    raise RuntimeError("PyTorch is required; its installation was cancelled.")
            return
        if prompt and not slicer.util.confirmOkCancelDisplay(
                "SeqClassifier needs PyTorch and the PyTorch extension is not installed. Install the default "
                "PyTorch build from PyPI now? (Install the 'PyTorch' extension instead to get a build matched "
                "to your GPU.)", windowTitle="Install PyTorch"):
            raise RuntimeError("PyTorch is required; its installation was cancelled.")
        slicer.util.pip_install("torch>=2.1")

    # -- inputs ----------------------------------------------------------------------------------
    @staticmethod
    def database(required: bool = True):
        db = getattr(slicer, "dicomDatabase", None)
        if db is None or not db.isOpen:
            if not required:
                return None
            raise RuntimeError("The DICOM database is not open: open the DICOM module and choose a database.")
        return db

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
        files, wanted, added = loaded.study_context(self.database(), seriesUIDs)
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
                      note: str = ""):
        """Classify DICOM files in a background process (``python -m SeqClassifierLib.app.cli classify``).

        ``files``: paths or SeriesInstanceUID -> files; ``wanted``: the series to show (the others
        are study context).  ``blocking=True`` waits and returns the review rows; otherwise returns
        the BackgroundProcess and the panel calls :meth:`pollProcess` from a QTimer.
        """
        python = self.pythonExecutable()
        self.session.python = python
        self.session.env = self.childEnvironment(python)
        run = self.session.run if blocking else self.session.start
        result = run(files, device, model, onEvent, wanted)
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
        entries = self.store.load()
        for uid in seriesUIDs:
            for nodeID in self.sceneNodeIDs.get(uid, []):
                node = slicer.mrmlScene.GetNodeByID(nodeID)
                if node is None:
                    continue
                row, label, confirmed = review.label_to_load(uid, self.rows.get(uid), entries.get(uid))
                loaded.tag_with_row(node, uid, row, label, confirmed)

    def exportLabels(self, path, confirmedOnly=False):
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
        entries = self.store.load()
        result = {}
        for uid in seriesUIDs:
            nodes = [slicer.mrmlScene.GetNodeByID(i) for i in self.sceneNodeIDs.get(uid, [])]
            nodes = [n for n in nodes if n is not None]
            if not nodes:
                if not db.filesForSeries(uid, 1):
                    row = self.rows.get(uid)
                    if row is None or not row.folder:
                        raise InputError(f"Series {uid} is not in the DICOM database.")
                    DICOMUtils.importDicom(row.folder, db)
                nodes = [slicer.mrmlScene.GetNodeByID(i) for i in DICOMUtils.loadSeriesByUID([uid])]
            volumes = [n for n in nodes if n is not None and n.IsA("vtkMRMLVolumeNode")]
            row, label, confirmed = review.label_to_load(uid, self.rows.get(uid), entries.get(uid), labels)
            for node in volumes:
                loaded.tag_with_row(node, uid, row, label, confirmed)
            result[uid] = volumes
        return result
