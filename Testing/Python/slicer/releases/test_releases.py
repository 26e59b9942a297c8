"""The module under the stand-ins of Slicer 5.8, 5.10 and 5.12 (standins.py), over real DICOM files.

The DICOM plugin's examine/load and the browser-selection code must work with each release's
``DICOMPlugin`` base class and browser API; SeqClassifier.py must import with minimal ``qt``/
``slicer`` stubs and register its plugin as Slicer expects.  MRML is the real ``slicer-core`` one.
"""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import pytest

import standins
from SeqClassifierLib.curation.label_store import LabelStore
from SeqClassifierLib.records import ResultRow

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("this 'slicer' package has no MRML classes", allow_module_level=True)
import slicer.util  # noqa: E402,F401  (addVolumeFromArray)


@pytest.fixture(scope="module")
def db(prostatex):
    return standins.DICOMDatabase([prostatex])


class _Stub:
    """Anything: attributes and calls return stubs (enough for class bodies and module set-up)."""

    def __init__(self, *a, **k):
        pass

    def __getattr__(self, name):
        return _Stub()

    def __call__(self, *a, **k):
        return _Stub()


def _qt_module():
    qt = types.ModuleType("qt")
    qt.__getattr__ = lambda name: _Stub
    return qt


def _slm_module():
    mod = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            pass

        def getParameterNode(self):
            return None

    mod.ScriptedLoadableModule = ScriptedLoadableModule
    mod.ScriptedLoadableModuleWidget = ScriptedLoadableModuleWidget
    mod.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
    mod.ScriptedLoadableModuleTest = type("ScriptedLoadableModuleTest", (), {})
    return mod


def _pnw_module():
    mod = types.ModuleType("slicer.parameterNodeWrapper")
    mod.parameterNodeWrapper = lambda cls: cls
    mod.Choice = lambda choices: ("Choice", tuple(choices))
    return mod


@pytest.fixture(params=standins.RELEASES)
def release(request, monkeypatch, db, tmp_path):
    """One release's stand-ins installed: DICOMLib, slicer.dicomDatabase/modules/app, a fresh scene."""
    rel = request.param
    monkeypatch.setitem(sys.modules, "DICOMLib", standins.dicomlib_module(rel))
    monkeypatch.setitem(sys.modules, "qt", _qt_module())
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", _slm_module())
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", _pnw_module())
    scene = slicer.vtkMRMLScene()
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer, "dicomDatabase", db, raising=False)
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(), raising=False)
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(testingEnabled=lambda: True,
                                                             temporaryPath=str(tmp_path)), raising=False)
    _forget_modules()  # re-import them over this release's DICOMLib
    yield rel
    scene.Clear(1)
    _forget_modules()


def _forget_modules():
    import SeqClassifierSlicer

    for name in ("dicom_plugin", "logic", "selftest"):
        sys.modules.pop("SeqClassifierSlicer." + name, None)
        if hasattr(SeqClassifierSlicer, name):
            delattr(SeqClassifierSlicer, name)
    sys.modules.pop("SeqClassifier", None)


def _store_with_labels(tmp_path, db, labels):
    store = LabelStore(tmp_path / "store" / "labels.json")
    rows = []
    for se, files in db.series.items():
        desc = db.fileValue(files[0], "0008,103E")
        rows.append(ResultRow(series_uid=se, label=labels.get(desc, "OTHER"), confidence=0.9, model="m@1",
                              description=desc, review_reasons=["low confidence"] if desc == "t2_tse_sag" else [],
                              needs_review=desc == "t2_tse_sag"))
    store.record_predictions(rows)
    return store


def test_stand_ins_follow_the_sources(release):
    """The 5.8/5.10 base really lacks the tag the old code used; the 5.12 browser has selectedItems."""
    base = sys.modules["DICOMLib"].DICOMPlugin()
    assert ("seriesInstanceUID" in base.tags) == (release == "5.12")
    browser = standins.SlicerDICOMBrowser(release)
    assert hasattr(browser.dicomBrowser, "selectedItems") == (release == "5.12")
    assert hasattr(browser.dicomVisualBrowser, "patientView") == (release == "5.12")
    assert hasattr(browser.dicomVisualBrowser, "patientsTabWidget") == (release != "5.12")


