"""What the panel does on Slicer's GUI thread stays O(rows changed) and never waits for a lock.

* ReviewTable (review_table.py) over a stand-in of PythonQt's QTableWidget that counts the widgets
  and items it is given: a label edit touches one row, a thumbnail finds its row by index.
* ClassificationSession with ``writes.wait = False`` over a real LabelStore whose lock another
  process holds (a child that takes the same ``flock``): the confirmation is queued, shown at once,
  and saved by ``flush`` once the lock is free.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types

import pytest

from SeqClassifierLib.curation.label_store import LabelStore
from SeqClassifierLib.records import ResultRow
from SeqClassifierSlicer import review, review_table
from SeqClassifierSlicer.session import ClassificationSession, row_shown


# ---- PythonQt stand-ins (properties are attributes, as in Slicer) ------------------------------------
class _Signal:
    def __init__(self):
        self.slots = []

    def connect(self, slot):
        self.slots.append(slot)

    def emit(self, *args):
        for slot in self.slots:
            slot(*args)


class _Combo:
    created = 0

    def __init__(self):
        _Combo.created += 1
        self.items, self.currentText, self.blocked = [], "", False
        self.currentTextChanged = _Signal()

    def addItems(self, items):
        self.items += items

    def setCurrentText(self, text):
        if text != self.currentText:
            self.currentText = text
            if not self.blocked:
                self.currentTextChanged.emit(text)

    def setToolTip(self, text):
        pass

    def blockSignals(self, on):
        self.blocked = on

    def pick(self, text):  # what the user does
        self.setCurrentText(text)


class _Item:
    def __init__(self, text=""):
        self.text, self.data_, self.check, self.icon = text, {}, None, None

    def setFlags(self, f):
        pass

    def setData(self, role, value):
        self.data_[role] = value

    def data(self, role):
        return self.data_.get(role)

    def setToolTip(self, t):
        pass

    def setBackground(self, b):
        pass

    def setForeground(self, b):
        pass

    def setCheckState(self, s):
        self.check = s

    def checkState(self):
        return self.check

    def setIcon(self, icon):
        self.icon = icon


class _Table:
    def __init__(self):
        self.cells, self.widgets, self.rowCount = {}, {}, 0
        self.set_items = 0

    def setRowCount(self, n):
        self.rowCount = n

    def setItem(self, r, c, item):
        self.set_items += 1
        self.cells[r, c] = item

    def item(self, r, c):
        return self.cells.get((r, c))

    def setCellWidget(self, r, c, w):
        self.widgets[r, c] = w

    def cellWidget(self, r, c):
        return self.widgets.get((r, c))

    def removeRow(self, r):
        shift = lambda d: {((i - 1 if i > r else i), c): v for (i, c), v in d.items() if i != r}  # noqa: E731
        self.cells, self.widgets, self.rowCount = shift(self.cells), shift(self.widgets), self.rowCount - 1


qt = types.SimpleNamespace(
    QTableWidgetItem=_Item, QComboBox=_Combo, QBrush=lambda c: c, QColor=lambda c: c,
    Qt=types.SimpleNamespace(ItemIsEnabled=1, ItemIsSelectable=2, ItemIsUserCheckable=4, UserRole=32,
                             Checked=2, Unchecked=0))


def _rows(n):
    return [review.ReviewRow.from_result_row(ResultRow(series_uid=f"1.2.{i}", label="T2w" if i % 2 else "DWI",
                                                       confidence=0.9, model="m@1", description=f"s{i}"))
            for i in range(n)]


def test_a_label_edit_touches_one_row():
    picked = []
    table = _Table()
    view = review_table.ReviewTable(qt, table, lambda uid, text: picked.append((uid, text)))
    rows = _rows(200)
    view.fill(rows)
    assert _Combo.created >= 200 and table.rowCount == 200 and picked == []  # filling emits nothing
    combos, items = _Combo.created, table.set_items
    combo = table.cellWidget(57, review_table.COL_LABEL)
    combo.pick("ADC")
    assert picked == [("1.2.57", "ADC")]
    rows[57].confirmed_label = "ADC"
    assert view.update_row(rows[57])
    assert _Combo.created == combos  # no new combo box
    assert table.set_items - items == 3  # predicted, confidence, review of that row only
    assert picked == [("1.2.57", "ADC")]  # updating the row does not emit again
    # under the filter "T2w,ADC" (the 100 odd rows), row 57 is relabelled DWI: only that row leaves
    view.fill([r for r in rows if row_shown(r, "T2w,ADC")])
    assert table.rowCount == 100
    rows[57].confirmed_label = "DWI"
    assert not row_shown(rows[57], "T2w,ADC")
    view.remove_row("1.2.57")
    assert "1.2.57" not in view.row_of and table.rowCount == 99 and len(view.uids) == 99
    assert table.item(view.row_of["1.2.59"], review_table.COL_THUMB).data(32) == "1.2.59"


def test_thumbnail_and_load_ticks_by_index():
    table = _Table()
    view = review_table.ReviewTable(qt, table, lambda *a: None)
    view.fill(_rows(50))
    assert view.set_thumbnail("1.2.40", lambda px: ("icon", px), "pixels")
    assert table.item(40, review_table.COL_THUMB).icon == ("icon", "pixels")
    assert not view.set_thumbnail("9.9", lambda px: px, None)
    view.check_only({"1.2.3", "1.2.7"})
    assert view.checked() == ["1.2.3", "1.2.7"]
    view.fill(_rows(10)[::-1])  # a new result set keeps the ticks of series still shown
    assert sorted(view.checked()) == ["1.2.3", "1.2.7"]


HOLD = textwrap.dedent("""
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("locked", flush=True)
    sys.stdin.readline()
