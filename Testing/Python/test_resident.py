"""The GPU libraries' resident pages handed back on the CPU (resident.py): only clean, read-only file
pages go, what they held reads the same afterwards, written (copy-on-write) pages are never touched,
and a model loaded that way gives the same bits."""

from __future__ import annotations

import ast
import mmap
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "SeqClassifier"))

from SeqClassifierLib import resident  # noqa: E402
from SeqClassifierLib.resident import Mapping, is_gpu_library, mappings  # noqa: E402

SHIPPED = REPO / "SeqClassifier" / "SeqClassifierLib" / "model" / "assets" / "seqclassifier_default.json"
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps and madvise")

_SMAPS = """\
7f0000000000-7f0000400000 r-xp 00000000 08:01 1234   /venv/site-packages/nvidia/cu13/lib/libcublasLt.so.13
Size:               4096 kB
Rss:                 812 kB
Anonymous:             0 kB
Locked:                0 kB
VmFlags: rd ex mr mw me
7f0000400000-7f0000401000 rw-p 00400000 08:01 1234   /venv/site-packages/nvidia/cu13/lib/libcublasLt.so.13
Size:                  4 kB
Rss:                   4 kB
Anonymous:             4 kB
Locked:                0 kB
55d000000000-55d000021000 rw-p 00000000 00:00 0      [heap]
Rss:                 132 kB
Anonymous:           132 kB
7f1000000000-7f1000001000 r--p 00000000 00:00 0
Rss:                   4 kB
Anonymous:             4 kB
"""


def test_smaps_is_read_mapping_by_mapping_with_its_pages_in_bytes(tmp_path):
    f = tmp_path / "smaps"
    f.write_text(_SMAPS)
    got = list(mappings(str(f)))
    assert got[0] == Mapping(0x7F0000000000, 0x7F0000400000, "r-xp",
                             "/venv/site-packages/nvidia/cu13/lib/libcublasLt.so.13", 812 * 1024, 0, 0)
    assert [(m.perms, m.path, m.rss, m.anonymous) for m in got[1:]] == [
        ("rw-p", "/venv/site-packages/nvidia/cu13/lib/libcublasLt.so.13", 4096, 4096),
        ("rw-p", "[heap]", 132 * 1024, 132 * 1024),
        ("r--p", "", 4096, 4096)]
    # only the mappings the filter accepts are read
    assert [m.perms for m in mappings(str(f), is_gpu_library)] == ["r-xp", "rw-p"]


@pytest.mark.parametrize("path", [
    "/venv/lib/python3.11/site-packages/nvidia/cu13/lib/libcublasLt.so.13",
    "/venv/lib/python3.11/site-packages/nvidia/cudnn/lib/libcudnn_graph.so.9",
    "/venv/lib/python3.11/site-packages/torch/lib/libtorch_cuda.so",
    "/venv/lib/python3.11/site-packages/torch/lib/libc10_cuda.so",
    "/venv/lib/python3.11/site-packages/cuda/bindings/driver.cpython-311-x86_64-linux-gnu.so",
    "/usr/local/cuda-12.4/lib64/libcudart.so.12.4.127",
    "/opt/rocm/lib/libamdhip64.so.6",
    "/venv/lib/python3.12/site-packages/torch/lib/libMIOpen.so"])
def test_gpu_libraries_are_named_by_their_files(path):
    assert is_gpu_library(path)


@pytest.mark.parametrize("path", [
    "/venv/lib/python3.11/site-packages/torch/lib/libtorch_cpu.so",
    "/venv/lib/python3.11/site-packages/torch/lib/libtorch_python.so",
    "/venv/lib/python3.11/site-packages/torch/lib/libc10.so",
    "/venv/lib/python3.11/site-packages/torch/lib/libgomp.so.1",
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
    "/venv/lib/python3.11/site-packages/numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so",
    "/data/nvidia_study/IM0001.dcm", "[heap]", ""])
def test_other_files_are_not(path):
    assert not is_gpu_library(path)