def test_plugin_examines_real_series_on_every_release(release, db, tmp_path):
    from SeqClassifierSlicer.dicom_plugin import SeqClassifierDICOMPlugin

    store = _store_with_labels(tmp_path, db, {"t2_tse_tra": "T2w", "ep2d_diff_tra_DYNDIST_ADC": "ADC"})
    plugin = SeqClassifierDICOMPlugin()
    plugin.store = store
    assert isinstance(plugin, sys.modules["DICOMLib"].DICOMPlugin)
    fileLists = [db.filesForSeries(se) for se in db.series]
    loadables = standins.get_loadables_from_file_lists(plugin, fileLists)
    assert len(loadables) == len(db.series) == 18
    by_uid = {ld.seqClassifierSeriesUID: ld for ld in loadables}
    assert set(by_uid) == set(db.series)
    t2 = [ld for ld in loadables if ld.name.endswith("\u2014 t2_tse_tra")]
    assert t2 and all(ld.name.startswith("T2w (90%)") for ld in t2)
    assert all(ld.confidence < 0.5 and not ld.selected for ld in loadables)
    sag = next(ld for ld in loadables if ld.name.endswith("\u2014 t2_tse_sag"))
    assert "low confidence" in sag.tooltip
    # a confirmed label shows as confirmed
    uid = t2[0].seqClassifierSeriesUID
    store.confirm(uid, "OTHER", user="rad")
    again = plugin.examineForImport([db.filesForSeries(uid)])
    assert [ld.name.split(" (")[0] for ld in again] == ["OTHER"] and "(confirmed)" in again[0].name


def test_plugin_load_tags_the_volume(release, db, tmp_path):
    from SeqClassifierSlicer import scene as sc
    from SeqClassifierSlicer.dicom_plugin import SeqClassifierDICOMPlugin

    class ScalarPlugin:  # DICOMScalarVolumePlugin: examineFiles + load (every release)
        def examineFiles(self, files):
            ld = standins.DICOMLoadable()
            ld.files, ld.selected, ld.confidence = files, True, 0.5
            return [ld]

        def load(self, loadable):
            return slicer.util.addVolumeFromArray(np.zeros((2, 4, 4), dtype=np.int16), name="raw")

    slicer.modules.dicomPlugins = {"DICOMScalarVolumePlugin": ScalarPlugin}
    store = _store_with_labels(tmp_path, db, {"t2_tse_tra": "T2w"})
    plugin = SeqClassifierDICOMPlugin()
    plugin.store = store
    se = next(s for s, fs in db.series.items() if db.fileValue(fs[0], "0008,103E") == "t2_tse_tra")
    loadable = plugin.examineForImport([db.filesForSeries(se)])[0]
    node = plugin.load(loadable)
    tags = sc.read_tags(node)
    assert tags[sc.ATTR_LABEL] == "T2w" and tags[sc.ATTR_SERIES_UID] == se
    assert node.GetName().startswith("T2w")


def _select(browser, db, level):
    manager = browser.dicomBrowser.dicomTableManager()
    patient = db.patients()[0]
    study = db.studiesForPatient(patient)[0]
    series = db.seriesForStudy(study)
    if level == "series":
        manager.patients, manager.studies, manager.series = [patient], [study], series[:2]
        return series[:2]
    if level == "study":
        manager.patients, manager.studies = [patient], [study]
        return series
    manager.patients = [patient]
    return [se for st in db.studiesForPatient(patient) for se in db.seriesForStudy(st)]


