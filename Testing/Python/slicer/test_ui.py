"""Resources/UI/SeqClassifier.ui loads (PySide6, offscreen) and has every widget SeqClassifier.py uses.

Slicer/CTK classes (qMRMLWidget, ctkCollapsibleButton, ctkPathLineEdit) are
unknown to QUiLoader: the XML is rewritten to use the Qt class each one
``<extends>`` (from ``<customwidgets>``) before loading.  SeqClassifier.py is
parsed with ``ast`` (it needs Slicer to import) to find every ``self.ui.<name>``
and every parameter of the ``@parameterNodeWrapper`` class.
"""

from __future__ import annotations

import ast
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
UI_FILE = REPO / "SeqClassifier" / "Resources" / "UI" / "SeqClassifier.ui"
MODULE_FILE = REPO / "SeqClassifier" / "SeqClassifier.py"


def _qt_only_ui(path: Path) -> bytes:
    """The .ui with custom classes replaced by their Qt base classes and no <customwidgets>."""
    tree = ET.parse(path)
    root = tree.getroot()
    base = {}
    custom = root.find("customwidgets")
    if custom is not None:
        for cw in custom.findall("customwidget"):
            base[cw.findtext("class")] = cw.findtext("extends") or "QWidget"
        root.remove(custom)
    for widget in root.iter("widget"):
        cls = widget.get("class")
        while cls in base:  # a custom class may extend another custom class
            cls = base[cls]
        widget.set("class", cls)
    return ET.tostring(root, encoding="utf-8")


def _ui_names_used_by_module() -> set[str]:
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and node.value.attr == "ui" and isinstance(node.value.value, ast.Name)
                and node.value.value.id in ("self", "widget")):
            names.add(node.attr)
    return names


def _parameter_names() -> set[str]:
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
                isinstance(d, ast.Name) and d.id == "parameterNodeWrapper" for d in node.decorator_list):
            return {s.target.id for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError("no @parameterNodeWrapper class in SeqClassifier.py")


@pytest.fixture(scope="module")
def loaded_ui():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    pytest.importorskip("PySide6.QtUiTools", reason="PySide6 is not installed")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtUiTools import QUiLoader
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    buffer = QBuffer()
    buffer.setData(QByteArray(_qt_only_ui(UI_FILE)))
    buffer.open(QIODevice.ReadOnly)
    loader = QUiLoader()
    widget = loader.load(buffer)
    assert widget is not None, loader.errorString()
    yield widget
    widget.deleteLater()
    app.processEvents()


def test_ui_xml_is_valid_and_declares_custom_widgets():
    root = ET.parse(UI_FILE).getroot()
    assert root.tag == "ui" and root.findtext("class") == "SeqClassifier"
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "SeqClassifier"
    declared = {cw.findtext("class") for cw in root.find("customwidgets")}
    used = {w.get("class") for w in root.iter("widget")}
    qt_classes = {c for c in used if c.startswith("Q")}
    assert used - qt_classes <= declared  # every Slicer/CTK class is declared with its base class
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names)), "duplicate object names"


def test_every_ui_name_used_by_the_module_exists(loaded_ui):
    from PySide6.QtCore import QObject

    used = _ui_names_used_by_module()
    assert {"classifyButton", "seriesTable", "progressBar", "cancelButton", "loadButton", "exportButton",
            "confirmAllButton", "modelStatusLabel"} <= used
    missing = sorted(n for n in used if loaded_ui.findChild(QObject, n) is None)
    assert missing == [], f"SeqClassifier.py uses self.ui.{missing} not in {UI_FILE.name}"


def test_parameter_widgets_match_the_parameter_node(loaded_ui):
    from PySide6.QtWidgets import QWidget

    bound = {}
    for w in loaded_ui.findChildren(QWidget):
        name = w.property("SlicerParameterName")
        if name:
            bound[name] = w.objectName()
    params = _parameter_names()
    assert set(bound) <= params, f"widgets bound to unknown parameters: {set(bound) - params}"
    assert {"device", "modelPath", "source", "inputFolder", "preset", "onlyLabels", "reviewer",
            "exportConfirmedOnly"} <= set(bound)
    assert bound["device"] == "deviceComboBox" and bound["modelPath"] == "modelPathLineEdit"


