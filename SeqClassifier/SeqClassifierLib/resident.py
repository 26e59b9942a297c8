"""Pages of GPU libraries a CPU run holds for nothing: handed back while torch imports and after.

``import torch`` of a CUDA build loads the CUDA libraries whether or not a GPU
is there (``libtorch_cuda.so``, cuBLAS-Lt, NVRTC, nvJitLink, cuFFT, ... from
the ``nvidia`` wheels).  The dynamic loader reads their headers, symbol and
relocation tables and runs their initialisers, so on the 2-vCPU benchmark VM
about 140 MiB of their file pages stay resident in a process that then runs
the model on the CPU and never touches them again: a fifth of the command
line's peak RSS on the 2,000-file set.

:func:`release_gpu_library_pages` unmaps those pages from this process
(``madvise(MADV_DONTNEED)``).  Only mappings that hold nothing but clean file
pages are touched -- read-only (``r--`` or ``r-x``), not locked, no private
(copy-on-write, e.g. relocated) page (``Anonymous: 0 kB`` in
``/proc/self/smaps``): there ``MADV_DONTNEED`` loses nothing, a later access
reads the same bytes from the page cache again (a minor fault).  The pages
stay in the page cache, so the next process that imports torch maps them
without reading the disk.  Nothing else changes: no arithmetic, no library
state.

The command line and the archive engine ask for it
(``Classifier(..., hand_back_gpu_pages=True)``); the library never does it by
itself.  On a machine without a GPU device node (or with ``--device cpu``) it
happens while torch imports (:func:`handing_back_while_importing`): once torch
has loaded the ``nvidia`` wheels' libraries with ``ctypes`` and once more when
``torch._C`` (``libtorch_cuda`` and the rest) is loaded, so those pages never
make the import's own peak: ``import torch`` alone 508 -> 370 MB, and right
after torch is installed, with every page of its files in the page cache,
754 -> 451 MB.  Once the device is known to be the CPU, before the weights are
read, once more, and for torch's own CPU libraries too (``libtorch_cpu``,
``libtorch_python``, ``libc10``): of their pages, those only the import
touched (every kernel and operator registering itself) go, those the run
calls come back from the page cache at their first call (2,000-file CLI peak
RSS 522-546 -> 469-504 MiB; 664-694 -> 606-634 MiB right after installing).
Elsewhere than Linux nothing happens.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import re
import sys
from typing import Iterator, NamedTuple, Optional

__all__ = ["GPU_LIBRARY", "TORCH_CPU_LIBRARY", "Mapping", "mappings", "is_gpu_library", "is_torch_cpu_library",
           "release_gpu_library_pages",
           "gpu_device_nodes", "ImportHandBack", "handing_back_while_importing"]

_MADV_DONTNEED = 4
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

#: File names of libraries only a GPU uses: torch's CUDA / ROCm parts, the CUDA and ROCm runtimes and
#: their maths, communication and compiler libraries, CUDA Python's bindings; or anything under an
#: ``nvidia`` package folder (the ``nvidia-*`` wheels torch depends on).
GPU_LIBRARY = re.compile(
    r"(^|/)nvidia/|(^|/)cuda/bindings/|"
    r"(^|/)lib(torch_cuda|torch_hip|torch_nvshmem|c10_cuda|c10_hip|caffe2_nvrtc|cuda|cudart|cublas|cudnn|cufft|"
    r"cufile|curand|cusolver|cusparse|nccl|nvrtc|nvJitLink|nvToolsExt|nvshmem|cupti|nvperf|amdhip64|hipblas|"
    r"hipfft|hiprand|hipsparse|hipsolver|rocblas|rocfft|rocrand|rocsolver|rocsparse|roctracer|MIOpen|rccl|"
    r"hsa-runtime64)[^/]*\.so[^/]*$")


#: torch's own CPU libraries.  Their pages that only ``import torch`` touched (the registration of every
#: kernel and operator) can go as well once it is imported; those a CPU run calls come back from the page
#: cache at their first call (``release_gpu_library_pages(torch_cpu=True)``).
TORCH_CPU_LIBRARY = re.compile(r"(^|/)lib(torch_cpu|torch_python|torch|c10)\.so[^/]*$")


class Mapping(NamedTuple):
    """One mapping of ``/proc/self/smaps``: its range, permissions, file and page counts (bytes)."""

    start: int
    end: int
    perms: str
    path: str
    rss: int
    anonymous: int
    locked: int


#: A mapping's first line in ``smaps``: "start-end perms offset dev inode [path]".
_HEAD = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+[ \t]*(.*)$", re.MULTILINE)
_FIELD = {name: re.compile(rf"^{name}:[ \t]+(\d+) kB$", re.MULTILINE) for name in ("Rss", "Anonymous", "Locked")}


def mappings(smaps: str = "/proc/self/smaps", where=None) -> Iterator[Mapping]:
    """The mappings of ``smaps`` (a process's ``/proc/<pid>/smaps``); ``where(path)``: only those whose
    path it accepts (their page counts are read; the others are skipped at the cost of a regex)."""
    with open(smaps) as fh:
        text = fh.read()  # the kernel writes it in one go; a mapping's lines never split across reads
    heads = list(_HEAD.finditer(text))
    for i, h in enumerate(heads):
        path = h.group(4)
        if where is not None and not where(path):
            continue
        block = text[h.end():heads[i + 1].start() if i + 1 < len(heads) else len(text)]
        kib = {}
        for name, rx in _FIELD.items():
            f = rx.search(block)
            kib[name] = int(f.group(1)) * 1024 if f else 0
        yield Mapping(int(h.group(1), 16), int(h.group(2), 16), h.group(3), path, kib["Rss"], kib["Anonymous"],
                      kib["Locked"])


def is_gpu_library(path: str) -> bool:
    return bool(GPU_LIBRARY.search(path))


def is_torch_cpu_library(path: str) -> bool:
    return bool(TORCH_CPU_LIBRARY.search(path))


def _gpu_or_torch_cpu_library(path: str) -> bool:
    return is_gpu_library(path) or is_torch_cpu_library(path)


def _releasable(m: Mapping, where=is_gpu_library) -> bool:
    """Clean file pages only: a read-only mapping of a file (one ``where`` accepts), unlocked, without one
    private page."""
    return (m.path.startswith("/") and "w" not in m.perms and m.anonymous == 0 and m.locked == 0
            and m.rss > 0 and where(m.path))


def _maps_name_a_gpu_library(maps: str) -> bool:
    """Whether ``maps`` (``/proc/<pid>/maps``) lists a GPU library (True when it cannot be read)."""
    try:
        with open(maps) as fh:
            return any(is_gpu_library(line.rstrip("\n").split(None, 5)[-1]) for line in fh if "/" in line)
    except OSError:
        return True


def release_gpu_library_pages(smaps: str = "/proc/self/smaps", torch_cpu: bool = False) -> int:
    """Unmap this process's resident clean pages of GPU libraries (module docstring), and with
    ``torch_cpu`` of torch's CPU libraries (:data:`TORCH_CPU_LIBRARY`, after ``import torch``); the bytes
    they held (0 where there is no ``/proc`` or ``madvise``).  Call it only in a process that runs on the
    CPU: it is harmless otherwise, but the pages a GPU run uses come back at once."""
    if not sys.platform.startswith("linux"):
        return 0
    where = _gpu_or_torch_cpu_library if torch_cpu else is_gpu_library
    try:
        # the mappings' names first (1 ms): a CPU build of torch maps no GPU library, and smaps, whose
        # page counts the kernel makes by walking every mapping's page tables, takes 20 ms
        if not torch_cpu and not _maps_name_a_gpu_library(os.path.join(os.path.dirname(smaps), "maps")):
            return 0
        madvise = ctypes.CDLL(None, use_errno=True).madvise
        found = [m for m in mappings(smaps, where) if _releasable(m, where)]
    except (OSError, AttributeError, ValueError):
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    released = 0
    for m in found:
        if m.start % _PAGE or m.end <= m.start:
            continue
        if madvise(m.start, m.end - m.start, _MADV_DONTNEED) == 0:
            released += m.rss
    return released


#: Device nodes a GPU run needs (NVIDIA, ROCm, WSL's GPU): without one, ``auto`` resolves to the CPU.
_GPU_NODES = ("/dev/nvidiactl", "/dev/nvidia[0-9]*", "/dev/kfd", "/dev/dxg")


def gpu_device_nodes() -> list:
    """The GPU device nodes of this machine (empty: torch cannot use a GPU here)."""
    return [p for pattern in _GPU_NODES for p in glob.glob(pattern)]


class ImportHandBack:
    """A ``sys.meta_path`` finder that finds nothing and hands the GPU libraries' pages back twice while
    ``package`` (torch) imports, so that they never make the import's own peak:

    1. when ``package._C`` is looked up: torch has loaded the CUDA libraries of the ``nvidia`` wheels
       with ``ctypes`` by then (cuBLAS-Lt, NVRTC, nvJitLink, ...), each load finished;
    2. at the first import after ``package._C`` is in ``sys.modules``: its loading brought in
       ``libtorch_cuda`` and the rest, finished as well.

    Both run in the importing thread between two Python statements of the package, never while the
    dynamic loader is at work on a library of that thread, and only mappings holding nothing but clean
    file pages are touched (:func:`release_gpu_library_pages`).  Torch's own loading order is untouched.
    ``released``: the bytes handed back; ``stage``: 0 before the first, 2 after the second.
    """

    def __init__(self, package: str = "torch"):
        self.anchor = f"{package}._C"
        self.stage = 0
        self.released = 0

    def find_spec(self, name, path=None, target=None):
        if (self.stage == 0 and name == self.anchor) or (self.stage == 1 and self.anchor in sys.modules):
            self.stage += 1
            try:
                self.released += release_gpu_library_pages()
            except Exception:  # a saving, never a reason for an import to fail
                pass
        return None  # the next finder imports it

    def invalidate_caches(self) -> None:
        pass


@contextlib.contextmanager
def handing_back_while_importing(package: str = "torch") -> Iterator[Optional[ImportHandBack]]:
    """Around the first ``import torch`` of a process that will run on the CPU: an
    :class:`ImportHandBack` on ``sys.meta_path`` for the duration; None (nothing installed) where the
    package is imported already or this is not Linux.  The finder is removed on the way out."""
    if package in sys.modules or not sys.platform.startswith("linux"):
        yield None
        return
    finder = ImportHandBack(package)
    sys.meta_path.insert(0, finder)
    try:
        yield finder
    finally:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(finder)
