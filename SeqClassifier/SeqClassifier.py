"""SeqClassifier: tell what each MR series of a prostate study is, review it, load only what you need.

A thin shell, as in Slicer's template (``TemplateKey.py``), around ``SeqClassifierLib`` (pure Python:
discovery, classifier, label store) and ``SeqClassifierSlicer`` (no Qt: logic, review rows, session,
tagging, the scene source, the DICOM plugin, the self-test, and the differences between Slicer 5.8,
5.10 and 5.12 in ``compat``).  The classifier runs as a child process polled with a QTimer.
"""

import os
import pathlib
from typing import Annotated

import numpy as np
import qt
import vtk
from vtk.util import numpy_support

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

from SeqClassifierSlicer import compat, dicom_plugin, options, selftest
from SeqClassifierSlicer.logic import ModuleLogic
from SeqClassifierSlicer.options import Preset, Source
from SeqClassifierSlicer.review_table import ReviewTable
from SeqClassifierSlicer.session import row_shown

MODULE_DIR = os.path.dirname(os.path.abspath(__file__))

# Shown texts (translated); the parameter node stores the Enum names.
options.set_labels({
    Source.SCENE: _("series loaded in the scene"),
    Source.BROWSER: _("series selected in the DICOM browser"),
    Source.DATABASE: _("every series in the DICOM database"),
    Source.FOLDER: _("a folder"),
    Preset.T2_DWI_ADC: _("axial T2w + highest-b DWI + ADC"),
    Preset.ALL_BUT_OTHER: _("everything but OTHER"),
    Preset.ALL: _("everything"),
    Preset.NONE: _("nothing"),
})
dicom_plugin.set_texts({
    "loadType": _("SeqClassifier labelled volume"), "confirmed": _("confirmed"),
    "label": _("SeqClassifier label: {label}"), "predicted": _("predicted {label} by {model}"),
    "nothing": _("nothing"), "confirmedBy": _("confirmed by {who} at {when}"),
})


def resourcePath(filename):
    """A file of the module's ``Resources`` folder (beside this file, as in Slicer's template)."""
    return os.path.join(MODULE_DIR, "Resources", filename)


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
with their label. By default it classifies the series already loaded in the scene (the rest of
their studies is read from the DICOM database for context). Labels are kept in a label store
(JSON, in your user data folder) and can be exported in the training CSV format.
""")
        self.parent.acknowledgementText = _("""