def test_review_table_columns(loaded_ui):
    from PySide6.QtWidgets import QTableWidget

    table = loaded_ui.findChild(QTableWidget, "seriesTable")
    headers = [table.horizontalHeaderItem(i).text() for i in range(table.columnCount())]
    assert headers == ["Image", "#", "Predicted", "Confidence", "Label", "Load", "Description", "Plane", "Group",
                       "Review"]
    # the table's column constants follow the same order
    tree = ast.parse((REPO / "SeqClassifier" / "SeqClassifierSlicer" / "review_table.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Tuple):
            cols = [t.id for t in node.targets[0].elts]
            if cols and cols[0] == "COL_THUMB":
                assert len(cols) == len(headers)
                break
    else:
        raise AssertionError("column constants not found")


def test_label_and_confidence_visible_without_scrolling(loaded_ui):
    """In a 450 px wide panel the predicted label, confidence, editable label and Load columns are on screen."""
    from PySide6.QtWidgets import QTableWidget

    from SeqClassifierSlicer import review_table as rt

    table = loaded_ui.findChild(QTableWidget, "seriesTable")
    view = rt.ReviewTable(None, table, lambda *a: None)
    view.layout_columns()
    table.resize(450, 300)
    right = max(table.columnViewportPosition(c) + table.columnWidth(c)
                for c in (rt.COL_PREDICTED, rt.COL_CONFIDENCE, rt.COL_LABEL, rt.COL_LOAD))
    assert right <= 450 - table.verticalHeader().width() - 20  # room for the vertical header and a scroll bar
    assert max(rt.COLUMN_WIDTHS) < rt.COL_DESCRIPTION and table.horizontalHeader().stretchLastSection()


def test_buttons_have_text(loaded_ui):
    from PySide6.QtWidgets import QPushButton

    texts = {b.objectName(): b.text() for b in loaded_ui.findChildren(QPushButton)}
    assert texts["classifyButton"] == "Classify" and texts["cancelButton"] == "Cancel"
    assert texts["confirmAllButton"] == "Confirm all shown" and texts["loadButton"] == "Load checked"
    assert texts["exportButton"].startswith("Export labels")


def test_resources_exist():
    from PIL import Image

    icon = REPO / "SeqClassifier" / "Resources" / "Icons" / "SeqClassifier.png"
    with Image.open(icon) as im:
        assert im.size == (128, 128)
    from packaging.requirements import Requirement

    resources = REPO / "SeqClassifier" / "Resources"

    def reqs(name):
        lines = [l.split("#", 1)[0].strip() for l in (resources / name).read_text().splitlines()]
        return [Requirement(l) for l in lines if l]

    base = reqs("requirements.txt")
    # the shipped model (compact_cnn) needs neither timm, open_clip_torch nor tqdm
    assert {r.name for r in base} == {"pydicom", "numpy", "safetensors"}
    assert {r.name for r in reqs("requirements-timm.txt")} == {"timm"}
    assert {r.name for r in reqs("requirements-open_clip.txt")} == {"timm", "open_clip_torch"}
    every = base + reqs("requirements-timm.txt") + reqs("requirements-open_clip.txt")
    assert all(r.specifier and not any(s.operator == "==" for s in r.specifier) for r in every)
    assert not any(r.name in ("torch", "tqdm") for r in every)
    # each base package has one line for Python 3.9 (Slicer 5.8) and one for 3.10+ (5.10, 5.12)
    for python in ("3.9", "3.12"):
        names = [r.name for r in base if r.marker is None or r.marker.evaluate({"python_version": python})]
        assert sorted(names) == ["numpy", "pydicom", "safetensors"], python
    # every requirements file is installed with the extension
    cmake = (REPO / "SeqClassifier" / "CMakeLists.txt").read_text()
    assert all(f"Resources/{p.name}" in cmake for p in resources.glob("requirements*.txt"))
