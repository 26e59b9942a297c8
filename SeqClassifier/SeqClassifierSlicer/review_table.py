"""The panel's review table: its rows kept by SeriesInstanceUID, updated one row at a time.

The Qt module (Slicer's PythonQt ``qt``: properties are attributes, e.g. ``table.rowCount``) and
the QTableWidget are passed in, so this file imports no Qt and the project's stand-in table tests
it.  Work per event is O(rows changed): a new result set builds the table (one label combo box
per row); a label edit updates that row's cells in place (or removes the row when the label
filter no longer shows it); a thumbnail tick finds its row in the ``uid -> row`` index.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from SeqClassifierLib.labels import CLASS_NAMES

from . import review

# Predicted label, confidence, the editable label and Load first: they stay visible in a narrow module
# panel without scrolling sideways; the long texts (description, group, review reasons) follow.
COL_THUMB, COL_NUMBER, COL_PREDICTED, COL_CONFIDENCE, COL_LABEL, COL_LOAD, COL_DESCRIPTION, COL_PLANE, COL_GROUP, \
    COL_REVIEW = range(10)
#: Widths (px) of the columns that must be seen without scrolling: together they fit a module panel
#: of 450 px (Slicer's default module panel is wider).  The others keep Qt's default; Review stretches.
COLUMN_WIDTHS = {COL_THUMB: 72, COL_NUMBER: 36, COL_PREDICTED: 78, COL_CONFIDENCE: 82, COL_LABEL: 92, COL_LOAD: 44}


class ReviewTable:
    """``on_label(uid, text)`` is called when the user picks a label in a row's combo box;
    ``tr`` translates shown texts."""

    def __init__(self, qt: Any, table: Any, on_label: Callable[[str, str], None],
                 tr: Callable[[str], str] = lambda text: text):
        self.qt = qt
        self.table = table
        self.on_label = on_label
        self.tr = tr
        #: SeriesInstanceUID of each shown row, in order, and its row number.
        self.uids: list[str] = []
        self.row_of: dict[str, int] = {}
        self.updating = False

    def layout_columns(self) -> None:
        """The first columns at :data:`COLUMN_WIDTHS`, the last (review reasons) stretched."""
        for col, width in COLUMN_WIDTHS.items():
            self.table.setColumnWidth(col, width)
        self.table.horizontalHeader().setStretchLastSection(True)

    # -- building --------------------------------------------------------------------------------
    def fill(self, rows: Iterable[review.ReviewRow]) -> None:
        """Show these rows (a new result set); keeps the Load ticks of series still shown."""
        rows = list(rows)
        checked = set(self.checked())
        self.updating = True
        try:
            self.table.setRowCount(len(rows))
            for i, row in enumerate(rows):
                self._fill_row(i, row, row.series_uid in checked)
        finally:
            self.updating = False
        self.uids = [r.series_uid for r in rows]
        self._reindex()

    def _reindex(self) -> None:
        self.row_of = {uid: i for i, uid in enumerate(self.uids)}

    def _item(self, text: str, uid: Optional[str] = None, tooltip: str = ""):
        qt = self.qt
        item = qt.QTableWidgetItem(text)
        item.setFlags(qt.Qt.ItemIsEnabled | qt.Qt.ItemIsSelectable)
        if uid is not None:
            item.setData(qt.Qt.UserRole, uid)
        if tooltip:
            item.setToolTip(tooltip)
        return item

    def _fill_row(self, i: int, row: review.ReviewRow, checked: bool) -> None:
        qt, table = self.qt, self.table
        table.setItem(i, COL_THUMB, self._item("", row.series_uid))
        table.setItem(i, COL_NUMBER, self._item("" if row.series_number is None else str(row.series_number)))
        table.setItem(i, COL_DESCRIPTION, self._item(row.description, tooltip=f"{row.description}\n{row.folder}"))
        table.setItem(i, COL_PLANE, self._item(row.plane))
        table.setItem(i, COL_GROUP, self._item(row.group, tooltip=row.group))
        self._fill_state(i, row)
        combo = qt.QComboBox()
        combo.addItems([""] + list(CLASS_NAMES))
        combo.setCurrentText(row.label or "")
        combo.setToolTip(self.tr("Pick the right label: it is recorded as confirmed."))
        combo.currentTextChanged.connect(lambda text, uid=row.series_uid: self._label_picked(uid, text))
        table.setCellWidget(i, COL_LABEL, combo)
        load = self._item("", row.series_uid)
        load.setFlags(qt.Qt.ItemIsEnabled | qt.Qt.ItemIsUserCheckable)
        load.setCheckState(qt.Qt.Checked if checked else qt.Qt.Unchecked)
        table.setItem(i, COL_LOAD, load)

    def _fill_state(self, i: int, row: review.ReviewRow) -> None:
        """The cells that change when a label is confirmed: predicted, confidence, review."""
        qt, table = self.qt, self.table
        table.setItem(i, COL_PREDICTED, self._item(row.predicted_label or self.tr("none")))
        confidence = self._item(review.format_confidence(row.confidence), tooltip="\n".join(
            f"{k}: {v:.3f}" for k, v in row.probabilities.items() if v is not None))
        confidence.setBackground(qt.QBrush(qt.QColor(review.confidence_color(row.confidence, row.needs_review))))
        confidence.setForeground(qt.QBrush(qt.QColor("white")))
        table.setItem(i, COL_CONFIDENCE, confidence)
        table.setItem(i, COL_REVIEW, self._item(review.review_text(row), tooltip=review.review_tooltip(row)))

    def _label_picked(self, uid: str, text: str) -> None:
        if not self.updating:
            self.on_label(uid, text)

    # -- one row ---------------------------------------------------------------------------------
    def update_row(self, row: review.ReviewRow) -> bool:
        """Show ``row``'s new state in its own cells (no other row is touched); False if not shown."""
        i = self.row_of.get(row.series_uid)
        if i is None:
            return False
        self.updating = True
        try:
            self._fill_state(i, row)
            combo = self.table.cellWidget(i, COL_LABEL)
            if combo is not None and combo.currentText != (row.label or ""):
                combo.blockSignals(True)
                combo.setCurrentText(row.label or "")
                combo.blockSignals(False)
        finally:
            self.updating = False
        return True

    def remove_row(self, uid: str) -> None:
        """Drop one row (its label no longer passes the filter)."""
        i = self.row_of.get(uid)
        if i is None:
            return
        self.table.removeRow(i)
        del self.uids[i]
        self._reindex()

    def set_thumbnail(self, uid: str, icon_of: Callable[[Any], Any], pixels: Any) -> bool:
        i = self.row_of.get(uid)
        item = self.table.item(i, COL_THUMB) if i is not None else None
        if item is None:
            return False
        item.setIcon(icon_of(pixels))
        return True

    # -- Load column -----------------------------------------------------------------------------
    def checked(self) -> list[str]:
        qt = self.qt
        out = []
        for i, uid in enumerate(self.uids):
            item = self.table.item(i, COL_LOAD)
            if item is not None and item.checkState() == qt.Qt.Checked:
                out.append(uid)
        return out

    def check_only(self, chosen: Iterable[str]) -> None:
        qt, chosen = self.qt, set(chosen)
        for i, uid in enumerate(self.uids):
            item = self.table.item(i, COL_LOAD)
            if item is not None:
                item.setCheckState(qt.Qt.Checked if uid in chosen else qt.Qt.Unchecked)