""")


@pytest.mark.skipif(sys.platform == "win32", reason="the holder takes a POSIX flock")
def test_a_locked_store_never_blocks_and_is_saved_later(tmp_path):
    store = LabelStore(tmp_path / "labels.json")
    session = ClassificationSession(store)
    session.writes.wait = False
    row = ResultRow(series_uid="1.2.3", label="T2w", confidence=0.6, model="m@1", description="t2")
    store.record_predictions([row])
    session.rows = {row.key: review.ReviewRow.from_result_row(row, store.get("1.2.3"))}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(store.lock_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        store.lock_timeout = 30.0  # what a waiting write would wait for
        entry = session.confirm_label("1.2.3", "ADC", user="rad")
        assert entry.confirmed_label == "ADC" and session.row_of("1.2.3").label == "ADC"  # shown at once
        assert store.lock_timeout == 30.0 and store.get("1.2.3").confirmed_label is None  # not written yet
        assert session.writes.pending and "locked by another program" in session.writes.waiting_text()
        assert session.label_of("1.2.3") == "ADC"
        n, left_out = session.confirm_all(["1.2.3"], user="rad")  # queued behind, in order
        assert (n, left_out) == (1, 0) and len(session.writes.pending) == 2
        assert session.writes.flush() == 2  # still locked: one try each, nothing waited for
    finally:
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait()
    assert session.writes.flush() == 0 and not session.writes.provisional
    saved = store.get("1.2.3")
    assert saved.confirmed_label == "ADC" and saved.confirmed_by == "rad"


def test_scripts_still_wait_for_the_lock(tmp_path):
    store = LabelStore(tmp_path / "labels.json")
    session = ClassificationSession(store)  # writes.wait stays True outside the panel
    entry = session.confirm_label("1.2.9", "DCE", user="rad")
    assert entry.confirmed_label == "DCE" and store.get("1.2.9").confirmed_label == "DCE"
    assert not session.writes.pending


def test_a_long_file_list_becomes_folders_without_asking_the_disk(tmp_path, monkeypatch):
    """Past MAX_ARGV_CHARS the database's files are passed as their folders; files listed by the
    database are known to be files, so no file is stat'ed on the GUI thread."""
    from SeqClassifierSlicer import session as session_module

    started = {}

    class Process:
        def __init__(self, argv, env=None, success_codes=()):
            started["argv"] = argv

        def start(self):
            return self

    monkeypatch.setattr(session_module, "BackgroundProcess", Process)
    stats = []
    real_isfile = session_module.os.path.isfile
    monkeypatch.setattr(session_module.os.path, "isfile", lambda p: stats.append(p) or real_isfile(p))
    files = {f"1.2.{s}": [f"/db/dicom/series{s:03d}/{'x' * 40}{i:04d}.dcm" for i in range(100)] for s in range(10)}
    assert sum(len(f) + 1 for fs in files.values() for f in fs) > session_module.MAX_ARGV_CHARS
    session = ClassificationSession(LabelStore(tmp_path / "labels.json"))
    session.start(files)
    argv = started["argv"]
    folders = argv[argv.index("classify") + 1:argv.index("--format")]
    assert folders == [f"/db/dicom/series{s:03d}" for s in range(10)] and stats == []
