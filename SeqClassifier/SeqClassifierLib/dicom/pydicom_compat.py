"""Every difference between the pydicom versions SeqClassifier runs on (2.4 and 3.x).

Slicer up to 5.10 bundles pydicom 2.4; pip installs bring 3.x.  The rest of
the library uses the names here instead of testing versions itself.

What differs (2.4 | 3.x) and the name here that hides it:

* element read hooks: only ``config.data_element_callback`` | also
  ``pydicom.hooks.hooks`` (``raw_element_vr`` / ``raw_element_value``) --
  :func:`element_hooks_are_default`;
* decoding pixel data: ``Dataset.pixel_array`` (the whole array; YCbCr colour
  left as it is) | ``pydicom.pixels.pixel_array`` (one frame, straight from the
  file; YCbCr converted to RGB; a deflated file needs the whole data set) --
  :func:`pixel_array` (colour always RGB);
* user-registered private transfer syntaxes: none |
  ``uid.PrivateTransferSyntaxes`` -- :func:`private_transfer_syntaxes`;
* the dictionary VR the file reader looks up: ``datadict.dictionary_VR`` |
  ``datadict._dictionary_vr_fast`` (same answers) -- :data:`dictionary_vr`;
* a ``VR`` enum member as text: ``str(VR.OB)`` is ``"VR.OB"`` | ``"OB"`` --
  :func:`vr_text`;
* writing a file: ``save_as(write_like_original=...)``, encoding from
  ``ds.is_implicit_VR`` / ``is_little_endian``, the file meta must be complete
  | ``save_as(enforce_file_format=..., implicit_vr=..., little_endian=...)``,
  the file meta filled in from the data set -- :func:`save_as`.

Same results on both: every header value, every native pixel, the labels and
probabilities of ``classify`` on the ProstateX studies.  Compressed pixel data
decodes the same for lossless syntaxes; lossy JPEG baseline may differ by one
grey level, as 2.4 and 3.x pick different decoders (Pillow vs pylibjpeg) for it.
"""

from __future__ import annotations

from typing import Any, Optional

import pydicom
import pydicom.datadict
import pydicom.filereader
import pydicom.uid
from pydicom.dataset import FileMetaDataset

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

        try:
            return pixel_array_v3(path, index=index)
        except Exception:
            if not _is_deflated(path):
                raise
            # pixel_array(path) finds no pixel data in a deflated file; the data set read whole has it
            return pixel_array_v3(pydicom.dcmread(path), index=index)
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if index is not None and n_frames > 1:
        arr = arr[index]
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if int(ds.get("SamplesPerPixel", 1) or 1) == 3 and photometric in ("YBR_FULL", "YBR_FULL_422"):
        # 2.4 leaves YCbCr as it is; 3.x (as_rgb) converts it to RGB: colour comes out RGB on both
        from pydicom.pixel_data_handlers.util import convert_color_space  # 2.x only (moved in 3.x)

        arr = convert_color_space(arr, photometric, "RGB")
    return arr


def _is_deflated(path: str) -> bool:
    try:
        meta = pydicom.filereader.read_file_meta_info(path)
    except Exception:
        return False
    return getattr(meta, "TransferSyntaxUID", None) == pydicom.uid.DeflatedExplicitVRLittleEndian


def vr_text(vr: Any) -> str:
    """A VR (pydicom's ``VR`` enum member or a plain string) as its two letters."""
    return str(getattr(vr, "value", vr))


def private_transfer_syntaxes() -> list:
    """Transfer syntaxes a user registered with pydicom (3.x); none exist on 2.x."""
    return list(getattr(pydicom.uid, "PrivateTransferSyntaxes", ()))


#: The dictionary VR of a tag as pydicom's file reader looks it up (KeyError when unknown).
dictionary_vr = getattr(pydicom.datadict, "_dictionary_vr_fast", None) or pydicom.datadict.dictionary_VR


def save_as(ds: Any, path: Any, *, enforce_file_format: bool = False, implicit_vr: Optional[bool] = None,
            little_endian: Optional[bool] = None) -> None:
    """``ds.save_as`` with pydicom 3's arguments on either version.

    ``enforce_file_format``: write the DICOM File Format (preamble, complete
    file meta) -- on 2.4 the missing file meta elements are filled in from the
    data set as 3.x does (SOP class / instance, transfer syntax).  ``implicit_vr``
    / ``little_endian``: the encoding (default: the file meta's transfer syntax,
    else how the data set was read).
    """
    if PYDICOM_VERSION >= (3, 0):
        kw = {}
        if implicit_vr is not None:
            kw["implicit_vr"] = implicit_vr
        if little_endian is not None:
            kw["little_endian"] = little_endian
        ds.save_as(path, enforce_file_format=enforce_file_format, **kw)
        return
    meta = getattr(ds, "file_meta", None)
    ts = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if implicit_vr is None:
        implicit_vr = ts.is_implicit_VR if ts is not None else ds.is_implicit_VR
    if little_endian is None:
        little_endian = ts.is_little_endian if ts is not None else ds.is_little_endian
    ds.is_implicit_VR, ds.is_little_endian = implicit_vr, little_endian
    if enforce_file_format:
        if meta is None:
            meta = ds.file_meta = FileMetaDataset()
        if "MediaStorageSOPClassUID" not in meta and "SOPClassUID" in ds:
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
        if "MediaStorageSOPInstanceUID" not in meta and "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if "TransferSyntaxUID" not in meta:
            meta.TransferSyntaxUID = (pydicom.uid.ImplicitVRLittleEndian if implicit_vr
                                      else pydicom.uid.ExplicitVRLittleEndian if little_endian
                                      else pydicom.uid.ExplicitVRBigEndian)
    ds.save_as(path, write_like_original=not enforce_file_format)
