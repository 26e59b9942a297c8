"""Image quality of the represented slice (inputs/quality.py)."""

from __future__ import annotations

import numpy as np

from SeqClassifierLib.inputs.image import load_center_slice
from SeqClassifierLib.inputs.quality import LOW_QUALITY, image_quality


def _phantom(noise=5.0, seed=0):
    rng = np.random.default_rng(seed)
    img = np.zeros((128, 128))
    yy, xx = np.mgrid[:128, :128]
    img[(yy - 64) ** 2 + (xx - 64) ** 2 < 40 ** 2] = 800.0
    img[(yy - 64) ** 2 + (xx - 50) ** 2 < 10 ** 2] = 1500.0
    return np.abs(img + rng.normal(0, noise, img.shape) + 1j * rng.normal(0, noise, img.shape))


def test_good_phantom_is_not_low():
    q = image_quality(_phantom())
    assert not q.is_low and q.score > 0.9 and q.snr > 50 and q.problems == []


def test_blank_noise_clipped_and_empty_slices_are_low():
    assert image_quality(np.full((64, 64), 7.0)).problems == ["blank slice (every pixel the same)"]
    rng = np.random.default_rng(1)
    noise = image_quality(np.abs(rng.normal(size=(128, 128)) + 1j * rng.normal(size=(128, 128))))
    assert noise.is_low and noise.problems[0].startswith("low signal-to-noise")
    clipped = np.minimum(_phantom() * 3, 2000.0)
    q = image_quality(clipped)
    assert q.is_low and any(p.startswith("clipped") for p in q.problems)
    empty = np.zeros((128, 128))
    empty[60:62, 60:62] = 100.0
    assert image_quality(empty).problems[0].startswith("almost empty")
    assert image_quality(empty + np.abs(rng.normal(0, 5, empty.shape))).is_low  # a dot in noise


def test_noise_lowers_the_score_monotonically():
    scores = [image_quality(_phantom(noise=n)).score for n in (5, 60, 200, 3000)]
    assert scores == sorted(scores, reverse=True) and scores[-1] < LOW_QUALITY <= scores[0]


def test_real_prostatex_is_not_low_and_scrambled_vendor_pixels_are(prostatex_discovery, vendors):
    """The ProstateX slices are real images; the dicom2nifti vendor samples carry pixel data replaced by
    noise (their headers are the point of that set), which must read as low quality."""
    from SeqClassifierLib.dicom.discovery import discover_series

    px = [image_quality(load_center_slice(r)) for r in prostatex_discovery.series]
    assert len(px) == 18 and min(q.score for q in px) >= LOW_QUALITY
    vend = [image_quality(load_center_slice(r)) for r in discover_series(vendors).series]
    low = [q for q in vend if q.is_low]
    assert len(low) >= 0.8 * len(vend)
    assert all(q.problems[0].startswith("low signal-to-noise") for q in low)
