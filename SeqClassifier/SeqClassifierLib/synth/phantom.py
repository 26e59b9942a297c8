"""The pelvis phantom: tissue classes, per-tissue properties and the label volume of one study."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from SeqClassifierLib.synth.base import _study_rng

class Tissue(enum.IntEnum):
    """Tissue classes of the phantom's label volume."""

    AIR = 0
    FAT = 1
    MUSCLE = 2
    CORTICAL_BONE = 3
    MARROW = 4
    URINE = 5
    RECTAL_WALL = 6
    RECTAL_CONTENT = 7
    PERIPHERAL_ZONE = 8
    TRANSITION_ZONE = 9
    LESION = 10
    ARTERY = 11
    VEIN = 12
    SEMINAL_VESICLE = 13
    STROMA = 14


_N_TISSUES = len(Tissue)

# Base properties at 3 T: PD, T1 (ms), T2 (ms), ADC (1e-3 mm^2/s), Ktrans (/min),
# ve, vp, fat (suppressed by fat saturation), flow (signal factor on spin-echo /
# EPI: flow void), texture amplitude, diffusion anisotropy.
_BASE_PROPS: dict[Tissue, tuple[float, ...]] = {
    #                       pd    t1     t2    adc   ktr   ve    vp    fat  flow tex   aniso
    Tissue.AIR:             (0.0, 1000., 1.0,  0.0,  0.0,  0.0,  0.0,  0.0, 1.0, 0.0,  0.0),
    Tissue.FAT:             (0.95, 380., 130., 0.02, 0.01, 0.05, 0.005, 1.0, 1.0, 0.05, 0.0),
    Tissue.MUSCLE:          (0.75, 1420., 45., 1.45, 0.04, 0.10, 0.01, 0.0, 1.0, 0.06, 1.0),
    Tissue.CORTICAL_BONE:   (0.05, 1000., 1.5, 0.0,  0.0,  0.0,  0.0,  0.0, 1.0, 0.0,  0.0),
    Tissue.MARROW:          (0.85, 450., 95.,  0.30, 0.03, 0.10, 0.02, 1.0, 1.0, 0.12, 0.0),
    Tissue.URINE:           (1.0, 3500., 1800., 3.0, 0.0,  0.0,  0.0,  0.0, 1.0, 0.01, 0.0),
    Tissue.RECTAL_WALL:     (0.80, 1300., 55., 1.30, 0.15, 0.30, 0.03, 0.0, 1.0, 0.06, 0.3),
    Tissue.RECTAL_CONTENT:  (0.60, 900., 80.,  0.90, 0.0,  0.0,  0.0,  0.0, 1.0, 0.35, 0.0),
    Tissue.PERIPHERAL_ZONE: (0.90, 1700., 130., 1.55, 0.08, 0.25, 0.01, 0.0, 1.0, 0.10, 0.2),
    Tissue.TRANSITION_ZONE: (0.85, 1600., 85., 1.25, 0.12, 0.30, 0.02, 0.0, 1.0, 0.15, 0.2),
    Tissue.LESION:          (0.85, 1600., 75., 0.80, 0.45, 0.30, 0.05, 0.0, 1.0, 0.05, 0.1),
    Tissue.ARTERY:          (0.90, 1900., 250., 2.8, 0.0,  0.0,  1.0,  0.0, 0.08, 0.0, 0.0),
    Tissue.VEIN:            (0.90, 1900., 150., 2.5, 0.0,  0.0,  1.0,  0.0, 0.35, 0.0, 0.0),
    Tissue.SEMINAL_VESICLE: (0.95, 2500., 350., 2.0, 0.03, 0.40, 0.01, 0.0, 1.0, 0.10, 0.0),
    Tissue.STROMA:          (0.80, 1500., 45., 1.10, 0.05, 0.15, 0.01, 0.0, 1.0, 0.05, 0.5),
}
_PROP_NAMES = ("pd", "t1", "t2", "adc", "ktrans", "ve", "vp", "fat", "flow", "tex", "aniso")


@dataclass
class _Props:
    """Per-tissue property vectors (index = :class:`Tissue` value)."""

    pd: np.ndarray
    t1: np.ndarray
    t2: np.ndarray
    adc: np.ndarray          # mm^2/s * 1e3
    ktrans: np.ndarray       # /min
    ve: np.ndarray
    vp: np.ndarray
    fat: np.ndarray
    flow: np.ndarray
    tex: np.ndarray
    aniso: np.ndarray
    cbf: Optional[np.ndarray] = None   # perfusion, ml/100 g/min (head phantom only)


