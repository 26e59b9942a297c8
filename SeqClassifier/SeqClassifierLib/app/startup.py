"""Start-up overlap of the command line: headers are read while torch imports.

``import torch`` and loading the model take 1.5-3 s, about as long as reading
the headers of a 2,000-file study.  :class:`EarlyDiscovery` forks one child
process *before* torch is imported (forking a process without torch and
without other threads is cheap and safe), runs
:func:`~SeqClassifierLib.dicom.discovery.discover_series` there (with its own
reader processes for large inputs, and the caller's progress callback), and
hands the :class:`~SeqClassifierLib.dicom.discovery.Discovery` back through a
pipe while this process imports torch and loads the model.  When the model's
card can be read without torch (it is JSON), the child also prepares every
series' model input (:func:`~SeqClassifierLib.inputs.prepared.prepare_input`:
metadata features, centre slice, image quality, and the thumbnail when asked
for) with the card's preprocessing,
so that only the model itself waits for torch.  The results are exactly those
of ``discover_series`` and ``prepare_input`` in this process.

The DICOM readers (and pydicom, 0.4 s to import) are imported by the child
only: the classifier, the records and the prepared inputs need none of them,
so this process goes from its first imports to torch without them
(``test_startup`` checks that it never imports pydicom).  On two cores that
moves work more than it removes it -- the child then imports pydicom beside
the parent's torch -- but it takes the import off the parent's path.

It is used only where it is safe and pays: Linux (``fork``), torch not yet
imported, no other Python thread running, no header cache (the cache object
lives in this process), not inside the Slicer application.  Elsewhere
:func:`start_discovery` returns None and the caller discovers in-process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from SeqClassifierLib import config
from SeqClassifierLib.inputs.prepare_pool import Spec, prepare_many, spec_of
from SeqClassifierLib.inputs.study import study_contexts
from SeqClassifierLib.lifetime import worker_init
from SeqClassifierLib.model.card import checkpoint_paths, load_card
from SeqClassifierLib.model.classifier import default_model_path
from SeqClassifierLib.records import Discovery

#: Set to "0" to switch the start-up overlap off (e.g. to profile discovery in one process).
EARLY_ENV = config.EARLY_DISCOVERY_ENV

#: Fewest series for which the child prepares with worker processes: ~8 ms a series makes 300 of them
#: about the 2.5-3.5 s that ``import torch`` takes in the parent, which needs a core of its own until then.
CHILD_PROCESSES_MIN_SERIES = 300

#: Fewest files for which the child reads headers with reader processes: ~0.8 ms a file (its header,
#: and its share of the preparation) makes 3,000 of them the parent's torch import; below that the
#: readers only take the core the import needs (2,000 files: the CLI 3.35 s serial against 3.61 s
#: with readers, means of five alternating pairs).
CHILD_READERS_MIN_FILES = 3000


def card_spec(model: Any) -> Optional[Spec]:
    """The preprocessing of the checkpoint ``model`` (None: the shipped default) read from its JSON
    card without torch; None when there is no readable card (the classifier then says why)."""
    try:
        path = Path(os.fspath(model)) if model is not None else default_model_path()
        return spec_of(load_card(checkpoint_paths(path)[0])) if path is not None else None
    except Exception:
        return None


def _prepare_all(discovery: Discovery, spec: Spec, thumbnail_size: Optional[int] = None,
                 processes: Optional[int] = None) -> list:
    """The unstandardised inputs of every series (with this child's own worker processes for many)."""
    return prepare_many(discovery.series, study_contexts(discovery.series), spec, processes=processes,
                        thumbnail_size=thumbnail_size, standardize=False)


def _child(conn: Any, paths: Sequence[str], progress: Optional[Callable[[int, int], None]],
           workers: Optional[int], spec: Optional[Spec], thumbnail_size: Optional[int] = None) -> None:
    worker_init(None, watch=False)  # dies with this process (PDEATHSIG); no thread: its readers fork
    try:
        # the DICOM readers (and pydicom, 0.4 s) are imported here, after the fork: the parent,
        # which imports torch meanwhile, never needs them
        from SeqClassifierLib.dicom.discovery import discover_series

        found = discover_series(list(paths), progress=progress, workers=workers,
                                parallel_from=CHILD_READERS_MIN_FILES)
        prepared = None
        if spec is not None:
            # worker processes only when preparing outlasts the parent's torch import: before that they
            # take the cores the import needs (2,000 files / 95 series: 5.64 s against 5.44 s serial)
            processes = workers if workers is not None else (
                None if len(found.series) >= CHILD_PROCESSES_MIN_SERIES else 1)
            prepared = _prepare_all(found, spec, thumbnail_size, processes)
        result: Any = ("ok", found, prepared)
    except BaseException as exc:  # noqa: BLE001 -- every failure travels back and is raised there
        result = ("error", exc, None)
    try:
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # an exception that cannot be pickled: its text
        data = pickle.dumps(("error", RuntimeError(f"{type(exc).__name__}: {exc}"), None))
    conn.send_bytes(data)
    conn.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no atexit handlers, no second flush of the parent's buffers


class EarlyDiscovery:
    """``discover_series(paths)`` running in a forked child; :meth:`result` waits for it."""

    def __init__(self, paths: Sequence[str], progress: Optional[Callable[[int, int], None]] = None,
                 workers: Optional[int] = None, spec: Optional[Spec] = None, thumbnail_size: Optional[int] = None):
        ctx = mp.get_context("fork")
        self._recv, send = ctx.Pipe(duplex=False)
        sys.stdout.flush()
        sys.stderr.flush()
        self._proc = ctx.Process(target=_child, args=(send, [str(p) for p in paths], progress, workers, spec, thumbnail_size),
                                 name="seqclassifier-discovery")
        self._proc.start()
        send.close()
        self._result: Optional[Discovery] = None
        self._spec, self._prepared = spec, None

    def result(self) -> Discovery:
        """The discovery; raises what the child raised (KeyboardInterrupt, Terminated, ...)."""
        if self._result is not None:
            return self._result
        try:
            data = self._recv.recv_bytes()
        except EOFError:
            self._proc.join()
            raise RuntimeError(f"header reading process ended without a result (exit code {self._proc.exitcode})")
        finally:
            self._recv.close()
        self._proc.join()
        status, value, prepared = pickle.loads(data)
        if status != "ok":
            raise value
        self._result, self._prepared = value, prepared
        return value

    def prepared(self, card: Any) -> Optional[list]:
        """The series' prepared inputs (after :meth:`result`), when they were made with ``card``'s
        preprocessing (the card the model was loaded with); else None: the classifier prepares them."""
        if self._prepared is None or card is None or self._spec != spec_of(card):
            return None
        return self._prepared

    def cancel(self) -> None:
        """Stop the child (an error elsewhere: its result is not wanted)."""
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join()
        self._recv.close()


def start_discovery(paths: Sequence[str], progress: Optional[Callable[[int, int], None]] = None, *,
                    model: Any = None, cache: Any = None, workers: Optional[int] = None,
                    force: bool = False, thumbnail_size: Optional[int] = None) -> Optional[EarlyDiscovery]:
    """An :class:`EarlyDiscovery` of ``paths`` for the checkpoint ``model`` (None: the shipped one)
    where it is safe and pays (see the module docstring), else None.  ``cache``: the header cache
    asked for (its object lives in this process: no overlap).
    ``force``: skip the "torch not imported yet" condition (tests); ``thumbnail_size``: the prepared
    inputs carry thumbnails of that size (``classify --thumbnails``)."""
    if not config.early_discovery_enabled():
        return None
    if not sys.platform.startswith("linux") or "fork" not in mp.get_all_start_methods():
        return None
    if cache is not None or "slicer" in sys.modules or threading.active_count() > 1:
        return None
    if "torch" in sys.modules and not force:
        return None
    return EarlyDiscovery(paths, progress, workers, card_spec(model), thumbnail_size)
