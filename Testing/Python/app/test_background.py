"""BackgroundProcess: JSON-lines events from a child process, states, cancel, failure message."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time

import pytest

from SeqClassifierLib.app.background import BackgroundProcess, State, parse_line, run_events

CHILD = textwrap.dedent(r"""
    import json, sys, time
    mode = sys.argv[1]
    def emit(obj):
        print(json.dumps(obj), flush=True)
    emit({"type": "progress", "stage": "discover", "done": 0, "total": 2})
    print("a plain log line", flush=True)
    emit({"type": "series", "row": {"series_uid": "1.2", "label": "T2w", "confidence": 0.9}})
    emit({"type": "skipped", "path": "/x/readme.txt", "reason": "not DICOM"})
    if mode == "slow":
        sys.stdout.flush()
        time.sleep(60)
    if mode == "stubborn":
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
        time.sleep(60)
    if mode == "fail":
        print("Traceback: something broke", file=sys.stderr, flush=True)
        sys.exit(1)
    emit({"type": "summary", "n_series": 1, "n_skipped": 1, "exit_code": 2})
    sys.exit(2 if mode == "skipped" else 0)
""")


@pytest.fixture()
def child(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return [sys.executable, "-u", str(script)]


def _drain(proc: BackgroundProcess, timeout: float = 20.0) -> list[dict]:
    events, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        events += proc.poll()
        if proc.state.finished:
            return events
        time.sleep(0.02)
    raise AssertionError(f"still {proc.state} after {timeout} s")


def test_parse_line():
    assert parse_line('{"type": "progress", "done": 1}\n') == {"type": "progress", "done": 1}
    assert parse_line('{"a": 1}') == {"a": 1, "type": "data"}
    assert parse_line("hello\n") == {"type": "log", "text": "hello"}
    assert parse_line("{broken") == {"type": "log", "text": "{broken"}
    assert parse_line("[1, 2]") == {"type": "log", "text": "[1, 2]"}


def test_events_and_completion_by_polling(child):
    proc = BackgroundProcess(child + ["ok"])
    assert proc.state is State.IDLE
    proc.start()
    assert proc.state is State.RUNNING
    events = _drain(proc)
    types = [e["type"] for e in events]
    assert types == ["progress", "log", "series", "skipped", "summary", "finished"]
    assert events[1]["text"] == "a plain log line"
    assert events[2]["row"]["label"] == "T2w"
    assert events[-1] == {"type": "finished", "state": "completed", "returncode": 0, "message": ""}
    assert proc.state is State.COMPLETED and proc.returncode == 0
    assert proc.poll() == []


def test_success_codes_and_blocking_wait(child):
    seen = []
    proc = run_events(child + ["skipped"], on_event=seen.append, success_codes=(0, 2, 3))
    assert proc.state is State.COMPLETED and proc.returncode == 2
    assert seen[-1]["type"] == "finished" and [e["type"] for e in seen].count("series") == 1

    strict = BackgroundProcess(child + ["skipped"]).start()
    assert strict.wait(timeout=20) is State.FAILED  # 2 is a failure unless declared a success
    assert [e["type"] for e in strict.poll()][-1] == "finished"  # events were kept for poll()


def test_failure_message_from_stderr(child):
    proc = BackgroundProcess(child + ["fail"]).start()
    events = _drain(proc)
    assert proc.state is State.FAILED and proc.returncode == 1
    assert "exited with code 1" in proc.message and "something broke" in proc.message
    assert events[-1]["state"] == "failed" and "something broke" in proc.stderr_text


def test_cannot_start():
    proc = BackgroundProcess(["/nonexistent/definitely-not-a-program"]).start()
    events = proc.poll()
    assert proc.state is State.FAILED and "cannot start" in proc.message
    assert events[-1]["type"] == "finished"


def test_cancel_terminates(child):
    proc = BackgroundProcess(child + ["slow"]).start()
    seen = []
    deadline = time.monotonic() + 20
    while not any(e["type"] == "skipped" for e in seen) and time.monotonic() < deadline:
        seen += proc.poll()
        time.sleep(0.02)
    proc.cancel()
    seen += _drain(proc)
    assert proc.state is State.CANCELLED
    assert seen[-1]["state"] == "cancelled"
    assert proc.proc.poll() is not None
    if os.name != "nt":  # ended by the SIGTERM (it would sleep 60 s), not by a kill after the grace period
        assert proc.returncode == -signal.SIGTERM


@pytest.mark.skipif(os.name == "nt", reason="SIGTERM cannot be ignored the same way on Windows")
def test_cancel_kills_after_grace_period(child):
    proc = BackgroundProcess(child + ["stubborn"], grace_period=0.5).start()
    deadline = time.monotonic() + 20
    seen = []
    while not any(e.get("text") == "ignoring SIGTERM" for e in seen) and time.monotonic() < deadline:
        seen += proc.poll()
        time.sleep(0.02)
    proc.cancel()
    assert proc.wait(timeout=10) is State.CANCELLED
    assert proc.returncode == -signal.SIGKILL  # SIGTERM was ignored: the kill after the grace period ended it


def test_start_twice_refused(child):
    proc = BackgroundProcess(child + ["ok"]).start()
    with pytest.raises(RuntimeError):
        proc.start()
    proc.wait(timeout=20)


# ---- the module's classification session (SeqClassifierSlicer.session, no Slicer) ----------------

FAKE_CLASSIFIER = textwrap.dedent(r"""
    import json, sys
    mode = sys.argv[1]
    rows = [("1.4", 4, "t2_tse_tra", "axial", "T2w", 0.98, False, []),
            ("1.6", 6, "ep2d_diff", "axial", "DWI", 0.91, False, [50, 400, 800]),
            ("1.8", 8, "ep2d_diff_calc", "axial", "DWI", 0.62, True, [1400]),
            ("1.7", 7, "ep2d_adc", "axial", "ADC", 0.99, False, [])]
    for i, _ in enumerate(rows):
        print(json.dumps({"type": "progress", "stage": "classify", "done": i + 1, "total": len(rows)}), flush=True)
    if mode == "fail":
        print("RuntimeError: model file is damaged", file=sys.stderr)
        sys.exit(1)
    for uid, n, desc, plane, label, conf, review, b in rows:
        print(json.dumps({"type": "series", "row": {
            "patient_id": "P", "study_uid": "S", "study_date": "20260101", "series_number": n, "series_uid": uid,
            "description": desc, "n_files": 3, "plane": plane, "label": label, "confidence": conf,
            "probabilities": {"T2w": 0.0, "DWI": 0.0, "ADC": 0.0, "DCE": 0.0, "OTHER": 0.0, label: conf},
            "needs_review": review, "b_values": b, "model": "fake@1", "note": "", "folder": "/data/" + uid}}))
    print(json.dumps({"type": "skipped", "path": "/data/readme.txt", "reason": "not DICOM"}))
    print(json.dumps({"type": "summary", "n_series": 4, "n_skipped": 1, "exit_code": 2,
                      "model": {"name": "fake@1", "trained": True}}))
    sys.exit(2)