@pytest.mark.parametrize("level", ["series", "study", "patient"])
def test_browser_selection_on_every_release(release, db, level):
    from SeqClassifierSlicer import compat

    browser = standins.SlicerDICOMBrowser(release)
    assert compat.browser_selection(browser, db).series == []  # nothing selected
    expected = _select(browser, db, level)
    sel = compat.browser_selection(browser, db)
    assert sel.series == expected and sel.level == level and sel.available
    browser.toggleBrowsers(False)  # the flag now exists under this release's name
    assert compat.browser_selection(browser, db).series == expected


def test_visual_browser_selection(release, db):
    """The visual browser's selection is read on every release: 5.12's patientView, 5.8/5.10's
    patient tab -> study items -> selected cells of their series tables."""
    from SeqClassifierSlicer import compat

    browser = standins.SlicerDICOMBrowser(release)
    classic = _select(browser, db, "series")
    visual = browser.dicomVisualBrowser
    if release != "5.12":
        visual.show_patients(db)  # what toggleBrowsers does when the tabs are empty (5.8.1 l. 155)
    browser.toggleBrowsers(True)
    assert compat.browser_selection(browser, db).series == []  # nothing clicked in the visual browser
    patient = db.patients()[-1]
    study = db.studiesForPatient(patient)[0]
    wanted = db.seriesForStudy(study)[1:4]
    visual.select(wanted)
    sel = compat.browser_selection(browser, db)
    assert sel.available and sel.level == "series" and sorted(sel.series) == sorted(wanted)
    assert classic[0] not in sel.series
    browser.toggleBrowsers(False)  # back to the classic table
    assert compat.browser_selection(browser, db).series == classic
    assert compat.table_manager(browser) is browser.dicomBrowser.dicomTableManager()


def test_visual_browser_before_toggle_reads_the_classic_table(release, db):
    """The flag exists only once toggleBrowsers ran (DICOM.py calls it when the DICOM layout is
    shown, not on the dock-panel path): until then the classic table is what is shown and read."""
    from SeqClassifierSlicer import compat

    browser = standins.SlicerDICOMBrowser(release)
    classic = _select(browser, db, "series")
    if release != "5.12":
        browser.dicomVisualBrowser.show_patients(db)
    browser.dicomVisualBrowser.select(db.seriesForStudy(db.studiesForPatient(db.patients()[-1])[0])[:1])
    assert not compat.uses_visual_browser(browser)
    assert compat.browser_selection(browser, db).series == classic


def test_visual_browser_without_readable_widgets(release, db):
    from SeqClassifierSlicer import compat

    browser = standins.SlicerDICOMBrowser(release)
    browser.dicomVisualBrowser = object()  # neither patientView nor patientsTabWidget
    browser.toggleBrowsers(True)
    sel = compat.browser_selection(browser, db)
    assert not sel.available and "visual DICOM browser" in sel.note


def test_default_loading_prefers_the_volume_plugin(release, db, tmp_path):
    """DICOMUtils.loadSeriesByUID: selectHighestConfidenceLoadables + loadLoadables load each series
    once, by the volume plugin; SeqClassifier's loadables (confidence < 0.5) are offered, not chosen."""
    from SeqClassifierSlicer.dicom_plugin import SeqClassifierDICOMPlugin

    loaded = []

    class ScalarPlugin:
        loadType = "Scalar Volume"

        def examineFiles(self, files):
            ld = standins.DICOMLoadable()
            ld.files, ld.selected, ld.confidence, ld.name = files, True, 0.5, "scalar"
            return [ld]

        def examine(self, fileLists):
            return [ld for files in fileLists for ld in self.examineFiles(files)]

        def examineForImport(self, fileLists):
            return self.examine(fileLists)

        def load(self, loadable):
            loaded.append(("scalar", loadable.files[0]))
            return slicer.util.addVolumeFromArray(np.zeros((2, 4, 4), dtype=np.int16), name="raw")

    slicer.modules.dicomPlugins = {"DICOMScalarVolumePlugin": ScalarPlugin}
    ours = SeqClassifierDICOMPlugin()
    ours.store = _store_with_labels(tmp_path, db, {"t2_tse_tra": "T2w"})
    scalar = ScalarPlugin()
    uids = sorted(db.series)[:3]
    fileLists = [db.filesForSeries(u) for u in uids]
    byPlugin = {p: standins.get_loadables_from_file_lists(p, fileLists) for p in (scalar, ours)}
    assert len(byPlugin[ours]) == len(byPlugin[scalar]) == 3
    standins.select_highest_confidence_loadables(db, byPlugin)
    assert all(ld.selected for ld in byPlugin[scalar]) and not any(ld.selected for ld in byPlugin[ours])
    nodes = standins.load_loadables(byPlugin)
    assert len(nodes) == 3 and [k for k, _f in loaded] == ["scalar"] * 3
    # the user picks SeqClassifier's loadable instead: it loads (and tags) that series
    for ld in byPlugin[scalar]:
        ld.selected = False
    byPlugin[ours][0].selected = True
    nodes = standins.load_loadables(byPlugin)
    from SeqClassifierSlicer import scene as sc

    assert len(nodes) == 1 and sc.read_tags(nodes[0])[sc.ATTR_SERIES_UID] == uids[0]


