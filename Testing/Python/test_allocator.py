"""The command line's allocator setting (allocator.py): freed arrays stay in the process, so preparing
series one after another stops making the kernel map and zero pages again; the library alone leaves
the allocator as it is."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_SCRIPT = r"""
import resource, sys
sys.path.insert(0, {lib!r})
if sys.argv[1] == "keep":
    from SeqClassifierLib.allocator import keep_freed_memory
    assert keep_freed_memory() is True
from SeqClassifierLib.dicom.discovery import discover_series
from SeqClassifierLib.inputs.image import load_center_slice
from SeqClassifierLib.inputs.prepared import prepare_input
series = [r for r in discover_series([{root!r}]).series if load_center_slice(r).size >= 256 * 256]
def prepare():
    for r in series:
        prepare_input(r, None, size=128, mean=(0.5,) * 3, std=(0.5,) * 3)
prepare(); prepare()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    prepare()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / (5 * len(series)))
"""


def _faults_per_series(root: Path, mode: str) -> float:
    code = _SCRIPT.format(lib=str(REPO / "SeqClassifier"), root=str(root))
    out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_preparing_series_again_faults_no_pages_in_once_freed_memory_is_kept(prostatex):
    kept = _faults_per_series(prostatex, "keep")
    default = _faults_per_series(prostatex, "default")
    # glibc's defaults here: ~1,900 page faults a 384 x 384 series (7 MB mapped and zeroed again)
    assert kept < 20, (kept, default)


def test_the_library_leaves_the_allocator_alone_and_the_command_line_sets_it():
    code = ("import sys; sys.path.insert(0, %r)\n"
            "import SeqClassifierLib.model.classifier, SeqClassifierLib.app.cli as cli, SeqClassifierLib.allocator as a\n"
            "print(a._applied)\n"  # importing, even the command line's module, changes nothing
            "cli.main = lambda: print(a._applied) or 0\n"
            "cli.console()\n" % str(REPO / "SeqClassifier"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    glibc = platform.libc_ver()[0] == "glibc" and sys.platform.startswith("linux")
    assert out.stdout.split() == ["None", str(glibc)]