""")


@pytest.fixture()
def fake_session(tmp_path):
    from SeqClassifierLib.curation.label_store import LabelStore
    from SeqClassifierSlicer.session import ClassificationSession

    script = tmp_path / "fake_classifier.py"
    script.write_text(FAKE_CLASSIFIER)
    session = ClassificationSession(LabelStore(tmp_path / "store" / "labels.json"))
    session.mode = "ok"
    session.command = lambda paths, device="auto", model=None: [sys.executable, "-u", str(script), session.mode]
    return session


def test_session_trained_results_polling(fake_session, tmp_path):
    from SeqClassifierSlicer import review

    s = fake_session
    seen = []
    s.start(["/data"], on_event=seen.append)
    deadline = time.monotonic() + 20
    while s.is_running and time.monotonic() < deadline:
        s.poll()
        time.sleep(0.02)
    s.poll()
    assert not s.is_running and s.process.state is State.COMPLETED and s.process.returncode == 2
    assert [r.series_uid for r in s.review_rows()] == ["1.4", "1.6", "1.8", "1.7"]
    assert s.model_trained is True and s.n_skipped == 1 and s.progress_fraction == 1.0
    assert s.status_text == "4 series classified, 1 need review, 0 confirmed, 1 files skipped."
    assert seen[-1]["type"] == "finished"
    assert len(s.store) == 4 and s.store.get("1.8").needs_review
    # 1.8 (the highest b) needs review: presets never tick it, the next DWI is taken
    assert s.preset_selection(review.PRESET_AXIAL_T2_HIGHB_DWI_ADC) == {"1.4", "1.6", "1.7"}
    assert [r.series_uid for r in s.review_rows("adc, t2w")] == ["1.4", "1.7"]

    entry = s.confirm_label("1.8", "ADC", user="rad")
    assert entry.confirmed_label == "ADC" and entry.series_dir == "/data/1.8"
    assert s.row_of("1.8").label == "ADC" and s.label_of("1.8") == "ADC"
    assert set(s.rows) == {r.key for r in s.review_rows()}  # keyed by (patient, study, series UID)
    assert s.preset_selection(review.PRESET_AXIAL_T2_HIGHB_DWI_ADC) == {"1.4", "1.6", "1.8", "1.7"}
    assert s.confirm_all(["1.4", "1.6"], user="rad") == (2, 0)
    assert {k.series_uid for k in s.store.confirmed_labels()} == {"1.4", "1.6", "1.8"}
    out = tmp_path / "labels.csv"
    assert s.export_labels(str(out), confirmed_only=True) == 3
    assert out.read_text().splitlines()[0] == "series_dir,SeriesInstanceUID,label,SeriesDescription,note"

    # the browser selection shows stored results without running anything
    rows = s.show_stored(["1.8", "9.9"])
    assert [(r.series_uid, r.label, r.predicted_label) for r in rows] == [("1.8", "ADC", "DWI")]


def test_session_filters_requested_series_and_reports_failure(fake_session):
    from SeqClassifierSlicer.session import ClassificationFailed

    s = fake_session
    rows = s.run({"1.4": ["/data/1.4/a.dcm"], "1.7": ["/data/1.7/a.dcm"]})
    assert [r.series_uid for r in rows] == ["1.4", "1.7"]  # other series of the folder left out
    assert {k.series_uid for k in s.store.load()} == {"1.4", "1.7"}

    s.mode = "fail"
    with pytest.raises(ClassificationFailed, match="model file is damaged"):
        s.run(["/data"])
    assert s.status_text == "Classification failed."


def test_session_with_real_classifier(prostatex, tmp_path):
    """The real command line on a real study: the JSON-lines protocol end to end (untrained or trained)."""
    from SeqClassifierLib.curation.label_store import LabelStore
    from SeqClassifierSlicer.session import ClassificationSession

    study = prostatex / "ProstateX-0000"
    s = ClassificationSession(LabelStore(tmp_path / "labels.json"))
    rows = s.run([str(study)], device="cpu")
    assert len(rows) == 7 and s.n_skipped == 0
    assert {r.description for r in rows} >= {"t2_tse_tra", "t2_tse_sag"}
    assert all(r.folder.startswith(str(study)) for r in rows)
    stored = s.store.load()
    assert set(stored) == {r.key for r in rows}
    if s.model_trained:
        assert all(r.predicted_label is not None for r in rows)
    else:
        assert s.model_trained is False
        assert all(r.predicted_label is None and r.model == "untrained" for r in rows)
        assert all(e.predicted_label is None for e in stored.values())
        assert s.model_status_text().startswith("Untrained model")
    t2 = next(r for r in rows if r.description == "t2_tse_tra")
    # the thumbnail comes from the classifier process (--thumbnails), not from the panel re-reading files
    thumb = t2.thumbnail
    assert thumb is not None and thumb.shape == (64, 64) and thumb.dtype.name == "uint8"
    assert thumb.max() > 100 and thumb[32].std() > 5  # a real picture, not a blank
    assert all(r.thumbnail is not None for r in rows)
