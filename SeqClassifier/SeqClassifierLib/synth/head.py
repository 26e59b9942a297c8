"""The head phantom of neuro studies: scalp, skull, CSF, grey and white matter, optional lesion."""

from __future__ import annotations

import enum
import math

import numpy as np

from SeqClassifierLib.synth.base import _study_rng
from SeqClassifierLib.synth.phantom import Phantom, _Painter, _Props

class HeadTissue(enum.IntEnum):
    """Tissue classes of the head phantom's label volume."""

    AIR = 0
    SCALP = 1          # subcutaneous fat
    MUSCLE = 2
    BONE = 3           # skull tables
    DIPLOE = 4         # fatty marrow of the skull
    CSF = 5
    GREY_MATTER = 6
    WHITE_MATTER = 7
    LESION = 8


# pd, t1, t2, adc (1e-3 mm^2/s), fat, flow, tex, aniso (~FA), cbf (ml/100 g/min), at 3 T.
_HEAD_PROPS: dict[HeadTissue, tuple[float, ...]] = {
    HeadTissue.AIR:          (0.0, 1000., 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0),
    HeadTissue.SCALP:        (0.95, 380., 130., 0.02, 1.0, 1.0, 0.05, 0.0, 5.0),
    HeadTissue.MUSCLE:       (0.75, 1420., 45., 1.45, 0.0, 1.0, 0.05, 0.4, 8.0),
    HeadTissue.BONE:         (0.05, 1000., 1.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0),
    HeadTissue.DIPLOE:       (0.80, 450., 90., 0.3, 1.0, 1.0, 0.10, 0.0, 5.0),
    HeadTissue.CSF:          (1.0, 4200., 2000., 3.0, 0.0, 1.0, 0.01, 0.05, 0.0),
    HeadTissue.GREY_MATTER:  (0.82, 1400., 100., 0.85, 0.0, 1.0, 0.06, 0.15, 60.0),
    HeadTissue.WHITE_MATTER: (0.70, 850., 75., 0.70, 0.0, 1.0, 0.04, 0.60, 22.0),
    HeadTissue.LESION:       (0.85, 1500., 130., 0.45, 0.0, 1.0, 0.05, 0.20, 12.0),
}


def _build_head_phantom(seed: int, study_index: int, spacing: float, field_strength: float) -> Phantom:
    """Head: scalp fat, skull (tables and diploe), CSF, cortex, white matter, ventricles, sulci, lesion."""
    rng = _study_rng(seed, study_index, 11)
    u = rng.uniform
    lo = np.array([-105.0, -125.0, -90.0])
    hi = np.array([105.0, 125.0, 125.0])
    shape = tuple(int(round((hi[i] - lo[i]) / spacing)) + 1 for i in range(3))
    P = _Painter(lo, spacing, shape)
    H = HeadTissue
    c = np.array([u(-2, 2), u(-4, 4), 20.0 + u(-4, 4)])
    head = np.array([u(72, 80), u(92, 102), u(88, 96)])
    P.elliptic_cylinder_z(H.MUSCLE, c[0], c[1] + 10, 45, 40, lo[2], c[2] - 40)   # neck
    P.ellipsoid(H.SCALP, c, head)
    P.ellipsoid(H.BONE, c, head - 5)
    P.ellipsoid(H.DIPLOE, c, head - 7)
    P.ellipsoid(H.BONE, c, head - 9)
    P.ellipsoid(H.CSF, c, head - 11)
    brain = head - 13
    P.ellipsoid(H.GREY_MATTER, c, brain)
    P.ellipsoid(H.WHITE_MATTER, c, brain - u(4, 6), only=(H.GREY_MATTER,))
    # Interhemispheric fissure and sulci (CSF clefts through the cortex).
    P.ellipsoid(H.CSF, c + [0, 0, brain[2] * 0.35], (1.2, brain[1] * 0.95, brain[2] * 0.7),
                only=(H.GREY_MATTER, H.WHITE_MATTER))
    for _ in range(14):
        th, ph = u(0, 2 * math.pi), u(-0.4, 1.2)
        d = np.array([math.cos(th) * math.cos(ph), math.sin(th) * math.cos(ph), math.sin(ph)])
        p1 = c + d * brain
        P.tube(H.CSF, p1, c + d * (brain - 9), 1.3, only=(H.GREY_MATTER,))
    # Deep grey matter and ventricles.
    for sgn in (-1, 1):
        P.ellipsoid(H.GREY_MATTER, c + [sgn * 13, 4, 2], (9, 14, 10), only=(H.WHITE_MATTER,))   # thalamus
        P.ellipsoid(H.GREY_MATTER, c + [sgn * 20, -14, 8], (6, 12, 9), only=(H.WHITE_MATTER,))  # caudate/putamen
        P.ellipsoid(H.CSF, c + [sgn * 8, -4, 16], (u(4, 7), 28, 8), angle_z=sgn * 0.15,
                    only=(H.WHITE_MATTER, H.GREY_MATTER))                                        # lateral ventricle
    has_lesion = bool(rng.random() < 0.6)
    lesion_center = None
    if has_lesion:
        lc = c + np.array([u(-1, 1) * 30, u(-30, 30), u(5, 35)])
        size = u(6, 11) * max(spacing / 1.5, 1.0) ** 0.5
        P.ellipsoid(H.LESION, lc, (size, size * u(0.7, 1.0), size), only=(H.WHITE_MATTER, H.GREY_MATTER))
        lesion_center = lc
    labels = P.labels
    labels[0, :, :] = labels[-1, :, :] = 0
    labels[:, 0, :] = labels[:, -1, :] = 0
    labels[:, :, -1] = 0
    tex_h = 4.0
    tshape = tuple(int((hi[i] - lo[i]) / tex_h) + 2 for i in range(3))
    tex = rng.standard_normal(tshape).astype(np.float32)
    for axis in range(3):
        tex = (np.roll(tex, 1, axis) + tex + np.roll(tex, -1, axis)) / 3.0
    tex /= max(float(tex.std()), 1e-6)
    table = np.array([_HEAD_PROPS[t] for t in HeadTissue], dtype=np.float64)
    n = len(HeadTissue)
    pd, t1, t2, adc, fat, flow, tx, aniso, cbf = (table[:, i].copy() for i in range(9))
    t1 *= rng.uniform(0.95, 1.05, n)
    t2 *= rng.uniform(0.93, 1.07, n)
    adc *= rng.uniform(0.96, 1.04, n)
    adc[H.CSF] = u(2.9, 3.2)
    if field_strength < 2.0:
        t1 = np.where(np.isin(np.arange(n), [H.CSF, H.AIR]), t1, t1 * 0.8)
    z = np.zeros(n)
    props = _Props(pd=pd, t1=t1, t2=t2, adc=adc, ktrans=z, ve=z, vp=z, fat=fat, flow=flow, tex=tx,
                   aniso=aniso, cbf=cbf)
    props = _Props(**{k: (None if v is None else np.asarray(v, dtype=np.float32))
                      for k, v in props.__dict__.items()})
    return Phantom(labels=labels, origin=lo, spacing=float(spacing), props=props, texture=tex,
                   texture_origin=lo.copy(), texture_spacing=tex_h, field_strength=field_strength,
                   has_lesion=has_lesion, prostate_center=c, prostate_semi_axes=brain,
                   lesion_center=lesion_center, kind="neuro")