Uses pydicom, PyTorch (through the PyTorch extension) and safetensors (timm or open_clip only for models
with their backbones). Test data from the
PROSTATEx collection of The Cancer Imaging Archive (CC BY 3.0).
""")
        iconPath = resourcePath("Icons/SeqClassifier.png")
        if os.path.isfile(iconPath):
            self.parent.icon = qt.QIcon(iconPath)
        # Register the DICOM plugin as Slicer's plugins do (the DICOM module may be discovered later).
        try:
            slicer.modules.dicomPlugins
        except AttributeError:
            slicer.modules.dicomPlugins = {}
        slicer.modules.dicomPlugins["SeqClassifierDICOMPlugin"] = SeqClassifierDICOMPlugin

    def resourcePath(self, filename):
        return resourcePath(filename)


#: The plugin class, under the name Slicer registers and the DICOM module looks up.
SeqClassifierDICOMPlugin = dicom_plugin.SeqClassifierDICOMPlugin


#
# SeqClassifierParameterNode
#


@parameterNodeWrapper
class SeqClassifierParameterNode:
    """source/preset: stored by Enum name; modelPath empty (".") = the shipped model; reviewer empty =
    login name; onlyLabels: comma-separated labels shown (empty: all)."""

    source: Source = Source.SCENE
    inputFolder: pathlib.Path
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    modelPath: pathlib.Path
    reviewer: str = ""
    onlyLabels: str = ""
    preset: Preset = Preset.T2_DWI_ADC
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
        self._connectedTableManager = None
        self._thumbnailQueue = []
        self._sourceChosen = False
        self.table = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SeqClassifier.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SeqClassifierLogic()
        self.logic.session.writes.wait = False  # GUI thread: never wait for the label store's lock
        self.table = ReviewTable(qt, self.ui.seriesTable, self.onRowLabelChanged, _)

        self.ui.seriesTable.setHorizontalHeaderLabels(
            [_("Image"), "#", _("Predicted"), _("Confidence"), _("Label"), _("Load"), _("Description"), _("Plane"),
             _("Group"), _("Review")])
        self.ui.seriesTable.verticalHeader().setDefaultSectionSize(68)
        self.table.layout_columns()  # label and confidence first, visible without scrolling sideways
        self.ui.progressBar.setRange(0, 100)
        self.ui.progressBar.value = 0

        self.pollTimer = qt.QTimer()
        self.pollTimer.setInterval(200)
        self.pollTimer.timeout.connect(self.onPollTimer)
        self.thumbnailTimer = qt.QTimer()
        self.thumbnailTimer.setSingleShot(True)
        self.thumbnailTimer.setInterval(0)
        self.thumbnailTimer.timeout.connect(self.onThumbnailTimer)
        self.storeRetryTimer = qt.QTimer()  # label-store writes that found the store locked
        self.storeRetryTimer.setInterval(1000)
        self.storeRetryTimer.timeout.connect(self.onStoreRetryTimer)

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
        self.ui.showShippedCheckBox.connect("toggled(bool)", lambda _on: self.updateReviewTable())

        self.initializeParameterNode()
        self.connectDICOMBrowser()
        self.updateButtonStates()

    def cleanup(self) -> None:
        self.removeObservers()
        self.pollTimer.stop()
        self.thumbnailTimer.stop()
        self.storeRetryTimer.stop()
        self.disconnectDICOMBrowser()
        if self.logic:
            self.logic.cancel()

    def enter(self) -> None:
        self.initializeParameterNode()
        if not self._sourceChosen and self._parameterNode is not None:
            # Default: the loaded series when there are volumes, else the browser selection.
            self._parameterNode.source = options.default_source(len(self.logic.loadedVolumes()))
            self._sourceChosen = True
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
        source = self._parameterNode.source if self._parameterNode is not None else None
        self.ui.inputFolderPathLineEdit.enabled = source is Source.FOLDER
        self.ui.labelStorePathLabel.text = str(self.logic.store.path)

    # -- DICOM browser selection (release differences: SeqClassifierSlicer.compat) ----------------
    def _dicomBrowserWidget(self):
        dicomInstance = getattr(slicer.modules, "DICOMInstance", None)
        return getattr(dicomInstance, "browserWidget", None)

    def connectDICOMBrowser(self) -> None:
        """Follow the classic browser's ``seriesSelectionChanged(QStringList)`` (every release);
        the browser exists once the DICOM module was shown, so this is retried on every enter."""
        tableManager = compat.table_manager(self._dicomBrowserWidget())
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

    def refreshBrowserSelection(self, showRows) -> None:
        """Show the browser selection's size; ``showRows``: show its stored labels, but only when the
        browser is the chosen source, something is selected and nothing runs (never empties the table)."""
        selection = self.logic.browserSelection()
        self.ui.browserSelectionLabel.text = selection.note if not selection.available else \
            _("{count} series selected").format(count=len(selection.series))
        if (showRows and selection.series and not self.logic.isRunning and self._parameterNode is not None
                and self._parameterNode.source is Source.BROWSER):
            self.logic.showStoredSeries(selection.series)
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
            self.logic.ensureDependencies(model=p.modelPath)
            self.logic.classifySource(p.source, folder=p.inputFolder, device=p.device, model=p.modelPath)
            self.ui.statusLabel.text = _("Classifying...") + " " + self.logic.inputNote
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
                    self.ui.statusLabel.text = f"{self.logic.statusText} ({self.logic.inputNote})"
                    self.updateReviewTable()
                    self.showStoreWarnings()
                    self.noteStoreWaiting()
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
        return self.logic.reviewRows(self._parameterNode.onlyLabels if self._parameterNode else "",
                                     shipped=self.ui.showShippedCheckBox.checked)

    def updateReviewTable(self) -> None:
        """Fill the table from the logic's rows (a new result set; keeps the Load ticks)."""
        rows = self.shownRows()
        self.table.fill(rows)
        self.ui.modelStatusLabel.text = self.logic.modelStatusText(shipped=self.ui.showShippedCheckBox.checked)
        self._thumbnailQueue = [(r.series_uid, r.thumbnail) for r in rows if r.thumbnail is not None]
        self.thumbnailTimer.start()
        self.updateButtonStates()

    def checkedSeriesUIDs(self):
        return self.table.checked()

    def onShowLabelsEdited(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to filter the table.")):
            self.updateReviewTable()

    def onThumbnailTimer(self) -> None:
        """Draw one thumbnail per tick (sent by the classifier process: no file is read here)."""
        with slicer.util.tryWithErrorDisplay(_("Failed to draw a thumbnail.")):
            if not self._thumbnailQueue:
                return
            uid, pixels = self._thumbnailQueue.pop(0)
            self.table.set_thumbnail(uid, thumbnailIcon, pixels)
            if self._thumbnailQueue:
                self.thumbnailTimer.start()

    def onRowLabelChanged(self, seriesUID, text) -> None:
        """One row changes: its cells are updated in place, or it leaves the table when the label
        filter no longer shows it (later: the combo box that emitted this signal is in it)."""
        with slicer.util.tryWithErrorDisplay(_("Failed to record the label.")):
            self.logic.confirmLabel(seriesUID, text or None, user=self._parameterNode.reviewer or None)
            self.showStoreWarnings()
            self.noteStoreWaiting()
            row = self.logic.rows.get(seriesUID)
            if row is not None and row_shown(row, self._parameterNode.onlyLabels):
                self.table.update_row(row)
            else:
                qt.QTimer.singleShot(0, lambda: self.table.remove_row(seriesUID))
            self.ui.modelStatusLabel.text = self.logic.modelStatusText()

    def noteStoreWaiting(self) -> None:
        """Writes that found the label store locked are retried by a timer (never waited for)."""
        waiting = self.logic.storeWaitingText()
        if waiting:
            self.ui.statusLabel.text = waiting
            self.storeRetryTimer.start()

    def onStoreRetryTimer(self) -> None:
        try:
            with slicer.util.tryWithErrorDisplay(_("Failed to save to the label store.")):
                if self.logic.flushStoreWrites() == 0:
                    self.ui.statusLabel.text = _("Label store saved.")
        finally:
            if not self.logic.storeWaitingText():
                self.storeRetryTimer.stop()

    def onConfirmAllButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to confirm the labels.")):
            uids = [r.series_uid for r in self.shownRows()]
            n, unlabeled = self.logic.confirmAll(uids, user=self._parameterNode.reviewer or None)
            self.ui.statusLabel.text = _("{n} labels confirmed.").format(n=n) + (
                " " + _("{m} series without a label were left unconfirmed.").format(m=unlabeled)
                if unlabeled else "")
            self.showStoreWarnings()
            self.noteStoreWaiting()
            self.updateReviewTable()

    def onApplyPresetButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to apply the preset.")):
            self.table.check_only(self.logic.presetSelection(self._parameterNode.preset))

    def onLoadButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to load the series."), waitCursor=True):
            uids = self.checkedSeriesUIDs()
            if not uids:
                raise ValueError(_("Tick the series to load in the Load column (or apply a preset)."))
            loaded = self.logic.loadSeries(uids)
            n = sum(len(nodes) for nodes in loaded.values())
            self.ui.statusLabel.text = _("{n} volumes loaded or tagged from {m} series.").format(n=n, m=len(loaded))

    def onExportButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to export the labels.")):
            path = qt.QFileDialog.getSaveFileName(
                slicer.util.mainWindow(), _("Export labels"), "labels.csv", _("CSV (*.csv);;JSON (*.json)"))
            if not path:
                return
            n = self.logic.exportLabels(path, confirmedOnly=self._parameterNode.exportConfirmedOnly)
            self.ui.statusLabel.text = _("{n} labels exported to {path}.").format(n=n, path=path)


def thumbnailIcon(pixels):
    """A QIcon of a uint8 (height, width) thumbnail."""
    h, w = pixels.shape
    imageData = vtk.vtkImageData()
    imageData.SetDimensions(w, h, 1)
    flipped = np.ascontiguousarray(np.flipud(pixels))  # VTK rows go up
    imageData.GetPointData().SetScalars(numpy_support.numpy_to_vtk(flipped.ravel(), deep=True))
    qimage = qt.QImage()
    slicer.qMRMLUtils().vtkImageDataToQImage(imageData, qimage)
    return qt.QIcon(qt.QPixmap.fromImage(qimage))


#
# SeqClassifierLogic
#


class SeqClassifierLogic(ScriptedLoadableModuleLogic, ModuleLogic):
    """Slicer's logic base (parameter node) + :class:`SeqClassifierSlicer.logic.ModuleLogic`."""

    def __init__(self, store=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        ModuleLogic.__init__(self, MODULE_DIR, store)

    def getParameterNode(self):
        return SeqClassifierParameterNode(super().getParameterNode())


#
# SeqClassifierTest
#


class SeqClassifierTest(ScriptedLoadableModuleTest):
    """Self-test (body: SeqClassifierSlicer/selftest.py): installs what is missing first, or with
    SEQCLASSIFIER_SELFTEST_OFFLINE=1 (extension build) skips only the classifier run."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SeqClassifier_EndToEnd()

    def test_SeqClassifier_EndToEnd(self):
        selftest.run(self, slicer.util.getModuleWidget("SeqClassifier"))
