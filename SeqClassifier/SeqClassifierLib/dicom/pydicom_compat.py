"""Every difference between the pydicom versions SeqClassifier runs on (2.4 and 3.x).

Slicer up to 5.10 bundles pydicom 2.4; pip installs bring 3.x.  The rest of
the library uses the names here instead of testing versions itself.

========================  ==============================  ===============================
what                      pydicom 2.4                     pydicom 3.x
========================  ==============================  ===============================
element read hooks        ``config.data_element_callback``  ``pydicom.hooks.hooks``
                          only (no ``pydicom.hooks``)     (``raw_element_vr`` /
                                                          ``raw_element_value``)
decode pixel data         ``Dataset.pixel_array``         ``pydicom.pixels.pixel_array``
                          (whole array)                   (one frame from the file)
========================  ==============================  ===============================
"""

from __future__ import annotations

from typing import Any, Optional

import pydicom

#: pydicom's version as (major, minor).
PYDICOM_VERSION: tuple[int, int] = tuple(int(p) for p in pydicom.__version__.split(".")[:2])  # type: ignore[assignment]

try:  # pydicom >= 3.0
    import pydicom.hooks as _hooks
except ImportError:  # pydicom 2.x: no hooks module
    _hooks = None


def element_hooks_are_default() -> bool:
    """Whether no one replaced pydicom's raw element hooks (3.x); always True on 2.x,
    which has none (its ``config.data_element_callback`` is checked by the caller)."""
    if _hooks is None:
        return True
    h = _hooks.hooks
    return (h.raw_element_vr is _hooks.raw_element_vr
            and h.raw_element_value is _hooks.raw_element_value
            and not h.raw_element_kwargs)


def pixel_array(path: str, index: Optional[int] = None) -> Any:
    """The decoded pixels of ``path``: frame ``index`` of a multi-frame file (None:
    the whole array).  3.x: ``pydicom.pixels.pixel_array`` (reads only that frame);
    2.4: ``dcmread(path).pixel_array`` and the frame taken from it."""
    if PYDICOM_VERSION >= (3, 0):
        # Imported here: the decoders load their plugins, not needed for discovery.
        from pydicom.pixels import pixel_array as pixel_array_v3

        return pixel_array_v3(path, index=index)
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if index is not None and n_frames > 1:
        arr = arr[index]
    return arr
