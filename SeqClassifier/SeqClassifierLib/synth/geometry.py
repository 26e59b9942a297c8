"""Slice stacks in patient coordinates and trilinear reslicing of the phantom."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from SeqClassifierLib.labels import Plane
from SeqClassifierLib.synth.phantom import Phantom


@dataclass
class _Stack:
    """A stack of parallel slices: orientation, matrix and slice positions."""

    row_dir: np.ndarray      # direction along a row (increasing column index)
    col_dir: np.ndarray      # direction down a column (increasing row index)
    center: np.ndarray
    rows: int
    cols: int
    ps_row: float            # spacing between rows (mm), PixelSpacing[0]
    ps_col: float            # spacing between columns (mm), PixelSpacing[1]
    n_slices: int
    spacing: float           # between slice centres
    thickness: float
    direction: int = 1       # +1: positions increase along the normal with the slice index

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)

    @property
    def iop(self) -> list[float]:
        return [*self.row_dir.tolist(), *self.col_dir.tolist()]

    def offsets(self) -> np.ndarray:
        k = np.arange(self.n_slices, dtype=np.float64)
        return self.direction * (k - (self.n_slices - 1) / 2.0) * self.spacing

    def ipp(self, k: int) -> np.ndarray:
        c = self.center + self.offsets()[k] * self.normal
        return (c - self.row_dir * self.ps_col * (self.cols - 1) / 2.0
                - self.col_dir * self.ps_row * (self.rows - 1) / 2.0)

    def points(self, n_sub: int) -> np.ndarray:
        """Patient positions (n_sub, n_slices, rows, cols, 3) of pixel centres and sub-samples."""
        sub = (np.arange(n_sub) + 0.5) / n_sub - 0.5
        sub = sub * self.thickness if n_sub > 1 else np.zeros(1)
        off = self.offsets()
        j = (np.arange(self.cols, dtype=np.float32) - (self.cols - 1) / 2.0) * self.ps_col
        i = (np.arange(self.rows, dtype=np.float32) - (self.rows - 1) / 2.0) * self.ps_row
        n = self.normal.astype(np.float32)
        base = (i[:, None, None] * self.col_dir.astype(np.float32)
                + j[None, :, None] * self.row_dir.astype(np.float32))       # (R, C, 3)
        shift = (sub[:, None] + off[None, :]).astype(np.float32)            # (S, N)
        return (self.center.astype(np.float32) + shift[:, :, None, None, None] * n
                + base[None, None])


def _plane_dirs(plane: Plane, tilt_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    t = math.radians(tilt_deg)
    if plane == Plane.AXIAL:
        return np.array([1.0, 0.0, 0.0]), np.array([0.0, math.cos(t), -math.sin(t)])
    if plane == Plane.CORONAL:
        return np.array([1.0, 0.0, 0.0]), np.array([0.0, -math.sin(t), -math.cos(t)])
    if plane == Plane.SAGITTAL:
        return np.array([0.0, math.cos(t), -math.sin(t)]), np.array([0.0, -math.sin(t), -math.cos(t)])
    raise ValueError(plane)


_CORNERS = [(dx, dy, dz) for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)]


def _corners(pts: np.ndarray, origin: np.ndarray, h: float, shape: Sequence[int]):
    """Flat index of the lower corner and the fractional weights of trilinear interpolation."""
    f = (pts - origin.astype(np.float32)) / np.float32(h)
    lim = np.array(shape, dtype=np.float32) - 1.001
    np.clip(f, 0.0, lim, out=f)
    i0 = f.astype(np.int32)
    w = f - i0
    sy, sz = int(shape[1]) * int(shape[2]), int(shape[2])
    base = i0[:, 0].astype(np.int64) * sy + i0[:, 1] * sz + i0[:, 2]
    offsets = [dx * sy + dy * sz + dz for dx, dy, dz in _CORNERS]
    return base, offsets, (w[:, 0], w[:, 1], w[:, 2])


def _corner_weights(w) -> list[np.ndarray]:
    wx, wy, wz = w
    return [(wx if dx else 1 - wx) * (wy if dy else 1 - wy) * (wz if dz else 1 - wz) for dx, dy, dz in _CORNERS]


class _Sampler:
    """Trilinear reslicing of per-tissue values at fixed patient positions.

    The 8 neighbouring labels of every position are looked up once; afterwards
    any contrast is a per-tissue lookup table (``sample(lut)``).  Positions whose
    8 neighbours share one tissue (most of them) need a single lookup; only
    those at tissue boundaries are interpolated.  The result is averaged over
    the sub-samples of the first axis (slice thickness).
    """

    def __init__(self, phantom: Phantom, points: np.ndarray, bias: np.ndarray):
        self.shape = tuple(points.shape[1:-1])
        self.n_sub = points.shape[0]
        lab = phantom.labels
        pts = points.reshape(-1, 3)
        base, offsets, w = _corners(pts, phantom.origin, phantom.spacing, lab.shape)
        flat = lab.reshape(-1)
        labs = [flat[base + off] for off in offsets]
        same = np.ones(len(base), dtype=bool)
        for other in labs[1:]:
            same &= other == labs[0]
        self.lab0 = labs[0]
        self.edge = np.flatnonzero(~same)
        self.edge_labs = [lb[self.edge] for lb in labs]
        self.edge_w = [wt[self.edge] for wt in _corner_weights(w)]
        # Texture modulation and bias (fixed per geometry).
        tex = _trilinear(phantom.texture, phantom.texture_origin, phantom.texture_spacing, pts)
        amp = self._interp(phantom.props.tex)
        mod = (1.0 + amp * tex) * bias.reshape(-1)
        self.mod = np.clip(mod, 0.2, None).astype(np.float32)

    def _interp(self, lut: np.ndarray) -> np.ndarray:
        lut = np.asarray(lut, dtype=np.float32)
        out = lut[self.lab0]
        acc = np.zeros(len(self.edge), dtype=np.float32)
        for lab, wt in zip(self.edge_labs, self.edge_w):
            acc += wt * lut[lab]
        out[self.edge] = acc
        return out

    def sample(self, lut: np.ndarray, modulate: bool = True) -> np.ndarray:
        v = self._interp(lut)
        if modulate:
            v *= self.mod
        return v.reshape((self.n_sub,) + self.shape).mean(axis=0)


def _trilinear(vol: np.ndarray, origin: np.ndarray, h: float, pts: np.ndarray) -> np.ndarray:
    base, offsets, w = _corners(pts, origin, h, vol.shape)
    flat = vol.reshape(-1)
    out = np.zeros(len(base), dtype=np.float32)
    for off, wt in zip(offsets, _corner_weights(w)):
        out += wt * flat[base + off]
    return out


@dataclass
class _Bias:
    """Smooth receive-coil sensitivity: exp of a low-order polynomial in position."""

    coef: np.ndarray   # x, y, z, r^2, y^2 terms

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        p = pts.astype(np.float32) / np.float32(150.0)
        x, y, z = p[..., 0], p[..., 1], p[..., 2]
        c = self.coef
        e = c[0] * x + c[1] * y + c[2] * z + c[3] * (x * x + y * y) + c[4] * y * y
        return np.exp(e).astype(np.float32)
