"""The module's self-test body (``SeqClassifierTest`` in ``SeqClassifier.py`` calls :func:`run`).

Synthetic study -> temporary DICOM database -> labels -> DICOM plugin loadables -> load ->
names and tags -> the "loaded in the scene" source -> export.  The classifier itself needs
torch and safetensors: they are installed first when missing (no prompt in testing mode).  In
the extension build (``SEQCLASSIFIER_SELFTEST_OFFLINE=1``, set by ``SeqClassifier/CMakeLists.txt``:
no network there) nothing is downloaded and only the parts that need no download run, as the log
says; the predictions are then recorded by hand in the label store instead of by the model (the
way Slicer extensions with heavy models switch off their ``testLogic`` part on build machines).
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile

import slicer
from DICOMLib import DICOMUtils

from SeqClassifierLib.curation.label_store import LabelStore
from SeqClassifierLib.labels import CLASS_NAMES
from SeqClassifierLib.records import ResultRow
from SeqClassifierLib import config
from SeqClassifierLib.synth import generate_studies
from SeqClassifierSlicer import scene
from SeqClassifierSlicer.dicom_plugin import SeqClassifierDICOMPlugin
from SeqClassifierSlicer.options import Source

OFFLINE_VARIABLE = config.SELFTEST_OFFLINE_ENV


def offline() -> bool:
    return config.selftest_offline()


def _truth(dataDir):
    with open(os.path.join(dataDir, "labels.csv"), newline="", encoding="utf-8") as fh:
        return {r["SeriesInstanceUID"]: r["label"] for r in csv.DictReader(fh)}


def run(test, widget) -> None:
    """Run the self-test with ``test`` (a ScriptedLoadableModuleTest) on the module's widget."""
    logic = widget.logic
    canClassify = True
    if offline():
        missing = logic.missingRequirements() + ([] if logic.torchInstalled() else ["torch"])
        canClassify = not missing
        if missing:
            logging.info("SeqClassifier self-test: %s is set (extension build, no network): not installing "
                         "%s; the classifier run is skipped, the rest is tested.", OFFLINE_VARIABLE, ", ".join(missing))
    else:
        test.delayDisplay("Installing missing Python packages (if any)")
        logic.ensureDependencies(askConfirmation=False)

    test.delayDisplay("Generating a synthetic study")
    tmp = tempfile.mkdtemp(prefix="SeqClassifierTest-", dir=slicer.app.temporaryPath)
    dataDir = os.path.join(tmp, "dicom")
    generate_studies(dataDir, studies=1, seed=0, size="tiny")
    truth = _truth(dataDir)

    originalStore = logic.store
    store = LabelStore(os.path.join(tmp, "store", "labels.json"))
    logic.setStore(store)  # never touch the user's own label store
    try:
        with DICOMUtils.TemporaryDICOMDatabase(os.path.join(tmp, "database")) as db:
            test.assertTrue(DICOMUtils.importDicom(dataDir, db))
            uids = logic.allDatabaseSeriesUIDs()
            test.assertGreaterEqual(len(uids), 2)
            files = logic.seriesFilesFromDatabase(uids)
            if canClassify:
                test.delayDisplay("Classifying (blocking)")
                rows = logic.classifyFiles(files, device="cpu", blocking=True)
                test.assertEqual({r.series_uid for r in rows}, set(uids))
                if logic.modelTrained:
                    test.assertTrue(all(r.predicted_label in CLASS_NAMES for r in rows))
                test.assertTrue(all(r.thumbnail is not None for r in rows))
            else:
                test.delayDisplay("Offline: recording the generator's labels as predictions (no model run)")
                store.record_predictions([ResultRow(series_uid=u, label=truth[u], confidence=0.99, model="selftest",
                                                    description=os.path.basename(os.path.dirname(files[u][0])))
                                          for u in uids])
                logic.showStoredSeries(uids)
            test.assertEqual(len(store), len(uids))
            widget.initializeParameterNode()
            widget._parameterNode.onlyLabels = ""
            widget.updateReviewTable()
            test.assertEqual(widget.ui.seriesTable.rowCount, len(uids))

            test.delayDisplay("Correcting one label")
            rows = list(logic.rows.values())
            t2 = [r for r in rows if truth.get(r.series_uid) == "T2w"]
            first = next((r for r in t2 if r.plane == "axial"), t2[0])
            second = next(r for r in rows if truth.get(r.series_uid) == "ADC")
            logic.confirmLabel(first.series_uid, "T2w", user="selftest")
            entry = store.get(first.series_uid)
            test.assertEqual((entry.confirmed_label, entry.confirmed_by), ("T2w", "selftest"))

            test.delayDisplay("Loading two series")
            loadedNodes = logic.loadSeries([first.series_uid, second.series_uid])
            node = loadedNodes[first.series_uid][0]
            tags = scene.read_tags(node)
            test.assertEqual(node.GetName(), scene.node_name("T2w", first.plane, first.description,
                                                             first.series_number))
            test.assertEqual((tags[scene.ATTR_LABEL], tags[scene.ATTR_CONFIRMED]), ("T2w", "true"))
            test.assertEqual(tags[scene.ATTR_SERIES_UID], first.series_uid)
            test.assertGreaterEqual(len(loadedNodes[second.series_uid]), 1)

            test.delayDisplay("Checking the DICOM plugin's loadables")
            plugin = SeqClassifierDICOMPlugin()
            plugin.store = store
            loadables = plugin.examineForImport([files[first.series_uid]])
            test.assertEqual(len(loadables), 1)
            test.assertTrue(loadables[0].name.startswith("T2w ("))

            test.delayDisplay("The series loaded in the scene")
            volumes = {v.series_uid: v for v in logic.loadedVolumes()}
            test.assertIn(first.series_uid, volumes)
            test.assertIn(second.series_uid, volumes)
            if canClassify:
                rows = logic.classifySource(Source.SCENE, device="cpu", blocking=True)
                test.assertEqual({r.series_uid for r in rows}, {first.series_uid, second.series_uid})
                logic.confirmLabel(second.series_uid, "ADC", user="selftest")
                node2 = loadedNodes[second.series_uid][0]
                test.assertEqual(scene.read_tags(node2)[scene.ATTR_CONFIRMED], "true")
                test.assertTrue(node2.GetName().startswith("ADC"))

            exported = os.path.join(tmp, "labels.csv")
            test.assertGreaterEqual(logic.exportLabels(exported, confirmedOnly=True), 1)
    finally:
        logic.setStore(originalStore)
    test.delayDisplay("Test passed" + ("" if canClassify else " (offline: classifier run skipped)"))