def test_only_clean_unlocked_read_only_file_pages_are_releasable():
    path = "/x/nvidia/cu13/lib/libcufft.so.12"
    clean = Mapping(0, 8192, "r--p", path, 8192, 0, 0)
    assert resident._releasable(clean)
    assert resident._releasable(clean._replace(perms="r-xp"))
    assert not resident._releasable(clean._replace(perms="rw-p"))  # writable: its pages may be its own
    assert not resident._releasable(clean._replace(anonymous=4096))  # a copy-on-write page would be lost
    assert not resident._releasable(clean._replace(locked=4096))
    assert not resident._releasable(clean._replace(rss=0))
    assert not resident._releasable(clean._replace(path="/x/torch/lib/libtorch_cpu.so"))
    assert not resident._releasable(clean._replace(path="[anon:nvidia/libx.so]"))
    # after the import, torch's CPU libraries too, by the same rules
    both = resident._gpu_or_torch_cpu_library
    cpu = clean._replace(path="/x/torch/lib/libtorch_cpu.so")
    assert resident._releasable(cpu, both) and resident._releasable(clean, both)
    assert not resident._releasable(cpu._replace(anonymous=4096), both)
    assert not resident._releasable(cpu._replace(perms="rw-p"), both)
    assert not resident._releasable(clean._replace(path="/usr/lib/x86_64-linux-gnu/libc.so.6"), both)


@pytest.mark.parametrize("path,is_torch_cpu", [
    ("/venv/site-packages/torch/lib/libtorch_cpu.so", True),
    ("/venv/site-packages/torch/lib/libtorch_python.so", True),
    ("/venv/site-packages/torch/lib/libtorch.so", True),
    ("/venv/site-packages/torch/lib/libc10.so", True),
    ("/venv/site-packages/torch/lib/libtorch_cuda.so", False),
    ("/venv/site-packages/torch/lib/libc10_cuda.so", False),
    ("/venv/site-packages/torch/lib/libgomp.so.1", False),
    ("/usr/lib/x86_64-linux-gnu/libc.so.6", False)])
def test_torch_cpu_libraries_are_named_by_their_files(path, is_torch_cpu):
    assert resident.is_torch_cpu_library(path) is is_torch_cpu


# A process maps a file named like a GPU library three times: read-only, read-only after a private
# write (copy-on-write, then mprotect), writable with a private write; reads them all in.
_PROBE = r"""
import ctypes, mmap, sys
sys.path.insert(0, {lib!r})
from SeqClassifierLib.resident import mappings, release_gpu_library_pages
path = {path!r}
n = 64 * mmap.PAGESIZE
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
with open(path, "rb") as fh:
    clean = mmap.mmap(fh.fileno(), n, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
    cow = mmap.mmap(fh.fileno(), n, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    rw = mmap.mmap(fh.fileno(), n, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
cow[0:5] = b"WRITE"
rw[0:5] = b"RWRW!"
addr = ctypes.addressof(ctypes.c_char.from_buffer(cow))
assert libc.mprotect(addr, n, mmap.PROT_READ) == 0
for m in (clean, cow, rw):
    sum(m[i] for i in range(0, n, mmap.PAGESIZE))  # every page resident
def rss():
    return sorted((m.perms, m.anonymous > 0, m.rss) for m in mappings() if m.path == path)
print(rss())
print(release_gpu_library_pages())
print(rss())
print(bytes(clean[:5]), bytes(cow[:5]), bytes(rw[:5]), clean[:] == open(path, "rb").read(n))
"""


@linux_only
def test_release_unmaps_clean_pages_only_and_every_byte_reads_the_same(tmp_path):
    lib = tmp_path / "nvidia" / "cu13" / "lib" / "libprobe.so.1"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"CLEAN" + bytes(range(256)) * 1100)
    code = _PROBE.format(lib=str(REPO / "SeqClassifier"), path=str(lib))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    before, released, after, contents = out.stdout.strip().splitlines()
    b, a = ast.literal_eval(before), ast.literal_eval(after)
    # read-only clean: all 64 pages resident, then none; read-only with a copy-on-write page, and
    # writable: left as they were
    assert [r[:2] for r in b] == [("r--p", False), ("r--p", True), ("rw-p", True)]
    assert b[0][2] == 64 * mmap.PAGESIZE
    assert int(released) == b[0][2]
    assert a == [("r--p", False, 0), b[1], b[2]]
    assert contents == "b'CLEAN' b'WRITE' b'RWRW!' True"


