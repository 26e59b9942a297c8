"""The small grey picture of a series' centre slice that the Slicer panel shows beside its row.

:func:`thumbnail_uint8` is made from the very array the model's input comes
from (:func:`~.prepared.prepare_input` with ``thumbnail_size``), so a run with
thumbnails decodes each centre slice once; :mod:`SeqClassifierLib.app.thumbnails`
encodes it for the JSON-lines output.  numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["SIZE", "thumbnail_uint8"]

#: Side of a thumbnail in pixels.
SIZE = 64


def thumbnail_uint8(image: Any, size: int = SIZE) -> np.ndarray:
    """A 2D image -> ``size`` x ``size`` uint8 (percentile window, aspect kept, black padding)."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:  # colour or multi-channel: average
        img = img.mean(axis=-1)
    if img.ndim != 2 or img.size == 0:
        return np.zeros((size, size), dtype=np.uint8)
    img = np.where(np.isfinite(img), img, 0.0)
    lo, hi = np.percentile(img, [1.0, 99.0])
    scaled = np.zeros_like(img) if hi - lo < 1e-6 else np.clip((img - lo) / (hi - lo), 0.0, 1.0)
    h, w = scaled.shape
    scale = size / float(max(h, w))
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    rows = np.minimum((np.arange(nh) / scale).astype(int), h - 1)
    cols = np.minimum((np.arange(nw) / scale).astype(int), w - 1)
    small = scaled[rows][:, cols]
    out = np.zeros((size, size), dtype=np.uint8)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = (small * 255.0 + 0.5).astype(np.uint8)
    return out
