"""Render the review panel for the README: the real .ui, filled with real predictions.

No Slicer application runs where this project is built, so this loads
Resources/UI/SeqClassifier.ui with PySide6 (Slicer/CTK classes replaced by
their Qt base classes, as in Testing/Python/test_ui.py), classifies a study
with the library, fills the review table the way the module widget does
(SeqClassifierSlicer.review: rows, colours, presets, thumbnails) and saves a
PNG.  Usage:

    QT_QPA_PLATFORM=offscreen .venv/bin/python Testing/ui/render_panel.py STUDY_FOLDER OUT.png
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "SeqClassifier"), str(REPO / "Testing" / "Python"), str(REPO / "Testing" / "Python" / "slicer")]


def main(study: str, out: str) -> None:
    from PySide6.QtCore import QBuffer, QByteArray, Qt
    from PySide6.QtGui import QColor, QIcon, QImage, QPixmap
    from PySide6.QtUiTools import QUiLoader
    from PySide6.QtWidgets import QApplication, QCheckBox, QComboBox, QTableWidgetItem, QWidget, QHBoxLayout

    from SeqClassifierLib.labels import CLASS_NAMES
    from SeqClassifierSlicer.options import Preset, Source
    from SeqClassifierLib.app.output import make_row
    from SeqClassifierLib.model.classifier import Classifier
    from SeqClassifierLib.inputs.image import load_center_slice
    from SeqClassifierLib.dicom.discovery import discover_series
    from SeqClassifierSlicer import review
    from SeqClassifierSlicer.review_table import (COL_CONFIDENCE, COL_DESCRIPTION, COL_GROUP, COL_LABEL, COL_LOAD,
                                                 COL_NUMBER, COL_PLANE, COL_PREDICTED, COL_REVIEW, COL_THUMB)
    from test_ui import _qt_only_ui

    app = QApplication.instance() or QApplication([])
    buf = QBuffer()
    buf.setData(QByteArray(_qt_only_ui(REPO / "SeqClassifier" / "Resources" / "UI" / "SeqClassifier.ui")))
    buf.open(QBuffer.ReadOnly)
    panel = QUiLoader().load(buf)
    ui = {w.objectName(): w for w in panel.findChildren(QWidget)}

    disc = discover_series(study)
    clf = Classifier(device="cpu")
    preds = clf.classify(disc.series)
    rows = [review.ReviewRow.from_result_row(make_row(r, p)) for r, p in zip(disc.series, preds)]
    checked = review.select_preset(rows, review.PRESET_AXIAL_T2_HIGHB_DWI_ADC)

    # What the parameter node shows (connectGui fills the combo boxes from the Choice lists).
    ui["sourceComboBox"].addItems([s.label() for s in Source])
    ui["sourceComboBox"].setCurrentIndex(list(Source).index(Source.FOLDER))
    ui["deviceComboBox"].addItems(["auto", "cpu", "cuda"])
    ui["presetComboBox"].addItems([p.label() for p in Preset])
    ui["inputFolderPathLineEdit"].setText(study) if hasattr(ui["inputFolderPathLineEdit"], "setText") else None
    ui["modelPathLineEdit"].setText("(default) " + clf.model_name) if hasattr(ui["modelPathLineEdit"], "setText") else None
    ui["labelStorePathLabel"].setText("~/.local/share/SeqClassifier/labels.json")
    ui["progressBar"].setValue(100)
    ui["statusLabel"].setText(f"Classified {len(rows)} series from {disc.n_files} files.")
    ui["modelStatusLabel"].setText(review.status_text(rows, clf.is_trained, len(disc.skipped)))
    table = ui["seriesTable"]
    table.setRowCount(len(rows))
    table.setIconSize(table.iconSize().__class__(48, 48))
    for i, (row, rec) in enumerate(zip(rows, disc.series)):
        thumb = review.thumbnail_uint8(load_center_slice(rec), 48)
        qimg = QImage(thumb.tobytes(), thumb.shape[1], thumb.shape[0], thumb.shape[1], QImage.Format_Grayscale8)
        item = QTableWidgetItem()
        item.setIcon(QIcon(QPixmap.fromImage(qimg.copy())))
        table.setItem(i, COL_THUMB, item)
        table.setItem(i, COL_NUMBER, QTableWidgetItem(str(row.series_number)))
        table.setItem(i, COL_DESCRIPTION, QTableWidgetItem(row.description))
        table.setItem(i, COL_PLANE, QTableWidgetItem(row.plane))
        table.setItem(i, COL_GROUP, QTableWidgetItem(row.group))
        table.setItem(i, COL_PREDICTED, QTableWidgetItem(row.predicted_label or ""))
        conf = QTableWidgetItem(review.format_confidence(row.confidence))
        conf.setForeground(QColor(review.confidence_color(row.confidence, row.needs_review)))
        table.setItem(i, COL_CONFIDENCE, conf)
        reasons = QTableWidgetItem(review.review_text(row))
        reasons.setToolTip(review.review_tooltip(row))
        table.setItem(i, COL_REVIEW, reasons)
        combo = QComboBox()
        combo.addItems(list(CLASS_NAMES))
        combo.setCurrentText(row.label or "")
        table.setCellWidget(i, COL_LABEL, combo)
        box = QCheckBox()
        box.setChecked(row.series_uid in checked)
        holder = QWidget()
        lay = QHBoxLayout(holder)
        lay.addWidget(box)
        lay.setAlignment(Qt.AlignCenter)
        lay.setContentsMargins(0, 0, 0, 0)
        table.setCellWidget(i, COL_LOAD, holder)
        table.setRowHeight(i, 52)
    table.resizeColumnsToContents()
    table.setColumnWidth(COL_DESCRIPTION, 230)
    panel.resize(820, 670)
    panel.grab().save(out)
    print(f"wrote {out}: {len(rows)} series, preset checks {len(checked)}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