_LOAD = r"""
import sys
sys.path.insert(0, {lib!r})
from SeqClassifierLib.model.classifier import Classifier
from SeqClassifierLib.resident import is_gpu_library, is_torch_cpu_library, mappings, _releasable
c = Classifier({model!r}, device="cpu", precision="fp32", hand_back_gpu_pages={hand_back})
print(sum(m.rss for m in mappings(where=is_gpu_library) if _releasable(m)))
print(sum(1 for m in mappings() if m.path.endswith(".safetensors")))
print(sum(1 for m in mappings(where=is_gpu_library)))
print(sum(m.rss for m in mappings(where=is_torch_cpu_library) if _releasable(m, is_torch_cpu_library)))
"""


@linux_only
def test_the_model_loaded_for_the_cpu_keeps_no_gpu_library_page_nor_its_weights_file():
    def run(hand_back: bool) -> list:
        code = _LOAD.format(lib=str(REPO / "SeqClassifier"), model=str(SHIPPED), hand_back=hand_back)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return [int(v) for v in out.stdout.split()]

    kept_pages, weights_maps, gpu_maps, kept_cpu = run(True)
    held, _, _, held_cpu = run(False)
    # safetensors maps the whole weights file; nothing loaded from it keeps that map
    assert weights_maps == 0
    # of torch's CPU libraries, what only the import touched went: what loading the weights and
    # building the model call came back (65 MB held here, 15 MB after)
    assert held_cpu > 8 << 20 and kept_cpu < held_cpu / 2, (held_cpu, kept_cpu)
    if not gpu_maps:
        # no GPU library in this process (a CPU build of torch): nothing to hand back
        assert kept_pages == 0
        return
    # the CUDA build here: ~140 MiB resident after loading without it; with it, handed back while torch
    # imports (device "cpu") and once more after, a few pages (what the weights' loading touches)
    assert held > 16 << 20 and kept_pages < held / 100, (held, kept_pages)


def test_a_model_that_handed_back_the_pages_gives_the_same_bits(prostatex):
    from SeqClassifierLib.dicom.discovery import discover_series
    from SeqClassifierLib.model.classifier import Classifier

    series = discover_series([prostatex]).series
    log_a: list = []
    log_b: list = []
    a = Classifier(SHIPPED, device="cpu", precision="fp32")
    a.score_log = log_a
    pa = a.classify(series)
    b = Classifier(SHIPPED, device="cpu", precision="fp32", hand_back_gpu_pages=True)
    b.score_log = log_b
    pb = b.classify(series)
    assert [p.probabilities for p in pa] == [p.probabilities for p in pb]
    assert log_a == log_b and len(log_a) == len(series)
    assert np.isfinite([v for d in log_a for v in d.values()]).all()


def test_a_process_without_gpu_libraries_is_left_as_it_is(tmp_path):
    # the names in maps decide first: smaps (page counts, 20 ms for the kernel to write) is not read
    (tmp_path / "maps").write_text(
        "7f0000000000-7f0000400000 r-xp 00000000 08:01 1234   /venv/site-packages/torch/lib/libtorch_cpu.so\n"
        "55d000000000-55d000021000 rw-p 00000000 00:00 0      [heap]\n")
    (tmp_path / "smaps").write_text(_SMAPS)
    assert resident.release_gpu_library_pages(str(tmp_path / "smaps")) == 0
    assert not resident._maps_name_a_gpu_library(str(tmp_path / "maps"))
    (tmp_path / "maps").write_text(_SMAPS.splitlines()[0] + "\n")
    assert resident._maps_name_a_gpu_library(str(tmp_path / "maps"))


# -- while torch imports -------------------------------------------------------------------------------

def _fake_package(root: Path, name: str) -> None:
    """A package laid out like torch's start: a module loaded first (torch's ctypes preloads), then its
    ``_C``, then the rest."""
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f"import {name}._preload\nfrom {name}._C import *\nimport {name}.rest\n")
    (pkg / "_preload.py").write_text("")
    (pkg / "_C.py").write_text("VALUE = 1\n")
    (pkg / "rest.py").write_text("")


