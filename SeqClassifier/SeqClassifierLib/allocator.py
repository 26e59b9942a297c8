"""The C allocator of the processes this package runs itself: freed arrays kept for the next one.

glibc serves a request of 128 KiB or more (the threshold grows with use, to
32 MiB at most) with a fresh ``mmap`` and hands it back to the kernel when it
is freed; memory it frees at the top of its heap it trims back to the kernel
too.  A series' inputs are a dozen such arrays (a 384 x 384 slice in float64
is 1.2 MB: its sort, Laplacian, normalised copy) and the model's activations
are megabytes per layer, so each series made the kernel map, zero and unmap
hundreds of pages again.  On the 2-vCPU benchmark VM that was two fifths of
the image work: ``prepare_input`` of a 384 x 384 slice 11-12 ms with glibc's
defaults, 6.5-7 ms with :func:`keep_freed_memory` (the same bits: where memory
comes from changes no arithmetic).

:func:`keep_freed_memory` raises both thresholds (``mallopt``), so freed
blocks stay in the process for the next array of that size.  The memory kept
is mostly what the largest step used at once, which the process reached
anyway: in-process on the 2,000-file set the peak RSS was 695-724 MiB with it
against 686-701 MiB without (four pairs; ~12 MiB more on average), the same
range as the 2,000-file CLI's before (``Testing/benchmarks/README.md``).

Only the command line (:func:`~SeqClassifierLib.app.cli.console`, which the
Slicer module's classification child runs too) calls it: the library never
changes the allocator of a process it is imported into.  Elsewhere than glibc
(macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Optional

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory"]

#: ``mallopt`` parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: Requests below this come from the heap and go back to it (the batch of 64 images is 12.6 MB,
#: a float32 activation of the first layer 25 MB).
MMAP_THRESHOLD = 64 << 20
#: Free memory at the top of the heap beyond this is given back to the kernel.
TRIM_THRESHOLD = 128 << 20

_applied: Optional[bool] = None


def keep_freed_memory() -> bool:
    """Keep freed memory in this process (glibc: ``mallopt`` of the mmap and trim thresholds); True when
    set, False where the C library has no such setting.  Once per process; inherited by forked children."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # glibc returns 1 on success; musl's stub returns 0
    _applied = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return _applied
