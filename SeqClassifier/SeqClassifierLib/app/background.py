"""Run a command in the background and stream its JSON-lines events (no Qt).

The pattern of MONAIAuto3DSeg's ``process.py``, without Qt or Slicer: a child
process (:class:`subprocess.Popen`) whose stdout is read line by line by a
thread that turns each line into an *event* and puts it on a
:class:`queue.Queue`; the GUI calls :meth:`BackgroundProcess.poll` from a
``QTimer`` (scripts call :meth:`BackgroundProcess.wait`).

Events are dicts:

* a stdout line holding a JSON object is that object, e.g. the classifier's
  ``{"type": "progress", "stage": "classify", "done": 3, "total": 18}``,
  ``{"type": "series", "row": {...}}``, ``{"type": "skipped", ...}``,
  ``{"type": "summary", ...}``; an object without ``"type"`` gets ``"type": "data"``;
* any other stdout line is ``{"type": "log", "text": line}``;
* the last event is ``{"type": "finished", "state": "completed"|"failed"|"cancelled",
  "returncode": int, "message": str}``.

States: ``IDLE`` -> ``RUNNING`` -> ``COMPLETED`` | ``FAILED`` | ``CANCELLED``.
The public :attr:`BackgroundProcess.state` changes to the final state only
when the ``finished`` event is handed out (by :meth:`poll` or :meth:`wait`),
so a caller has seen every event before it sees the end.  stderr is captured
(last lines kept) and becomes the failure message.

:meth:`BackgroundProcess.cancel` terminates the child's whole process group
(the Slicer ``PythonSlicer`` launcher starts the real interpreter as its own
child) and kills it after a grace period.
"""

from __future__ import annotations

import collections
import enum
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

EventCallback = Callable[[dict], None]


