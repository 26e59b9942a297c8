"""What the model is given for one series: :class:`PreparedInput`, made by :func:`prepare_input`.

Metadata features, the centre slice as the model sees it and its quality are
numpy-only work (no torch): the classifier prepares a window of them with
every core (:mod:`.prepare_pool`) before the model runs on it, and the command
line prepares them in the forked process that reads headers while torch
imports (:mod:`SeqClassifierLib.app.startup`).
Both call :func:`prepare_input`, so the inputs are the same bits either way.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np

from SeqClassifierLib.inputs.features import extract_features
from SeqClassifierLib.inputs.image import ImageUnavailable, load_center_slice, square_slice, standardize
from SeqClassifierLib.inputs.order_stats import ordered
from SeqClassifierLib.inputs.quality import ImageQuality, image_quality
from SeqClassifierLib.inputs.study import SeriesContext
from SeqClassifierLib.inputs.thumbnail import thumbnail_uint8
from SeqClassifierLib.records import SeriesRecord


@dataclass(frozen=True)
class PreparedInput:
    """What the model is given for one series."""

    #: The metadata feature vector (:func:`~SeqClassifierLib.inputs.features.extract_features`).
    meta: np.ndarray
    #: The standardised centre slice ``[3, size, size]`` (``[size, size]`` in [0, 1] before
    #: :meth:`standardized`), or None (no image, unreadable, too low quality).
    image: Optional[np.ndarray]
    #: Why the image could not be used ("" when it could, or when it was not read).
    image_note: str = ""
    quality: Optional[ImageQuality] = None
    #: The centre slice as a uint8 thumbnail (:func:`~.thumbnail.thumbnail_uint8`) when asked for,
    #: made from the same decoded array; None when not asked for or unreadable.
    thumbnail: Optional[np.ndarray] = None

    def standardized(self, mean: Sequence[float], std: Sequence[float]) -> "PreparedInput":
        """This input with a ``[size, size]`` slice replicated to 3 channels and standardised
        (:func:`~SeqClassifierLib.inputs.image.standardize`); unchanged when already standardised."""
        if self.image is None or self.image.ndim == 3:
            return self
        return replace(self, image=standardize(self.image, mean, std))


def prepare_input(record: SeriesRecord, context: Optional[SeriesContext], *, size: int, mean: Sequence[float],
                  std: Sequence[float], uses_image: bool = True, standardize_image: bool = True,
                  thumbnail_size: Optional[int] = None) -> PreparedInput:
    """The :class:`PreparedInput` of one series.  ``standardize_image=False`` keeps the slice as
    ``[size, size]`` in [0, 1] (a third of the bytes, to send it to another process);
    ``thumbnail_size``: also a thumbnail of that size, from the same decoded slice."""
    meta = extract_features(record, context)
    img, note, quality, thumb = None, "", None, None
    if thumbnail_size and not uses_image:  # a metadata-only model: the slice is read for the picture alone
        with contextlib.suppress(Exception):
            thumb = thumbnail_uint8(load_center_slice(record), thumbnail_size)
    if uses_image:
        try:
            raw = load_center_slice(record)
            if thumbnail_size:
                try:
                    thumb = thumbnail_uint8(raw, thumbnail_size)  # reads raw, never writes it
                except Exception:  # an unreadable picture never costs the series its image
                    thumb = None
            # one sort of the pixels serves the percentiles of both (the same bits as without it)
            values = ordered(raw) if raw.dtype == np.float32 and raw.ndim == 2 else None
            quality = image_quality(raw, values)
            # A slice of too low quality (blank, pure noise, clipped) tells the image branch nothing it
            # was trained on: the model decides from the metadata, as for a missing image.
            if not quality.is_low:
                img = square_slice(raw, size, values)  # the one image path (inputs.image)
        except ImageUnavailable as exc:
            note = f"image unavailable, metadata only: {exc}"
        except Exception as exc:  # a corrupt slice must not stop the batch
            note = f"image unreadable, metadata only: {type(exc).__name__}: {exc}"
    prepared = PreparedInput(meta, img, note, quality, thumb)
    return prepared.standardized(mean, std) if standardize_image else prepared