def test_module_imports_and_registers_its_plugin(release):
    module = importlib.import_module("SeqClassifier")
    assert issubclass(module.SeqClassifierDICOMPlugin, sys.modules["DICOMLib"].DICOMPlugin)
    module.SeqClassifier(types.SimpleNamespace())
    assert slicer.modules.dicomPlugins["SeqClassifierDICOMPlugin"] is module.SeqClassifierDICOMPlugin
    assert len(open(module.__file__, encoding="utf-8").read().splitlines()) < 500
    # stored keys, translated texts shown
    from SeqClassifierSlicer.options import Preset, Source

    assert module.SeqClassifierParameterNode.source is Source.SCENE
    assert Source.SCENE.label() == "series loaded in the scene" and Preset.T2_DWI_ADC.name == "T2_DWI_ADC"


def _add_volume(scene, name, series_uid=None, instance_uids=None):
    from SeqClassifierSlicer import scene as sc

    node = slicer.util.addVolumeFromArray(np.zeros((2, 4, 4), dtype=np.int16), name=name)
    sh = sc.subject_hierarchy(scene)
    item = sc.item_for_node(node)
    if series_uid:  # what DICOMPlugin.addSeriesInSubjectHierarchy does
        sh.SetItemUID(item, "DICOM", series_uid)
    if instance_uids:  # what DICOMScalarVolumePlugin sets on the node
        node.SetAttribute("DICOM.instanceUIDs", " ".join(instance_uids))
    return node


def test_loaded_series_source_with_study_context(release, db, monkeypatch):
    from SeqClassifierSlicer import logic as logic_module
    from SeqClassifierSlicer import scene as sc
    from SeqClassifierSlicer.options import Source

    scene = slicer.mrmlScene
    patient = db.patients()[0]
    study = db.studiesForPatient(patient)[0]
    s1, s2 = db.seriesForStudy(study)[:2]
    n1 = _add_volume(scene, "a", series_uid=s1)
    f2 = db.filesForSeries(s2)
    n2 = _add_volume(scene, "b", instance_uids=[db.instanceForFile(f) for f in f2])
    _add_volume(scene, "computed map")
    logic = logic_module.ModuleLogic("/nonexistent")
    vols = {v.name: v for v in logic.loadedVolumes()}
    assert vols["a"].series_uid == s1 and vols["b"].series_uid == s2
    assert vols["computed map"].series_uid == "" and "not loaded from DICOM" in vols["computed map"].note

    calls = {}
    monkeypatch.setattr(logic, "classifyFiles", lambda files, *a, wanted=None, note="", **k: calls.update(
        files=files, wanted=wanted, note=note))
    logic.classifySource(Source.SCENE)
    assert calls["wanted"] == {s1, s2}
    assert set(calls["files"]) == set(db.seriesForStudy(study))  # the whole study, for context
    assert f"the other {len(db.seriesForStudy(study)) - 2} series of their studies" in calls["note"]
    assert "computed map" in calls["note"]
    assert logic.sceneNodeIDs == {s1: [n1.GetID()], s2: [n2.GetID()]}

    # confirming renames and tags the loaded node in place
    logic.session.rows = {}
    logic.setStore(LabelStore(slicer.app.temporaryPath + "/labels.json"))
    logic.confirmLabel(s1, "T2w", user="rad")
    tags = sc.read_tags(n1)
    assert n1.GetName().startswith("T2w") and tags[sc.ATTR_CONFIRMED] == "true" and tags[sc.ATTR_SERIES_UID] == s1