class State(str, enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (State.COMPLETED, State.FAILED, State.CANCELLED)


def parse_line(line: str) -> dict:
    """One stdout line -> event (JSON object, or a log event)."""
    text = line.rstrip("\r\n")
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            obj.setdefault("type", "data")
            return obj
    return {"type": "log", "text": text}


class BackgroundProcess:
    """A child process whose stdout JSON lines become events.

    ``argv``: the command (list); ``env``: full environment (default: this
    process's); ``cwd``: working folder; ``success_codes``: return codes
    that count as completed (the classifier's 2 = "some files skipped" and
    3 = "no series found" are successes for a caller that shows them);
    ``stderr_lines``: how many last stderr lines to keep.
    """

    def __init__(self, argv: Sequence[str], env: Optional[Mapping[str, str]] = None,
                 cwd: Optional[str] = None, success_codes: Iterable[int] = (0,),
                 stderr_lines: int = 200, grace_period: float = 5.0):
        self.argv = [str(a) for a in argv]
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.success_codes = frozenset(int(c) for c in success_codes)
        self.grace_period = float(grace_period)
        self.state = State.IDLE
        self.returncode: Optional[int] = None
        self.message = ""
        self.proc: Optional[subprocess.Popen] = None
        self.started_at: Optional[float] = None
        self.finished_at: Optional[float] = None
        self._events: "queue.Queue[dict]" = queue.Queue()
        self._stderr: "collections.deque[str]" = collections.deque(maxlen=stderr_lines)
        self._threads: list[threading.Thread] = []
        self._cancel_requested = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._final_state = State.FAILED
        self._final_message = ""

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> "BackgroundProcess":
        if self.state is not State.IDLE:
            raise RuntimeError(f"process already {self.state.value}")
        kwargs: dict[str, Any] = dict(
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self.env, cwd=self.cwd, text=True, encoding="utf-8", errors="replace", bufsize=1,
        )
        if os.name == "nt":
            kwargs["creationflags"] = (getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
                                       | getattr(subprocess, "CREATE_NO_WINDOW", 0))
        else:
            kwargs["start_new_session"] = True  # own process group: cancel reaches grandchildren
        self.started_at = time.monotonic()
        try:
            self.proc = subprocess.Popen(self.argv, **kwargs)
        except OSError as exc:
            self.state = State.FAILED
            self.message = f"cannot start {self.argv[0]}: {exc}"
            self.returncode = None
            self.finished_at = time.monotonic()
            self._done.set()
            self._events.put({"type": "finished", "state": State.FAILED.value, "returncode": None,
                              "message": self.message})
            return self
        self.state = State.RUNNING
        out = threading.Thread(target=self._read_stdout, name="seqclassifier-stdout", daemon=True)
        err = threading.Thread(target=self._read_stderr, name="seqclassifier-stderr", daemon=True)
        self._threads = [out, err]
        err.start()
        out.start()
        waiter = threading.Thread(target=self._wait_for_exit, name="seqclassifier-wait", daemon=True)
        waiter.start()
        return self

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self._events.put(parse_line(line))
        self.proc.stdout.close()

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line.rstrip("\r\n"))
        self.proc.stderr.close()

    def _wait_for_exit(self) -> None:
        assert self.proc is not None
        rc = self.proc.wait()
        for t in self._threads:
            t.join()
        self.returncode = rc
        self.finished_at = time.monotonic()
        if self._cancel_requested.is_set():
            final, message = State.CANCELLED, "cancelled"
        elif rc in self.success_codes:
            final, message = State.COMPLETED, ""
        else:
            final = State.FAILED
            tail = "\n".join(line for line in list(self._stderr)[-20:] if line.strip())
            message = f"exited with code {rc}" + (f":\n{tail}" if tail else "")
        self._final_state, self._final_message = final, message
        self._events.put({"type": "finished", "state": final.value, "returncode": rc, "message": message})
        self._done.set()

    # -- consuming events ------------------------------------------------------------------------
    def _take(self, event: dict) -> dict:
        if event.get("type") == "finished":
            with self._lock:
                self.state = State(event["state"])
                self.message = event.get("message", "")
        return event

    def poll(self) -> list[dict]:
        """Events that arrived since the last call (never blocks)."""
        events = []
        while True:
            try:
                events.append(self._take(self._events.get_nowait()))
            except queue.Empty:
                return events

    def wait(self, timeout: Optional[float] = None, on_event: Optional[EventCallback] = None) -> State:
        """Block until the process ends (or ``timeout`` s pass), handing events to ``on_event``.

        Without ``on_event`` the events stay queued for :meth:`poll`.
        Returns the state (still ``RUNNING`` after a timeout).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if on_event is None:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._done.wait(remaining)
            if self._done.is_set() and not self.state.finished:
                # the finished event is queued; adopt the final state without consuming other events
                with self._lock:
                    self.state = self._final_state
                    self.message = self._final_message
            return self.state
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return self.state
            try:
                event = self._events.get(timeout=0.1 if remaining is None else min(0.1, remaining))
            except queue.Empty:
                if self.state.finished:
                    return self.state
                continue
            on_event(self._take(event))
            if event.get("type") == "finished":
                return self.state

    # -- control ---------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self.state is State.RUNNING and not self._done.is_set()

    @property
    def stderr_text(self) -> str:
        """The last captured stderr lines."""
        return "\n".join(self._stderr)

    @property
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or time.monotonic()) - self.started_at

    def cancel(self, grace_period: Optional[float] = None) -> None:
        """Terminate the process (group), kill it if it is still alive after the grace period."""
        if self.proc is None or self._done.is_set():
            if self.state is State.IDLE:
                self.state = State.CANCELLED
            return
        self._cancel_requested.set()
        self._signal(kill=False)
        grace = self.grace_period if grace_period is None else grace_period

        def killer() -> None:
            if not self._done.wait(grace):
                self._signal(kill=True)

        threading.Thread(target=killer, name="seqclassifier-kill", daemon=True).start()

    def _signal(self, kill: bool) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            if os.name == "nt":
                if kill:
                    subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
                    if proc.poll() is None:
                        proc.kill()
                else:
                    proc.terminate()
            else:
                os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        except (ProcessLookupError, PermissionError, OSError):
            try:
                proc.kill() if kill else proc.terminate()
            except OSError:
                pass

    def __del__(self) -> None:  # never leave an orphan behind
        try:
            if self.proc is not None and self.proc.poll() is None:
                self._signal(kill=True)
        except Exception:
            pass


def run_events(argv: Sequence[str], on_event: Optional[EventCallback] = None, **kwargs: Any) -> BackgroundProcess:
    """Run ``argv`` to the end (blocking), passing every event to ``on_event``."""
    proc = BackgroundProcess(argv, **kwargs).start()
    proc.wait(on_event=on_event or (lambda e: None))
    return proc


def python_command(module: str, *args: str, python: Optional[str] = None) -> list[str]:
    """``[python, "-u", "-m", module, *args]`` with this interpreter by default."""
    return [python or sys.executable, "-u", "-m", module, *args]
