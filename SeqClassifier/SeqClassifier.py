"""SeqClassifier: tell what each MR series of a prostate study is, review it, load only what you need.

The module is a thin shell around two Slicer-free packages:

* ``SeqClassifierLib`` (pure Python, also a command line): series discovery,
  the classifier, the label store, background runner, Slicer DB reader;
* ``SeqClassifierSlicer``: MRML naming/tagging (``scene``) and the review
  table's data (``review``).

The classifier runs as a child process (``python -m SeqClassifierLib.app.cli
classify ... --format jsonl``) so Slicer stays responsive; its JSON-lines
events are polled with a QTimer.  Predictions and confirmed labels go to the
label store (a JSON file in the user's data folder).
"""

import logging
import os
import pathlib
import shutil
import sys
from typing import Annotated

import ctk
import qt
import vtk

import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.util import VTKObservationMixin

try:
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:  # Slicer < 5.4
    def _(text):
        return text

    def translate(context, text):
        return text

from DICOMLib import DICOMLoadable, DICOMPlugin

from SeqClassifierLib.curation.label_store import LabelStore
from SeqClassifierLib.labels import CLASS_NAMES
from SeqClassifierSlicer import review
from SeqClassifierSlicer.session import ClassificationSession

MODULE_DIR = os.path.dirname(os.path.abspath(__file__))

SOURCE_BROWSER = "series selected in the DICOM browser"
SOURCE_DATABASE = "every series in the DICOM database"
SOURCE_FOLDER = "a folder"
SOURCES = [SOURCE_BROWSER, SOURCE_DATABASE, SOURCE_FOLDER]
COL_THUMB, COL_NUMBER, COL_DESCRIPTION, COL_PLANE, COL_PREDICTED, COL_CONFIDENCE, COL_REVIEW, COL_LABEL, \
    COL_LOAD = range(9)


def resourcePath(filename):
    """A file of the module's ``Resources`` folder (beside this file, as in Slicer's template)."""
    return os.path.join(MODULE_DIR, "Resources", filename)


def _isEmptyPath(path):
    return path is None or str(path).strip() in ("", ".")


#
# SeqClassifier
#