def test_pages_go_before_the_native_core_and_again_once_it_is_loaded(tmp_path, monkeypatch):
    name = "fake_torch_resident"
    _fake_package(tmp_path, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []

    def release() -> int:
        seen.append(sorted(m for m in sys.modules if m.startswith(name)))
        return 1000

    monkeypatch.setattr(resident, "release_gpu_library_pages", release)
    before = list(sys.meta_path)
    try:
        with resident.handing_back_while_importing(name) as finder:
            assert sys.meta_path[0] is finder
            __import__(name)
    finally:
        for m in [m for m in sys.modules if m.startswith(name)]:
            del sys.modules[m]
    # first: the preloads done, the core not yet loaded; then: the core loaded, the rest not yet
    assert seen == [[name, f"{name}._preload"], [name, f"{name}._C", f"{name}._preload"]]
    assert finder.stage == 2 and finder.released == 2000
    assert sys.meta_path == before


def test_the_finder_leaves_when_the_import_fails_and_is_not_installed_twice(tmp_path, monkeypatch):
    name = "fake_torch_resident_broken"
    _fake_package(tmp_path, name)
    (tmp_path / name / "_C.py").write_text("raise ImportError('no core')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(resident, "release_gpu_library_pages", lambda: 0)
    before = list(sys.meta_path)
    with pytest.raises(ImportError, match="no core"):
        with resident.handing_back_while_importing(name) as finder:
            __import__(name)
    assert finder.stage == 1 and sys.meta_path == before
    for m in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[m]
    # a package imported already: nothing is installed
    with resident.handing_back_while_importing("numpy") as none:
        assert none is None and sys.meta_path == before


def test_gpu_device_nodes_are_found_by_their_patterns(tmp_path, monkeypatch):
    monkeypatch.setattr(resident, "_GPU_NODES", (str(tmp_path / "nvidiactl"), str(tmp_path / "nvidia[0-9]*")))
    assert resident.gpu_device_nodes() == []
    (tmp_path / "nvidia0").write_text("")
    (tmp_path / "nvidia-uvm").write_text("")
    assert resident.gpu_device_nodes() == [str(tmp_path / "nvidia0")]


_IMPORT = r"""
import os, sys
sys.path.insert(0, {lib!r})
from SeqClassifierLib.resident import handing_back_while_importing, is_gpu_library, mappings, _releasable
if {hand_back}:
    with handing_back_while_importing() as finder:
        import torch
    stage = finder.stage
else:
    import torch
    stage = -1
hwm = [int(l.split()[1]) << 10 for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
held = sum(m.rss for m in mappings(where=is_gpu_library) if _releasable(m))
g = torch.Generator().manual_seed(7)
x = torch.rand(2, 3, 32, 32, generator=g)
w = torch.rand(8, 3, 3, 3, generator=g)
y = torch.nn.functional.group_norm(torch.nn.functional.conv2d(x, w, padding=1), 4)
print(stage, hwm, held, y.numpy().tobytes().hex()[:4096], torch.__file__)
os._exit(0)
"""


@linux_only
def test_torch_imported_that_way_peaks_lower_and_computes_the_same():
    def run(hand_back: bool) -> list:
        code = _IMPORT.format(lib=str(REPO / "SeqClassifier"), hand_back=hand_back)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    stage, hwm, _, bits, _ = run(True)
    plain_stage, plain_hwm, held, plain_bits, _ = run(False)
    assert (int(stage), int(plain_stage)) == (2, -1)
    assert bits == plain_bits
    if int(held) < 16 << 20:
        pytest.skip("torch here maps no GPU library worth handing back (a CPU build)")
    # the CUDA build here: the pages the plain import leaves (~140 MiB; ~330 MiB right after installing)
    # never make the peak: it is lower by at least half of them
    assert int(hwm) <= int(plain_hwm) - int(held) // 2, (hwm, plain_hwm, held)


def test_a_failing_hand_back_never_fails_the_import(tmp_path, monkeypatch):
    name = "fake_torch_resident_failing"
    _fake_package(tmp_path, name)
    monkeypatch.syspath_prepend(str(tmp_path))

    def broken() -> int:
        raise RuntimeError("smaps unreadable in some odd way")

    monkeypatch.setattr(resident, "release_gpu_library_pages", broken)
    try:
        with resident.handing_back_while_importing(name) as finder:
            module = __import__(name)
        assert module._C.VALUE == 1 and finder.stage == 2 and finder.released == 0
    finally:
        for m in [m for m in sys.modules if m.startswith(name)]:
            del sys.modules[m]