def test_browser_source_reads_the_study(release, db, monkeypatch):
    from SeqClassifierSlicer import logic as logic_module
    from SeqClassifierSlicer.options import Source

    browser = standins.SlicerDICOMBrowser(release)
    expected = _select(browser, db, "series")
    slicer.modules.DICOMInstance = types.SimpleNamespace(browserWidget=browser)
    logic = logic_module.ModuleLogic("/nonexistent")
    calls = {}
    monkeypatch.setattr(logic, "classifyFiles", lambda files, *a, wanted=None, note="", **k: calls.update(
        files=files, wanted=wanted))
    logic.classifySource(Source.BROWSER)
    assert calls["wanted"] == set(expected) and set(expected) < set(calls["files"])
    browser.dicomBrowser.dicomTableManager().patients = []
    browser.dicomBrowser.dicomTableManager().studies = []
    browser.dicomBrowser.dicomTableManager().series = []
    with pytest.raises(logic_module.InputError, match="Select series"):
        logic.classifySource(Source.BROWSER)


def test_database_source_hands_the_database_file_to_the_classifier(release, db, monkeypatch, tmp_path):
    """Every series of the database: the classifier process reads ctkDICOM.sql; no filesForSeries
    per series on the GUI thread (in-memory databases, without a file, still are listed here)."""
    from SeqClassifierSlicer import logic as logic_module
    from SeqClassifierSlicer.options import Source

    logic = logic_module.ModuleLogic("/nonexistent")
    calls = {}
    monkeypatch.setattr(logic, "classifyFiles", lambda files, *a, slicerDb=None, **k: calls.update(
        files=files, slicerDb=slicerDb))
    sql = tmp_path / "ctkDICOM.sql"
    sql.write_bytes(b"SQLite format 3\x00")
    monkeypatch.setattr(db, "databaseFilename", str(sql), raising=False)
    before = db.calls["filesForSeries"]
    logic.classifySource(Source.DATABASE)
    assert calls == {"files": [], "slicerDb": str(sql)} and db.calls["filesForSeries"] == before
    argv = logic.session.command([], "cpu", None, str(sql))
    assert argv[argv.index("--slicer-db") + 1] == str(sql)
    monkeypatch.setattr(db, "databaseFilename", "", raising=False)
    logic.classifySource(Source.DATABASE)
    assert calls["slicerDb"] is None and set(calls["files"]) == set(db.series)


def test_study_context_reads_each_series_once(release, db, monkeypatch):
    from SeqClassifierSlicer import logic as logic_module
    from SeqClassifierSlicer.options import Source

    logic = logic_module.ModuleLogic("/nonexistent")
    monkeypatch.setattr(logic, "classifyFiles", lambda *a, **k: None)
    study = db.studiesForPatient(db.patients()[0])[0]
    series = db.seriesForStudy(study)
    before = db.calls["filesForSeries"]
    logic.classifySource(Source.BROWSER, seriesUIDs=series[:3])  # three series of one study
    assert db.calls["filesForSeries"] - before == len(series)  # each sibling once, not once per wanted
    logic.classifySource(Source.BROWSER, seriesUIDs=series[1:2])
    assert db.calls["filesForSeries"] - before == len(series)  # known files are not asked again