@dataclass
class Phantom:
    """Label volume of one study's pelvis and its tissue properties.

    ``labels[ix, iy, iz]`` is the :class:`Tissue` of the voxel centred at
    ``origin + spacing * (ix, iy, iz)`` in patient coordinates (LPS, mm).
    """

    labels: np.ndarray
    origin: np.ndarray
    spacing: float
    props: _Props
    texture: np.ndarray
    texture_origin: np.ndarray
    texture_spacing: float
    field_strength: float
    has_lesion: bool
    prostate_center: np.ndarray
    prostate_semi_axes: np.ndarray
    lesion_center: Optional[np.ndarray]
    kind: str = "prostate"
    """``"prostate"`` (labels are :class:`Tissue`; ``prostate_*`` describe the gland) or
    ``"neuro"`` (labels are :class:`HeadTissue`; ``prostate_*`` then hold the brain's
    centre and semi-axes)."""

    def label_at(self, points: np.ndarray) -> np.ndarray:
        """Tissue label (nearest voxel) at patient positions ``points`` (..., 3) in mm.

        Positions left/right or in front/behind the volume are air; above or
        below it the nearest plane continues (the body goes on).
        """
        pts = np.asarray(points, dtype=np.float64)
        idx = np.rint((pts - self.origin) / self.spacing).astype(np.int64)
        shape = self.labels.shape
        inside = ((idx[..., 0] >= 0) & (idx[..., 0] < shape[0])
                  & (idx[..., 1] >= 0) & (idx[..., 1] < shape[1]))
        ix = np.clip(idx[..., 0], 0, shape[0] - 1)
        iy = np.clip(idx[..., 1], 0, shape[1] - 1)
        iz = np.clip(idx[..., 2], 0, shape[2] - 1)
        out = self.labels[ix, iy, iz]
        return np.where(inside, out, np.uint8(Tissue.AIR)).astype(np.uint8)

def _tissue_props(rng: np.random.Generator, field_strength: float) -> _Props:
    table = np.array([_BASE_PROPS[t] for t in Tissue], dtype=np.float64)
    cols = {name: table[:, i].copy() for i, name in enumerate(_PROP_NAMES)}
    n = _N_TISSUES
    cols["t2"] *= rng.uniform(0.9, 1.1, n)
    cols["t1"] *= rng.uniform(0.93, 1.07, n)
    cols["pd"] *= rng.uniform(0.95, 1.05, n)
    cols["adc"] *= rng.uniform(0.94, 1.06, n)
    cols["ktrans"] *= rng.uniform(0.8, 1.25, n)
    # Diagnostic ranges the tests and the model rely on.
    cols["adc"][Tissue.PERIPHERAL_ZONE] = rng.uniform(1.45, 1.65)
    cols["adc"][Tissue.TRANSITION_ZONE] = rng.uniform(1.18, 1.35)
    cols["adc"][Tissue.LESION] = rng.uniform(0.70, 0.90)
    cols["adc"][Tissue.URINE] = rng.uniform(2.95, 3.1)
    cols["t2"][Tissue.PERIPHERAL_ZONE] = rng.uniform(100, 140)
    cols["t2"][Tissue.LESION] = rng.uniform(65, 82)
    cols["ktrans"][Tissue.LESION] = rng.uniform(0.3, 0.6)
    cols["ve"][Tissue.LESION] = rng.uniform(0.22, 0.35)
    if field_strength < 2.0:  # shorter T1 at 1.5 T for everything but fluids
        soft = np.ones(n)
        soft[[Tissue.URINE, Tissue.AIR]] = 1.0 / 0.8
        cols["t1"] *= 0.8 * soft
        cols["t2"] *= 1.05
    return _Props(**{k: v.astype(np.float32) for k, v in cols.items()})


