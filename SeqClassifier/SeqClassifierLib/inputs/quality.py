"""Image quality of the slice that represents a series.

A quality mismatch between the data a model was fine-tuned on and the data it
is used on hurts (ProFound fine-tuning study), and a blank, clipped or pure
noise slice tells the image branch nothing.  :func:`image_quality` scores the
raw slice (after rescale slope/intercept, before normalisation) on three
counts, each in [0, 1]:

``snr``       structure over noise: 4 x the standard deviation of the 4 x 4
              block means (noise averages out there, anatomy does not) over
              the noise (Immerkaer's Laplacian estimate, with a median so that
              edges and anatomy filling the field of view do not count): 1 at
              SNR >= 20, 0 at SNR <= 1 (pure noise scores about 0.7);
``coverage``  fraction of foreground pixels (1 at >= 5 %);
``clipping``  pixels stuck at the maximum (1 up to 2 %, 0 from 12 %).

The score is the lowest of the three; a blank slice (all pixels equal) scores
0.  Below :data:`LOW_QUALITY` a series gets the review reason "low image
quality".  Cost: a few percentile computations on one slice (< 1 ms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from SeqClassifierLib.inputs.block_mean import block_mean
from SeqClassifierLib.inputs.laplacian import float32_is_exact, laplacian_median
from SeqClassifierLib.inputs.order_stats import percentile

#: Below this score the image is flagged as low quality.
LOW_QUALITY = 0.3


@dataclass(frozen=True)
class ImageQuality:
    score: float
    snr: float
    coverage: float
    clipped_fraction: float
    #: What pulled the score down, in words (empty when good).
    problems: list[str] = field(default_factory=list)

    @property
    def is_low(self) -> bool:
        return self.score < LOW_QUALITY

    def to_dict(self) -> dict:
        return {"score": round(self.score, 3), "snr": round(self.snr, 2), "coverage": round(self.coverage, 3),
                "clipped_fraction": round(self.clipped_fraction, 4), "problems": list(self.problems)}


def _clip01(v: float) -> float:
    return float(min(1.0, max(0.0, v)))


def _fraction_above(flat: np.ndarray, ordered64: Optional[np.ndarray], value: float, inclusive: bool = False) -> float:
    """``float(np.mean(flat > value))`` (``inclusive``: ``>=``), the same bits: a count over the size, the same
    division; counted in ``ordered64`` (``flat`` sorted, float64) by ``searchsorted`` where the caller has it."""
    if ordered64 is None:
        return float(np.mean(flat >= value if inclusive else flat > value))
    n = flat.size
    first = int(np.searchsorted(ordered64, value, "left" if inclusive else "right"))
    return float(np.float64(n - first) / np.intp(n))


def image_quality(img: np.ndarray, sorted_values: Optional[np.ndarray] = None) -> ImageQuality:
    """Quality of one 2D slice (any numeric dtype).  ``sorted_values``: the slice's pixels sorted
    (:func:`~SeqClassifierLib.inputs.order_stats.ordered`), when the caller has sorted them already;
    used only for a float32 slice without NaN or infinity."""
    raw = np.asarray(img)
    a = np.asarray(raw, dtype=np.float64)
    if a.ndim == 3:  # RGB / multi-channel: judge the luminance
        a = a.mean(axis=-1)
    a = a[np.isfinite(a)] if not np.isfinite(a).all() else a
    if a.size == 0:
        return ImageQuality(0.0, 0.0, 0.0, 0.0, ["no finite pixel"])
    lo, hi = float(np.min(a)), float(np.max(a))
    if hi - lo <= 0:
        return ImageQuality(0.0, 0.0, 0.0, 1.0, ["blank slice (every pixel the same)"])
    flat = a.ravel()
    if sorted_values is not None and (raw.dtype != np.float32 or sorted_values.size != flat.size):
        sorted_values = None
    # The same bits as np.percentile(flat, 99.0), from one sort (inputs.order_stats)
    ordered64 = None if sorted_values is None else sorted_values.astype(np.float64)
    p99 = float(percentile(flat, 99.0, ordered64))
    level = lo + 0.1 * (p99 - lo)
    coverage = _fraction_above(flat, ordered64, level)
    # Noise: Immerkaer's Laplacian-difference estimate with a median (robust to edges and to anatomy
    # filling the field of view, where no air border exists): the [1 -2 1] x [1 -2 1] mask has norm 6.
    # (inputs.laplacian: the same bits in fewer passes where no sum of the mask rounds; in float32 for
    # whole-number pixels, the usual MR case)
    exact32 = sorted_values is not None and a.ndim == 2 and float32_is_exact(raw, sorted_values)
    if a.ndim == 2 and min(a.shape) >= 3:
        noise = 1.4826 * laplacian_median(a, raw, sorted_values, exact32) / 6.0
    else:
        noise = 1.4826 * float(np.median(np.abs(flat - np.median(flat))))
    # Signal: structure that survives 4 x 4 block averaging (noise shrinks 4-fold there, anatomy does
    # not), so a noisy high-b diffusion image keeps its score and a slice of pure noise does not.
    if a.ndim == 2 and min(a.shape) >= 8:
        # the bits of a.reshape(h, 4, w, 4).mean(axis=(1, 3)); from float32 whole numbers below 2**20 the
        # sums of 16 are exact in float32 too
        blocks = block_mean(raw, 4).astype(np.float64) if exact32 else block_mean(a, 4)
        signal = 4.0 * float(np.std(blocks))
    else:
        signal = float(np.std(flat))
    if noise <= 1e-9 * max(1.0, abs(hi)):
        snr = math.inf if signal > 0 else 0.0
    else:
        snr = max(0.0, signal / noise)
    clipped = _fraction_above(flat, ordered64, hi, inclusive=True)  # hi > lo here (blank slices returned above)
    snr_score = 1.0 if math.isinf(snr) else _clip01(math.log10(max(snr, 1e-6)) / math.log10(20.0))
    cov_score = _clip01(coverage / 0.05)
    clip_score = 1.0 - _clip01((clipped - 0.02) / 0.10)
    problems = []
    if snr_score < LOW_QUALITY:
        problems.append(f"low signal-to-noise ({snr:.1f})")
    if cov_score < LOW_QUALITY:
        problems.append(f"almost empty ({100 * coverage:.1f} % foreground)")
    if clip_score < LOW_QUALITY:
        problems.append(f"clipped ({100 * clipped:.0f} % of pixels at the maximum)")
    return ImageQuality(min(snr_score, cov_score, clip_score), snr if not math.isinf(snr) else 1e6,
                        coverage, clipped, problems)