class SeqClassifier(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SeqClassifier")
        # Same category as the DICOM module (translated in the core modules' context).
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Informatics")]
        self.parent.dependencies = ["DICOM"]
        self.parent.contributors = ["SeqClassifier developers"]
        self.parent.helpText = _("""
Classifies every MR series of a prostate study as T2w, DWI, ADC, DCE or OTHER with a confidence,
lets you confirm or correct each label, and loads only the series you choose, named and tagged
with their label. Labels are kept in a label store (JSON, in your user data folder) and can be
exported in the training CSV format. When no trained model is installed, no label is predicted:
the module says so and you can still label by hand.
""")
        self.parent.acknowledgementText = _("""
Uses pydicom, PyTorch (through the PyTorch extension), timm and open_clip. Test data from the
PROSTATEx collection of The Cancer Imaging Archive (CC BY 3.0).
""")
        iconPath = resourcePath("Icons/SeqClassifier.png")
        if os.path.isfile(iconPath):
            self.parent.icon = qt.QIcon(iconPath)
        # Register the DICOM plugin as DICOM plugins do (the DICOM module may be discovered later).
        try:
            slicer.modules.dicomPlugins
        except AttributeError:
            slicer.modules.dicomPlugins = {}
        slicer.modules.dicomPlugins["SeqClassifierDICOMPlugin"] = SeqClassifierDICOMPlugin

    def resourcePath(self, filename):
        return resourcePath(filename)


#
# SeqClassifierParameterNode
#


@parameterNodeWrapper
class SeqClassifierParameterNode:
    """
    source - which series "Classify" sends to the classifier.
    inputFolder - DICOM folder for the "a folder" source (read only).
    device - auto (GPU when available), cpu or cuda.
    modelPath - checkpoint; empty (".") means the model shipped with the extension.
    reviewer - name recorded with confirmations (empty: login name).
    onlyLabels - comma-separated labels shown in the review table (empty: all).
    preset - which series "Apply" ticks for loading.
    exportConfirmedOnly - export only confirmed labels.
    """

    source: Annotated[str, Choice(SOURCES)] = SOURCE_BROWSER
    inputFolder: pathlib.Path
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    modelPath: pathlib.Path
    reviewer: str = ""
    onlyLabels: str = ""
    preset: Annotated[str, Choice(list(review.PRESETS))] = review.PRESET_AXIAL_T2_HIGHB_DWI_ADC
    exportConfirmedOnly: bool = False


#
# SeqClassifierWidget
#


class SeqClassifierWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: gathers choices, calls the logic, shows the review table. It holds no logic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._browserSeriesUIDs = []
        self._connectedTableManager = None
        self._thumbnailQueue = []
        self._updatingTable = False

    def resourcePath(self, filename):
        return resourcePath(filename)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SeqClassifier.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = SeqClassifierLogic()

        self.ui.seriesTable.setHorizontalHeaderLabels(
            [_("Image"), "#", _("Description"), _("Plane"), _("Predicted"), _("Confidence"), _("Review"),
             _("Label"), _("Load")])
        self.ui.seriesTable.verticalHeader().setDefaultSectionSize(68)
        self.ui.seriesTable.horizontalHeader().setSectionResizeMode(COL_DESCRIPTION, qt.QHeaderView.Stretch)
        self.ui.labelStorePathLabel.text = str(self.logic.store.path)
        self.ui.progressBar.setRange(0, 100)
        self.ui.progressBar.value = 0

        self.pollTimer = qt.QTimer()
        self.pollTimer.setInterval(200)
        self.pollTimer.timeout.connect(self.onPollTimer)
        self.thumbnailTimer = qt.QTimer()
        self.thumbnailTimer.setSingleShot(True)
        self.thumbnailTimer.setInterval(0)
        self.thumbnailTimer.timeout.connect(self.onThumbnailTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.classifyButton.connect("clicked(bool)", self.onClassifyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.useBrowserSelectionButton.connect("clicked(bool)", self.onUseBrowserSelectionButton)
        self.ui.applyPresetButton.connect("clicked(bool)", self.onApplyPresetButton)
        self.ui.confirmAllButton.connect("clicked(bool)", self.onConfirmAllButton)
        self.ui.loadButton.connect("clicked(bool)", self.onLoadButton)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
        self.ui.showLabelsLineEdit.connect("editingFinished()", self.onShowLabelsEdited)

        self.initializeParameterNode()
        self.connectDICOMBrowser()
        self.updateButtonStates()

    def cleanup(self) -> None:
        self.removeObservers()
        self.pollTimer.stop()
        self.thumbnailTimer.stop()
        self.disconnectDICOMBrowser()
        if self.logic:
            self.logic.cancel()

    def enter(self) -> None:
        self.initializeParameterNode()
        with slicer.util.tryWithErrorDisplay(_("Failed to follow the DICOM browser.")):
            self.connectDICOMBrowser()
            self.refreshBrowserSelection(showRows=False)

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtonStates)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtonStates)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtonStates)
            self.updateButtonStates()

    def updateButtonStates(self, caller=None, event=None) -> None:
        running = self.logic.isRunning
        hasRows = bool(self.logic.rows)
        self.ui.classifyButton.enabled = not running
        self.ui.cancelButton.enabled = running
        self.ui.confirmAllButton.enabled = hasRows and not running
        self.ui.loadButton.enabled = hasRows and not running
        self.ui.applyPresetButton.enabled = hasRows
        folderSource = self._parameterNode is not None and self._parameterNode.source == SOURCE_FOLDER
        self.ui.inputFolderPathLineEdit.enabled = folderSource
        self.ui.labelStorePathLabel.text = str(self.logic.store.path)

    # -- DICOM browser selection -----------------------------------------------------------------
    def _dicomBrowserWidget(self):
        dicomInstance = getattr(slicer.modules, "DICOMInstance", None)
        return getattr(dicomInstance, "browserWidget", None) if dicomInstance else None

    def connectDICOMBrowser(self) -> None:
        """Follow the classic browser's series selection (its table manager signal).

        The classic ``ctkDICOMBrowser`` emits ``seriesSelectionChanged(QStringList)`` from its
        ``dicomTableManager()``: the table follows the selection live.  The visual browser
        (``ctkDICOMVisualBrowserWidget``, default in recent Slicer) has no selection-changed
        signal: its selection is read when "Refresh" is clicked and when the module is entered
        (``patientView().selectedSeriesInstanceUIDs()``, CTK model/view browser; the widget-based
        visual browser of Slicer 5.8 exposes no selection at all, so use the classic browser or
        the folder/database sources there).  The browser only exists once the DICOM module has
        been shown, so this is retried on every enter.
        """
        browser = self._dicomBrowserWidget()
        dicomBrowser = getattr(browser, "dicomBrowser", None)
        if dicomBrowser is None or not hasattr(dicomBrowser, "dicomTableManager"):
            return
        tableManager = dicomBrowser.dicomTableManager()
        if tableManager is None or tableManager is self._connectedTableManager:
            return
        self.disconnectDICOMBrowser()
        tableManager.connect("seriesSelectionChanged(QStringList)", self.onBrowserSeriesSelectionChanged)
        self._connectedTableManager = tableManager

    def disconnectDICOMBrowser(self) -> None:
        if self._connectedTableManager is not None:
            try:
                self._connectedTableManager.disconnect("seriesSelectionChanged(QStringList)",
                                                       self.onBrowserSeriesSelectionChanged)
            except Exception:  # the browser may already be gone
                pass
            self._connectedTableManager = None

    def browserSelectedSeriesUIDs(self):
        """Series selected in the DICOM browser in use (empty when it cannot be read).

        Visual browser: ``patientView().selectedSeriesInstanceUIDs()`` where CTK offers it.
        Classic browser: the selected series, else every series of the selected studies,
        else of the selected patients.
        """
        browser = self._dicomBrowserWidget()
        if browser is None:
            return []
        visual = getattr(browser, "dicomVisualBrowser", None)
        if getattr(browser, "useVisualDICOMBrowser", False) and visual is not None:
            patientView = visual.patientView() if hasattr(visual, "patientView") else None
            if patientView is not None and hasattr(patientView, "selectedSeriesInstanceUIDs"):
                return list(patientView.selectedSeriesInstanceUIDs())
            return []  # Slicer 5.8's widget-based visual browser exposes no selection
        dicomBrowser = getattr(browser, "dicomBrowser", None)
        if dicomBrowser is None or not hasattr(dicomBrowser, "selectedItems"):
            return []
        indexType = getattr(ctk.ctkDICOMModel, "IndexType", ctk.ctkDICOMModel)
        series = list(dicomBrowser.selectedItems(indexType.SeriesType))
        if series:
            return series
        db = slicer.dicomDatabase
        studies = list(dicomBrowser.selectedItems(indexType.StudyType))
        if not studies:
            studies = [st for patient in dicomBrowser.selectedItems(indexType.PatientType)
                       for st in db.studiesForPatient(patient)]
        return [se for st in studies for se in db.seriesForStudy(st)]

    def refreshBrowserSelection(self, showRows) -> None:
        """Read the browser selection; ``showRows``: show its stored labels in the table."""
        uids = self.browserSelectedSeriesUIDs()
        self._browserSeriesUIDs = uids
        self.ui.browserSelectionLabel.text = _("{count} series selected").format(count=len(uids))
        if showRows and not self.logic.isRunning:
            self.logic.showStoredSeries(uids)
            self.updateReviewTable()

    def onBrowserSeriesSelectionChanged(self, seriesUIDs) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to show the selected series.")):
            self.refreshBrowserSelection(showRows=True)

    def onUseBrowserSelectionButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to read the DICOM browser selection.")):
            self.connectDICOMBrowser()
            self.refreshBrowserSelection(showRows=True)

    # -- classification --------------------------------------------------------------------------
    def onClassifyButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to start the classification."), waitCursor=True):
            p = self._parameterNode
            if p.source == SOURCE_BROWSER:
                self._browserSeriesUIDs = self.browserSelectedSeriesUIDs() or self._browserSeriesUIDs
            self.logic.ensureDependencies()
            self.logic.classifySource(p.source, folder=p.inputFolder, seriesUIDs=self._browserSeriesUIDs,
                                      device=p.device, model=p.modelPath)
            self.ui.statusLabel.text = _("Classifying...")
            self.ui.progressBar.value = 0
            self.pollTimer.start()
            self.updateButtonStates()

    def onPollTimer(self) -> None:
        try:
            with slicer.util.tryWithErrorDisplay(_("Classification failed.")):
                self.logic.pollProcess()
                self.ui.progressBar.value = int(round(100 * self.logic.progressFraction))
                self.ui.statusLabel.text = self.logic.statusText
                if not self.logic.isRunning:
                    self.pollTimer.stop()
                    self.updateReviewTable()
                    self.showStoreWarnings()
        finally:
            if not self.logic.isRunning:
                self.pollTimer.stop()
                self.updateButtonStates()

    def onCancelButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to cancel.")):
            self.logic.cancel()
            self.ui.statusLabel.text = _("Cancelling...")

    def showStoreWarnings(self) -> None:
        for warning in self.logic.popStoreWarnings():
            slicer.util.warningDisplay(str(warning), windowTitle=_("SeqClassifier label store"))

    # -- review table ----------------------------------------------------------------------------
    def shownRows(self):
        return self.logic.reviewRows(self._parameterNode.onlyLabels if self._parameterNode else "")

    def updateReviewTable(self) -> None:
        """Fill the table from the logic's rows (keeps the Load ticks of rows still shown)."""
        table = self.ui.seriesTable
        checked = self.checkedSeriesUIDs()
        rows = self.shownRows()
        self._updatingTable = True
        try:
            table.setRowCount(len(rows))
            for i, row in enumerate(rows):
                self._fillRow(i, row, row.series_uid in checked)
        finally:
            self._updatingTable = False
        self.ui.modelStatusLabel.text = self.logic.modelStatusText()
        self._thumbnailQueue = [r.series_uid for r in rows]
        self.thumbnailTimer.start()
        self.updateButtonStates()

    def _item(self, text, uid=None):
        item = qt.QTableWidgetItem(text)
        item.setFlags(qt.Qt.ItemIsEnabled | qt.Qt.ItemIsSelectable)
        if uid is not None:
            item.setData(qt.Qt.UserRole, uid)
        return item

    def _fillRow(self, i, row, checked) -> None:
        table = self.ui.seriesTable
        table.setItem(i, COL_THUMB, self._item("", row.series_uid))
        table.setItem(i, COL_NUMBER, self._item("" if row.series_number is None else str(row.series_number)))
        description = self._item(row.description)
        description.setToolTip(f"{row.description}\n{row.folder}\n{row.note}".strip())
        table.setItem(i, COL_DESCRIPTION, description)
        table.setItem(i, COL_PLANE, self._item(row.plane))
        table.setItem(i, COL_PREDICTED, self._item(row.predicted_label or _("none")))
        confidence = self._item(review.format_confidence(row.confidence))
        confidence.setBackground(qt.QBrush(qt.QColor(review.confidence_color(row.confidence, row.needs_review))))
        confidence.setForeground(qt.QBrush(qt.QColor("white")))
        confidence.setToolTip("\n".join(f"{k}: {v:.3f}" for k, v in row.probabilities.items() if v is not None))
        table.setItem(i, COL_CONFIDENCE, confidence)
        reviewItem = self._item("\u26a0" if row.needs_review and not row.is_confirmed else
                                ("\u2714" if row.is_confirmed else ""))
        reviewItem.setToolTip(_("confirmed by {who}").format(who=row.confirmed_by) if row.is_confirmed
                              else (_("needs review") if row.needs_review else ""))
        table.setItem(i, COL_REVIEW, reviewItem)
        combo = qt.QComboBox()
        combo.addItems([""] + list(CLASS_NAMES))
        combo.setCurrentText(row.label or "")
        combo.setToolTip(_("Pick the right label: it is recorded as confirmed."))
        combo.currentTextChanged.connect(lambda text, uid=row.series_uid: self.onRowLabelChanged(uid, text))
        table.setCellWidget(i, COL_LABEL, combo)
        load = self._item("")
        load.setFlags(qt.Qt.ItemIsEnabled | qt.Qt.ItemIsUserCheckable)
        load.setCheckState(qt.Qt.Checked if checked else qt.Qt.Unchecked)
        load.setData(qt.Qt.UserRole, row.series_uid)
        table.setItem(i, COL_LOAD, load)

    def checkedSeriesUIDs(self):
        table = self.ui.seriesTable
        out = []
        for i in range(table.rowCount):
            item = table.item(i, COL_LOAD)
            if item is not None and item.checkState() == qt.Qt.Checked:
                out.append(item.data(qt.Qt.UserRole))
        return out

    def onShowLabelsEdited(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to filter the table.")):
            self.updateReviewTable()

    def onThumbnailTimer(self) -> None:
        """Draw one thumbnail per tick so the panel stays responsive (unreadable images get none)."""
        with slicer.util.tryWithErrorDisplay(_("Failed to draw a thumbnail.")):
            if not self._thumbnailQueue:
                return
            uid = self._thumbnailQueue.pop(0)
            table = self.ui.seriesTable
            for i in range(table.rowCount):
                item = table.item(i, COL_THUMB)
                if item is not None and item.data(qt.Qt.UserRole) == uid:
                    icon = self.logic.thumbnailIcon(uid)
                    if icon is not None:
                        item.setIcon(icon)
                    break
            if self._thumbnailQueue:
                self.thumbnailTimer.start()

    def onRowLabelChanged(self, seriesUID, text) -> None:
        if self._updatingTable:
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to record the label.")):
            self.logic.confirmLabel(seriesUID, text or None, user=self._parameterNode.reviewer or None)
            self.showStoreWarnings()
            # Rebuild later: the combo box that emitted this signal is replaced by the rebuild.
            qt.QTimer.singleShot(0, self.onShowLabelsEdited)

    def onConfirmAllButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to confirm the labels.")):
            uids = [r.series_uid for r in self.shownRows()]
            n, unlabeled = self.logic.confirmAll(uids, user=self._parameterNode.reviewer or None)
            self.ui.statusLabel.text = _("{n} labels confirmed.").format(n=n) + (
                " " + _("{m} series without a label were left unconfirmed.").format(m=unlabeled)
                if unlabeled else "")
            self.showStoreWarnings()
            self.updateReviewTable()

    def onApplyPresetButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to apply the preset.")):
            chosen = self.logic.presetSelection(self._parameterNode.preset)
            table = self.ui.seriesTable
            for i in range(table.rowCount):
                item = table.item(i, COL_LOAD)
                if item is not None:
                    item.setCheckState(qt.Qt.Checked if item.data(qt.Qt.UserRole) in chosen else qt.Qt.Unchecked)

    def onLoadButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to load the series."), waitCursor=True):
            uids = self.checkedSeriesUIDs()
            if not uids:
                raise ValueError(_("Tick the series to load in the Load column (or apply a preset)."))
            loaded = self.logic.loadSeries(uids)
            n = sum(len(nodes) for nodes in loaded.values())
            self.ui.statusLabel.text = _("{n} volumes loaded from {m} series.").format(n=n, m=len(loaded))

    def onExportButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to export the labels.")):
            path = qt.QFileDialog.getSaveFileName(
                slicer.util.mainWindow(), _("Export labels"), "labels.csv", _("CSV (*.csv);;JSON (*.json)"))
            if not path:
                return
            n = self.logic.exportLabels(path, confirmedOnly=self._parameterNode.exportConfirmedOnly)
            self.ui.statusLabel.text = _("{n} labels exported to {path}.").format(n=n, path=path)


#
# SeqClassifierLogic
#


class SeqClassifierLogic(ScriptedLoadableModuleLogic):
    """Classification, label store and loading; usable from scripts without the panel.

    The Slicer-free part (running the classifier, rows, store, review actions) lives in
    :class:`SeqClassifierSlicer.session.ClassificationSession`; this class adds the DICOM
    database, dependency installation, thumbnails and loading.  Example (Python console)::

        logic = slicer.util.getModuleLogic("SeqClassifier")
        files = logic.seriesFilesFromDatabase(seriesUIDs)
        logic.classifyFiles(files, device="auto", blocking=True)
        logic.loadSeries(sorted(logic.presetSelection("axial T2w + highest-b DWI + ADC")))
    """

    def __init__(self, store=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.session = ClassificationSession(store, module_dir=MODULE_DIR)
        self._thumbnailIcons = {}

    def getParameterNode(self):
        return SeqClassifierParameterNode(super().getParameterNode())

    # Session state, for the panel
    store = property(lambda self: self.session.store)
    rows = property(lambda self: self.session.rows)
    isRunning = property(lambda self: self.session.is_running)
    modelTrained = property(lambda self: self.session.model_trained)
    progressFraction = property(lambda self: self.session.progress_fraction)
    statusText = property(lambda self: self.session.status_text)

    def setStore(self, store) -> None:
        """Use another label store (the self-test uses a temporary one)."""
        self.session.store = store

    def popStoreWarnings(self):
        return self.session.store.pop_warnings()

    # -- dependencies ----------------------------------------------------------------------------
    @staticmethod
    def requirementsPath():
        return resourcePath("requirements.txt")

    def missingRequirements(self):
        """Lines of Resources/requirements.txt not installed (or in a version outside the range)."""
        from SeqClassifierSlicer.dependencies import missing_requirements

        return missing_requirements(self.requirementsPath())

    @staticmethod
    def torchInstalled():
        import importlib.util

        return importlib.util.find_spec("torch") is not None

    def ensureDependencies(self, askConfirmation=True) -> None:
        """Install what the classifier needs: called at the first Classify, never at import or setup.

        torch comes first, from the PyTorch extension (PyTorchUtils installs the build matching the
        GPU driver), so that timm/open_clip do not pull a generic torch from PyPI.  Then the missing
        lines of Resources/requirements.txt, after asking.
        """
        if not self.torchInstalled():
            try:
                import PyTorchUtils  # the PyTorch extension (a dependency of this extension)
            except ImportError:
                PyTorchUtils = None
            if PyTorchUtils is not None:
                torchLogic = PyTorchUtils.PyTorchUtilsLogic()
                if not torchLogic.torchInstalled():
                    torch = torchLogic.installTorch(askConfirmation=askConfirmation, torchVersionRequirement=">=2.1")
                    if torch is None:
                        raise RuntimeError(_("PyTorch is required; its installation was cancelled."))
            else:
                # No PyTorch extension: offer PyPI's default torch build (CPU-only on Windows/macOS).
                if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                        _("SeqClassifier needs PyTorch and the PyTorch extension is not installed. Install the "
                          "default PyTorch build from PyPI now? (Install the 'PyTorch' extension instead to get "
                          "a build matched to your GPU.)"), windowTitle=_("Install PyTorch")):
                    raise RuntimeError(_("PyTorch is required; its installation was cancelled."))
                slicer.util.pip_install("torch>=2.1")
        missing = self.missingRequirements()
        if not missing:
            return
        if askConfirmation and not slicer.app.testingEnabled():
            if not slicer.util.confirmOkCancelDisplay(
                    _("SeqClassifier needs these Python packages, which will be downloaded and installed "
                      "now (this may take a few minutes):\n\n{packages}").format(packages="\n".join(missing)),
                    windowTitle=_("Install Python packages")):
                raise RuntimeError(_("Python packages required by SeqClassifier were not installed."))
        try:
            import slicer.packaging as packaging
        except ImportError:  # Slicer < 5.10
            packaging = None
        if packaging is not None and hasattr(packaging, "pip_ensure"):
            packaging.pip_ensure(missing, prompt_install=False, requester="SeqClassifier", skip_in_testing=False)
        else:
            slicer.util.pip_install(missing)
        still = self.missingRequirements()
        if still:
            raise RuntimeError(_("Could not install: {packages}").format(packages=", ".join(still)))

    # -- inputs ----------------------------------------------------------------------------------
    @staticmethod
    def _database():
        db = getattr(slicer, "dicomDatabase", None)
        if db is None or not db.isOpen:
            raise RuntimeError(_("The DICOM database is not open: open the DICOM module and choose a database."))
        return db

    def allDatabaseSeriesUIDs(self):
        db = self._database()
        return [series for patient in db.patients() for study in db.studiesForPatient(patient)
                for series in db.seriesForStudy(study)]

    def seriesFilesFromDatabase(self, seriesUIDs):
        """SeriesInstanceUID -> files, from Slicer's DICOM database (``filesForSeries``)."""
        db = self._database()
        out = {}
        for uid in seriesUIDs:
            files = [f for f in db.filesForSeries(uid) if f]
            if files:
                out[uid] = files
        self.session.series_files.update(out)
        return out

    # -- classification --------------------------------------------------------------------------
    @staticmethod
    def pythonExecutable():
        """Slicer's ``PythonSlicer`` launcher (it sets Slicer's environment up), else this interpreter."""
        return shutil.which("PythonSlicer") or sys.executable

    @staticmethod
    def childEnvironment(python):
        """The launcher gets the environment Slicer started with (it adds its own paths)."""
        if os.path.splitext(os.path.basename(python))[0] == "PythonSlicer":
            return dict(slicer.util.startupEnvironment())
        return dict(os.environ)

    def classifyFiles(self, files, device="auto", model=None, blocking=False, onEvent=None):
        """Classify DICOM files in a background process (``python -m SeqClassifierLib.app.cli classify``).

        ``files``: paths (files and/or folders) or a dict SeriesInstanceUID -> files (only those
        series are kept).  ``blocking=True`` waits and returns the review rows (scripts, self-test);
        otherwise returns the BackgroundProcess and the panel calls :meth:`pollProcess` from a QTimer.
        ``onEvent`` receives every event (progress, series, skipped, summary, log, finished).
        """
        python = self.pythonExecutable()
        self.session.python = python
        self.session.env = self.childEnvironment(python)
        if blocking:
            return self.session.run(files, device, model, onEvent)
        return self.session.start(files, device, model, onEvent)

    def classifySource(self, source, folder=None, seriesUIDs=None, device="auto", model=None, blocking=False,
                       onEvent=None):
        """Classify the browser selection, the whole database or a folder (see ``SOURCES``)."""
        if source == SOURCE_FOLDER:
            if _isEmptyPath(folder) or not os.path.isdir(str(folder)):
                raise ValueError(_("Choose an existing DICOM folder."))
            return self.classifyFiles([str(folder)], device, model, blocking, onEvent)
        if source == SOURCE_DATABASE:
            uids = self.allDatabaseSeriesUIDs()
        else:
            uids = list(seriesUIDs or [])
            if not uids:
                raise ValueError(_("Select series (or a study/patient) in the DICOM browser first."))
        files = self.seriesFilesFromDatabase(uids)
        if not files:
            raise ValueError(_("The selected series have no files in the DICOM database."))
        return self.classifyFiles(files, device, model, blocking, onEvent)

    def pollProcess(self):
        """Handle the classifier's new events; raises when it failed."""
        return self.session.poll()

    def cancel(self) -> None:
        self.session.cancel()

    # -- review ----------------------------------------------------------------------------------
    def showStoredSeries(self, seriesUIDs):
        """Show what the label store knows about these series (no model run)."""
        return self.session.show_stored(seriesUIDs)

    def reviewRows(self, onlyLabels=""):
        return self.session.review_rows(onlyLabels)

    def modelStatusText(self):
        return self.session.model_status_text()

    def presetSelection(self, preset):
        return self.session.preset_selection(preset)

    def confirmLabel(self, seriesUID, label, user=None):
        """Record a person's label (None withdraws the confirmation)."""
        return self.session.confirm_label(seriesUID, label, user=user)

    def confirmAll(self, seriesUIDs, user=None):
        """Confirm the label shown for each series; returns (confirmed, left out without label)."""
        return self.session.confirm_all(seriesUIDs, user=user)

    def exportLabels(self, path, confirmedOnly=False):
        return self.session.export_labels(path, confirmed_only=confirmedOnly)

    def thumbnailIcon(self, seriesUID, size=64):
        """A QIcon of the series' center slice (cached); None when the image cannot be read."""
        if seriesUID in self._thumbnailIcons:
            return self._thumbnailIcons[seriesUID]
        icon = None
        try:
            image = self.session.center_slice(seriesUID)
            if image is not None:
                import numpy as np
                from vtk.util import numpy_support

                pixels = np.ascontiguousarray(np.flipud(review.thumbnail_uint8(image, size)))  # VTK rows go up
                imageData = vtk.vtkImageData()
                imageData.SetDimensions(size, size, 1)
                imageData.GetPointData().SetScalars(numpy_support.numpy_to_vtk(pixels.ravel(), deep=True))
                qimage = qt.QImage()
                slicer.qMRMLUtils().vtkImageDataToQImage(imageData, qimage)
                icon = qt.QIcon(qt.QPixmap.fromImage(qimage))
        except Exception as exc:  # a thumbnail must never break the review
            logging.warning("SeqClassifier: no thumbnail for %s: %s", seriesUID, exc)
        self._thumbnailIcons[seriesUID] = icon
        return icon

    # -- loading ---------------------------------------------------------------------------------
    def loadSeries(self, seriesUIDs, labels=None):
        """Load series through Slicer's DICOM plugins, then name and tag each volume.

        ``labels``: optional SeriesInstanceUID -> label overriding the table's label
        (confirmed, else predicted).  Series classified from a folder are imported into the
        DICOM database first (files are linked, not copied).  Returns uid -> loaded volume nodes.
        """
        from DICOMLib import DICOMUtils
        from SeqClassifierSlicer import scene

        db = self._database()
        entries = self.store.load()
        loaded = {}
        for uid in seriesUIDs:
            if not db.filesForSeries(uid, 1):
                row = self.rows.get(uid)
                if row is None or not row.folder:
                    raise ValueError(_("Series {uid} is not in the DICOM database.").format(uid=uid))
                DICOMUtils.importDicom(row.folder, db)
            nodeIDs = DICOMUtils.loadSeriesByUID([uid])
            nodes = [slicer.mrmlScene.GetNodeByID(i) for i in nodeIDs]
            volumes = [n for n in nodes if n is not None and n.IsA("vtkMRMLVolumeNode")]
            row, label, confirmed = review.label_to_load(uid, self.rows.get(uid), entries.get(uid), labels)
            for node in volumes:
                scene.tag_volume_node(
                    node, label, plane=row.plane if row else None,
                    description=row.description if row else node.GetName(),
                    confidence=row.confidence if row else None, model=row.model if row else None,
                    confirmed=confirmed, predicted_label=row.predicted_label if row else None,
                    needs_review=row.needs_review if row else None, series_uid=uid,
                    series_number=row.series_number if row else None)
            loaded[uid] = volumes
        return loaded


#
# SeqClassifierDICOMPlugin
#


class SeqClassifierDICOMPlugin(DICOMPlugin):
    """Shows the stored label of each series in the DICOM browser's loadables.

    ``examine`` reads the label store only (no model run): for a series with a stored label it
    offers a loadable named ``<label> (<confidence>) — <description>`` with confidence 0.1, so the
    regular loaders stay the default choice while the label is visible in the advanced view.
    Loading it delegates to the scalar volume plugin and then names/tags the volume.
    """

    def __init__(self):
        DICOMPlugin.__init__(self)
        self.loadType = _("SeqClassifier labelled volume")
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
        self._entries = None  # re-read the store once per examination
        loadables = []
        for files in fileLists:
            loadables += self.examineFiles(files)
        return loadables

    def examineFiles(self, files):
        if not files:
            return []
        uid = slicer.dicomDatabase.fileValue(files[0], self.tags["seriesInstanceUID"])
        entry = self._storeEntries().get(uid)
        if entry is None or entry.label is None:
            return []
        loadable = DICOMLoadable()
        loadable.files = list(files)
        status = _("confirmed") if entry.is_confirmed else review.format_confidence(entry.confidence)
        loadable.name = f"{entry.label} ({status}) \u2014 {entry.description or uid}"
        lines = [_("SeqClassifier label: {label}").format(label=entry.label),
                 _("predicted {label} by {model}").format(label=entry.predicted_label or _("nothing"),
                                                          model=entry.model or "?")]
        if entry.is_confirmed:
            lines.append(_("confirmed by {who} at {when}").format(who=entry.confirmed_by, when=entry.confirmed_at))
        lines += [f"{k}: {v:.3f}" for k, v in (entry.probabilities or {}).items() if v is not None]
        loadable.tooltip = "\n".join(lines)
        loadable.selected = False
        loadable.confidence = 0.1
        loadable.seqClassifierSeriesUID = uid
        return [loadable]

    def load(self, loadable):
        from SeqClassifierSlicer import scene

        scalarPlugin = slicer.modules.dicomPlugins["DICOMScalarVolumePlugin"]()
        candidates = scalarPlugin.examineFiles(loadable.files)
        if not candidates:
            return None
        best = max(candidates, key=lambda c: (c.selected, c.confidence))
        node = scalarPlugin.load(best)
        if node:
            entry = self._storeEntries().get(getattr(loadable, "seqClassifierSeriesUID", ""))
            if entry is not None:
                scene.tag_from_prediction(node, entry)
        return node


#
# SeqClassifierTest
#


class SeqClassifierTest(ScriptedLoadableModuleTest):
    """Self-test: synthetic study -> temporary DICOM database -> classify -> correct -> load -> check."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SeqClassifier_EndToEnd()

    def test_SeqClassifier_EndToEnd(self):
        import tempfile

        from DICOMLib import DICOMUtils
        from SeqClassifierLib.synth import generate_studies
        from SeqClassifierSlicer import scene

        self.delayDisplay("Generating a synthetic study")
        tmp = tempfile.mkdtemp(prefix="SeqClassifierTest-", dir=slicer.app.temporaryPath)
        dataDir = os.path.join(tmp, "dicom")
        generate_studies(dataDir, studies=1, seed=0, size="tiny")

        widget = slicer.util.getModuleWidget("SeqClassifier")
        logic = widget.logic
        originalStore = logic.store
        store = LabelStore(os.path.join(tmp, "store", "labels.json"))
        logic.setStore(store)  # never touch the user's own label store
        try:
            with DICOMUtils.TemporaryDICOMDatabase(os.path.join(tmp, "database")) as db:
                self.assertTrue(DICOMUtils.importDicom(dataDir, db))
                uids = logic.allDatabaseSeriesUIDs()
                self.assertGreaterEqual(len(uids), 2)

                self.delayDisplay("Classifying (blocking)")
                files = logic.seriesFilesFromDatabase(uids)
                rows = logic.classifyFiles(files, device="cpu", blocking=True)
                self.assertEqual({r.series_uid for r in rows}, set(uids))
                self.assertEqual(len(store), len(uids))
                widget.initializeParameterNode()
                widget._parameterNode.onlyLabels = ""
                widget.updateReviewTable()
                if logic.modelTrained:
                    self.assertTrue(all(r.predicted_label in CLASS_NAMES for r in rows))
                    self.assertNotIn("Untrained", widget.ui.modelStatusLabel.text)
                else:
                    self.assertTrue(all(r.predicted_label is None for r in rows))
                    self.assertTrue(all(store.get(u).predicted_label is None for u in uids))
                    self.assertIn("Untrained model", widget.ui.modelStatusLabel.text)
                self.assertEqual(widget.ui.seriesTable.rowCount, len(uids))

                self.delayDisplay("Correcting one label")
                # The generator's labels.csv holds the truth; load an axial T2w and the ADC map
                # (single volumes with every DICOM loader).
                import csv

                with open(os.path.join(dataDir, "labels.csv"), newline="", encoding="utf-8") as fh:
                    truth = {r["SeriesInstanceUID"]: r["label"] for r in csv.DictReader(fh)}
                t2 = [r for r in rows if truth.get(r.series_uid) == "T2w"]
                first = next((r for r in t2 if r.plane == "axial"), t2[0])
                second = next(r for r in rows if truth.get(r.series_uid) == "ADC")
                corrected = "T2w"  # the true label (a change from None when the model is untrained)
                logic.confirmLabel(first.series_uid, corrected, user="selftest")
                entry = store.get(first.series_uid)
                self.assertEqual(entry.confirmed_label, corrected)
                self.assertEqual(entry.confirmed_by, "selftest")
                self.assertEqual(entry.predicted_label, first.predicted_label)
                self.assertEqual(logic.rows[first.series_uid].label, corrected)

                self.delayDisplay("Loading two series")
                loaded = logic.loadSeries([first.series_uid, second.series_uid])
                self.assertGreaterEqual(len(loaded[first.series_uid]), 1)
                self.assertGreaterEqual(len(loaded[second.series_uid]), 1)

                node = loaded[first.series_uid][0]
                tags = scene.read_tags(node)
                self.assertEqual(node.GetName(), scene.node_name(corrected, first.plane, first.description,
                                                                 first.series_number))
                self.assertEqual(tags[scene.ATTR_LABEL], corrected)
                self.assertEqual(tags[scene.ATTR_CONFIRMED], "true")
                self.assertEqual(tags[scene.ATTR_SERIES_UID], first.series_uid)
                self.assertEqual(tags[scene.ATTR_MODEL], first.model)

                node2 = loaded[second.series_uid][0]
                tags2 = scene.read_tags(node2)
                self.assertEqual(node2.GetName(), scene.node_name(second.predicted_label, second.plane,
                                                                  second.description, second.series_number))
                self.assertEqual(tags2[scene.ATTR_LABEL], second.predicted_label or "")
                self.assertEqual(tags2[scene.ATTR_CONFIRMED], "false")
                self.assertEqual(tags2[scene.ATTR_PREDICTED_LABEL], second.predicted_label or "")
                if not logic.modelTrained:
                    self.assertEqual(tags2[scene.ATTR_CONFIDENCE], "")
                    self.assertTrue(node2.GetName().startswith(scene.UNLABELED))

                self.delayDisplay("Checking the DICOM plugin's loadables")
                plugin = SeqClassifierDICOMPlugin()
                plugin.store = store
                loadables = plugin.examineForImport([files[first.series_uid]])
                self.assertEqual(len(loadables), 1)
                self.assertTrue(loadables[0].name.startswith(f"{corrected} ("))
                self.assertLess(loadables[0].confidence, 0.5)

                exported = os.path.join(tmp, "labels.csv")
                self.assertGreaterEqual(logic.exportLabels(exported, confirmedOnly=True), 1)
                with open(exported, encoding="utf-8") as fh:
                    self.assertEqual(fh.readline().strip(), "series_dir,SeriesInstanceUID,label,SeriesDescription,note")
        finally:
            logic.setStore(originalStore)
        self.delayDisplay("Test passed")