class _Painter:
    """Paints analytic shapes into a label volume, each within its bounding box."""

    def __init__(self, origin: np.ndarray, spacing: float, shape: tuple[int, int, int]):
        self.origin = origin
        self.h = spacing
        self.labels = np.zeros(shape, dtype=np.uint8)
        self.axes = [origin[i] + spacing * np.arange(shape[i], dtype=np.float32) for i in range(3)]

    def _box(self, lo: Sequence[float], hi: Sequence[float]):
        sl = []
        for i in range(3):
            a = int(math.floor((lo[i] - self.origin[i]) / self.h))
            b = int(math.ceil((hi[i] - self.origin[i]) / self.h)) + 1
            a, b = max(a, 0), min(b, self.labels.shape[i])
            if a >= b:
                return None
            sl.append(slice(a, b))
        return tuple(sl)

    def _grid(self, box):
        x = self.axes[0][box[0]][:, None, None]
        y = self.axes[1][box[1]][None, :, None]
        z = self.axes[2][box[2]][None, None, :]
        return x, y, z

    def _apply(self, box, mask, tissue, only: Optional[Sequence[int]], exclude: Optional[Sequence[int]]):
        view = self.labels[box]
        if only is not None:
            mask = mask & np.isin(view, np.asarray(only, dtype=np.uint8))
        if exclude is not None:
            mask = mask & ~np.isin(view, np.asarray(exclude, dtype=np.uint8))
        view[mask] = tissue

    def ellipsoid(self, tissue, center, semi, angle_z: float = 0.0, angle_x: float = 0.0,
                  only=None, exclude=None) -> None:
        """Ellipsoid with semi-axes ``semi``, rotated by ``angle_z`` (about z) and ``angle_x`` (about x)."""
        c = np.asarray(center, dtype=np.float32)
        r = float(max(semi))
        box = self._box(c - r, c + r)
        if box is None:
            return
        x, y, z = self._grid(box)
        dx, dy, dz = x - c[0], y - c[1], z - c[2]
        if angle_z:
            ca, sa = math.cos(angle_z), math.sin(angle_z)
            dx, dy = ca * dx + sa * dy, -sa * dx + ca * dy
        if angle_x:
            ca, sa = math.cos(angle_x), math.sin(angle_x)
            dy, dz = ca * dy + sa * dz, -sa * dy + ca * dz
        q = (dx / semi[0]) ** 2 + (dy / semi[1]) ** 2 + (dz / semi[2]) ** 2
        self._apply(box, q <= 1.0, tissue, only, exclude)

    def tube(self, tissue, p0, p1, radius: float, only=None, exclude=None) -> None:
        """Cylinder of ``radius`` around the segment p0-p1 (mm)."""
        p0 = np.asarray(p0, dtype=np.float32)
        p1 = np.asarray(p1, dtype=np.float32)
        lo = np.minimum(p0, p1) - radius
        hi = np.maximum(p0, p1) + radius
        box = self._box(lo, hi)
        if box is None:
            return
        x, y, z = self._grid(box)
        d = p1 - p0
        L2 = float(d @ d)
        t = ((x - p0[0]) * d[0] + (y - p0[1]) * d[1] + (z - p0[2]) * d[2]) / L2
        t = np.clip(t, 0.0, 1.0)
        q = (x - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 + (z - p0[2] - t * d[2]) ** 2
        self._apply(box, q <= radius * radius, tissue, only, exclude)

    def elliptic_cylinder_z(self, tissue, cx, cy, a, b, z0, z1, only=None, exclude=None) -> None:
        """Elliptic cylinder along z (semi-axes a in x, b in y) from z0 to z1."""
        box = self._box((cx - a, cy - b, z0), (cx + a, cy + b, z1))
        if box is None:
            return
        x, y, z = self._grid(box)
        q = ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2
        mask = np.broadcast_to(q <= 1.0, (q.shape[0], q.shape[1], z.shape[2]))
        self._apply(box, mask, tissue, only, exclude)

    def bone(self, center, semi, angle_z: float = 0.0, angle_x: float = 0.0, cortex: float = 2.5) -> None:
        """Bone inside the body: cortical shell of ``cortex`` mm around fatty marrow."""
        outside = (Tissue.AIR,)
        self.ellipsoid(Tissue.CORTICAL_BONE, center, semi, angle_z, angle_x, exclude=outside)
        inner = [max(s - cortex, 0.5) for s in semi]
        self.ellipsoid(Tissue.MARROW, center, inner, angle_z, angle_x, exclude=outside)


def _prostate_center(seed: int, study_index: int) -> np.ndarray:
    """Prostate centre of a study (its own random stream, so planning needs no volume)."""
    rng = _study_rng(seed, study_index, 1, 1)
    return np.array([rng.uniform(-3, 3), rng.uniform(-14, -6), rng.uniform(-4, 4)])


def _build_phantom(seed: int, study_index: int, spacing: float, field_strength: float) -> Phantom:
    rng = _study_rng(seed, study_index, 1)
    u = rng.uniform
    lo = np.array([-195.0, -150.0, -120.0])
    hi = np.array([195.0, 150.0, 130.0])
    shape = tuple(int(round((hi[i] - lo[i]) / spacing)) + 1 for i in range(3))
    P = _Painter(lo, spacing, shape)
    body = (Tissue.AIR,)   # "exclude=body": paint only inside the body

    # Body: elliptic cylinder plus the buttocks, all fat at first.
    a_body, b_body = u(150, 178), u(108, 128)
    cy_body = u(2, 12)
    P.elliptic_cylinder_z(Tissue.FAT, 0.0, cy_body, a_body, b_body, lo[2], hi[2])
    for s in (-1, 1):
        P.ellipsoid(Tissue.FAT, (s * 62, cy_body + 58, -20), (78, 72, 140), only=body)
    fat_t = u(14, 34)  # subcutaneous fat thickness

    # Muscles (only replace fat; the subcutaneous layer stays fat).
    inner_b = b_body - fat_t
    for s in (-1, 1):
        P.ellipsoid(Tissue.MUSCLE, (s * 68, cy_body + 78, -15), (54, 36, 95), angle_z=s * -0.45,
                    only=(Tissue.FAT,))                                   # gluteus maximus
        P.ellipsoid(Tissue.MUSCLE, (s * 60, -2, 8), (13, 40, 48), only=(Tissue.FAT,))   # obturator internus
        P.ellipsoid(Tissue.MUSCLE, (s * 34, -inner_b + 8, 50), (26, 8, 120), only=(Tissue.FAT,))  # rectus
        P.ellipsoid(Tissue.MUSCLE, (s * 72, -40, 95), (28, 26, 60), only=(Tissue.FAT,))  # iliopsoas
        P.ellipsoid(Tissue.MUSCLE, (s * 100, -10, -70), (40, 45, 60), only=(Tissue.FAT,))  # thigh muscles
        P.ellipsoid(Tissue.MUSCLE, (s * 26, 22, -22), (7, 26, 24), angle_z=s * 0.6,
                    only=(Tissue.FAT,))                                   # levator ani
    # Bones.
    fx = u(88, 100)
    for s in (-1, 1):
        P.bone((s * (fx - 6), -6, 44), (26, 34, 24), angle_z=s * 0.3)     # acetabulum / ilium
        P.bone((s * fx, -12, 24), (23, 23, 23))                           # femoral head
        P.tube(Tissue.CORTICAL_BONE, (s * fx, -12, 24), (s * (fx + 38), -6, -10), 14, exclude=body)
        P.tube(Tissue.MARROW, (s * fx, -12, 24), (s * (fx + 38), -6, -10), 11, exclude=body)
        P.tube(Tissue.CORTICAL_BONE, (s * (fx + 38), -6, -10), (s * (fx + 46), -4, -125), 15, exclude=body)
        P.tube(Tissue.MARROW, (s * (fx + 38), -6, -10), (s * (fx + 46), -4, -125), 11, exclude=body)
        P.bone((s * 24, -68, 22), (24, 10, 14), angle_z=s * 0.35)         # pubic ramus
        P.bone((s * 52, 38, -28), (15, 20, 22))                           # ischial tuberosity
    P.bone((0, cy_body + b_body - fat_t - 18, 60), (38, 14, 60), angle_x=-0.5)  # sacrum / coccyx

    # Prostate geometry (drawn later, but the bladder and rectum are placed from it).
    pc = _prostate_center(seed, study_index)
    pa = np.array([u(19, 26), u(14, 19), u(17, 24)])
    top = pc[2] + pa[2]

    # Bladder: muscular wall, urine; its base indents the prostate base.
    bs = np.array([u(36, 52), u(30, 42), u(24, 36)])
    bc = np.array([u(-4, 4), pc[1] - u(8, 16), top + 0.7 * bs[2]])
    P.ellipsoid(Tissue.MUSCLE, bc, bs + 2.0, exclude=body)
    P.ellipsoid(Tissue.URINE, bc, bs, exclude=body)

    # Rectum behind the prostate (wall, stool, anterior air), curving backwards
    # into the sigmoid above the seminal vesicles.
    r_out = u(13, 18)
    r_in = r_out - u(3, 5)
    rc_y = pc[1] + pa[1] + r_out - u(1, 3)
    path = [np.array(q) for q in ((0, rc_y + 6, -70), (0, rc_y, top + 20), (0, rc_y + 45, 110))]
    air_r = r_in * u(0.35, 0.9)
    for q0, q1 in zip(path[:-1], path[1:]):
        P.tube(Tissue.RECTAL_WALL, q0, q1, r_out, exclude=body)
    for q0, q1 in zip(path[:-1], path[1:]):
        P.tube(Tissue.RECTAL_CONTENT, q0, q1, r_in, exclude=body)
    for q0, q1 in zip(path[:-1], path[1:]):
        shift = np.array([0.0, -(r_in - air_r), 0.0])
        P.tube(Tissue.AIR, q0 + shift, q1 + shift, air_r, only=(Tissue.RECTAL_CONTENT,))

    # Seminal vesicles above and behind the prostate.
    for s in (-1, 1):
        P.ellipsoid(Tissue.SEMINAL_VESICLE, (s * 17, pc[1] + pa[1] * 0.7, top + 6),
                    (20, 6.5, 9), angle_z=s * 0.45, exclude=body)

    # Vessels: external iliac arteries and veins, periprostatic plexus.
    for s in (-1, 1):
        P.tube(Tissue.ARTERY, (s * 54, -52, 130), (s * 82, -60, -120), u(4.0, 5.5), exclude=body)
        P.tube(Tissue.VEIN, (s * 46, -46, 130), (s * 74, -52, -120), u(5.5, 7.0), exclude=body)
        P.tube(Tissue.ARTERY, (s * 40, 10, 120), (s * 30, 20, 20), 3.0, exclude=body)   # internal iliac
        P.tube(Tissue.VEIN, (s * (pa[0] * 0.85), pc[1] + pa[1] * 0.75, pc[2] - pa[2]),
               (s * (pa[0] * 0.85), pc[1] + pa[1] * 0.75, top + 4), 2.5, exclude=body)  # NV bundle

    # Prostate: fibromuscular capsule, PZ everywhere inside, then TZ, anterior
    # fibromuscular stroma, lesion.
    P.ellipsoid(Tissue.STROMA, pc, pa + 1.5, exclude=body)
    P.ellipsoid(Tissue.PERIPHERAL_ZONE, pc, pa, exclude=body)
    tz_scale = u(0.5, 0.75)
    P.ellipsoid(Tissue.TRANSITION_ZONE, pc + np.array([0, -0.25 * pa[1], 0.15 * pa[2]]),
                pa * np.array([tz_scale, tz_scale, tz_scale + 0.08]), only=(Tissue.PERIPHERAL_ZONE,))
    P.ellipsoid(Tissue.STROMA, pc + np.array([0, -0.85 * pa[1], 0.05 * pa[2]]),
                pa * np.array([0.6, 0.35, 0.8]), only=(Tissue.PERIPHERAL_ZONE, Tissue.TRANSITION_ZONE))

    has_lesion = bool(rng.random() < 0.75)
    lesion_center = None
    if has_lesion:
        prostate = (Tissue.PERIPHERAL_ZONE, Tissue.TRANSITION_ZONE)
        side = 1.0 if rng.random() < 0.5 else -1.0
        if rng.random() < 0.7:   # peripheral zone, posterolateral
            lc = pc + np.array([side * 0.5 * pa[0], 0.45 * pa[1], u(-0.4, 0.4) * pa[2]])
        else:                    # transition zone, anterior
            lc = pc + np.array([side * 0.25 * pa[0], -0.3 * pa[1], u(-0.2, 0.4) * pa[2]])
        # Coarser volumes (size "tiny") get a slightly larger lesion so it stays visible.
        size = u(5.5, 9.5) * max(spacing / 1.5, 1.0) ** 0.5
        P.ellipsoid(Tissue.LESION, lc, (size, size * u(0.7, 1.0), size * u(0.8, 1.2)),
                    angle_z=u(0, math.pi), only=prostate)
        for _ in range(int(rng.integers(1, 3))):  # irregular outline
            off = rng.normal(0, size * 0.45, 3)
            P.ellipsoid(Tissue.LESION, lc + off, (size * u(0.4, 0.7),) * 3, only=prostate)
        lesion_center = lc
    labels = P.labels
    # The outermost x/y voxels are air so out-of-range lookups read air.
    labels[0, :, :] = labels[-1, :, :] = 0
    labels[:, 0, :] = labels[:, -1, :] = 0

    # Low-resolution texture (smooth Gaussian field, unit-ish variance).
    tex_h = 4.0
    tshape = tuple(int((hi[i] - lo[i]) / tex_h) + 2 for i in range(3))
    tex = rng.standard_normal(tshape).astype(np.float32)
    for axis in range(3):
        tex = (np.roll(tex, 1, axis) + tex + np.roll(tex, -1, axis)) / 3.0
    tex /= max(float(tex.std()), 1e-6)
    props = _tissue_props(rng, field_strength)
    return Phantom(
        labels=labels, origin=lo.astype(np.float64), spacing=float(spacing), props=props,
        texture=tex, texture_origin=lo.astype(np.float64), texture_spacing=tex_h,
        field_strength=field_strength, has_lesion=has_lesion, prostate_center=pc,
        prostate_semi_axes=pa, lesion_center=lesion_center,
    )
