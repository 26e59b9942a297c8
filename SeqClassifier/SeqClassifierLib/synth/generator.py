"""Synthetic prostate mpMRI studies written as realistic DICOM.

The generator serves three users: the demo (a study must be written in a few
seconds on a small CPU), the test-suite and model training (contrast and
headers must be realistic and varied, and the label of a series must always be
the truth of its content, whatever its description says).

Phantom
-------
Every study draws its own anatomy (:func:`study_phantom`): a 3D label volume of
the male pelvis in patient coordinates (DICOM LPS, millimetres; the prostate
centre is near the scanner isocentre) built from simple shapes -- body outline
with subcutaneous and pelvic fat, gluteal / obturator / rectus / iliopsoas
muscles, cortical bone with fatty marrow (femoral heads and necks, acetabula,
pubic rami, ischial tuberosities, sacrum), the bladder (urine behind a thin
muscular wall), seminal vesicles, the rectum (wall, stool and air), iliac
arteries and veins, a periprostatic venous plexus and the prostate with its
peripheral zone (PZ), transition zone (TZ), anterior fibromuscular stroma and,
in most studies, a lesion.  Sizes, positions, bladder filling, rectal air and
tissue parameters vary per study.  Each tissue carries proton density PD, T1,
T2 (at the study's field strength), an apparent diffusion coefficient and
Tofts pharmacokinetic parameters (Ktrans, ve, vp); a low-resolution random
texture modulates each tissue a little (PZ striation, BPH nodules, stool).

Reslicing: for every series the centre of each pixel (plus two or three
sub-samples through the slice thickness for partial-volume averaging) is mapped
from ImagePositionPatient / ImageOrientationPatient / PixelSpacing into the
label volume and the signal of the 8 surrounding voxels is interpolated
trilinearly.  The written geometry is therefore exactly the geometry of the
content, in any orientation (tilted axial, sagittal, coronal, the three planes
of a localizer).

Physics
-------
Signals are computed per tissue from the sequence parameters written to the
header:

* spin echo / turbo spin echo / HASTE (T2w, Siemens localizer):
  ``S = PD (1 - exp(-TR/T1)) exp(-TE/T2)`` -- urine bright, muscle dark,
  flowing blood a flow void; an inversion pulse (STIR) multiplies by
  ``|1 - 2 exp(-TI/T1) + exp(-TR/T1)|``;
* diffusion (spin-echo EPI, fat suppressed): ``S(b) = S0 exp(-b ADC)`` with
  ``S0`` the spin-echo signal, so restricted diffusion (lesion) stays bright at
  high b while urine goes dark; raw directional images (Siemens mosaic) get a
  little anisotropy;
* ADC map: the log-linear least-squares fit of the *noisy* DWI images over the
  acquired b-values (as on the scanner), in 10^-6 mm^2/s, background masked to
  0 -- prostate ~1200-1650, lesion ~700-900, urine ~3000;
* calculated high-b images: extrapolation of that fit to b = 1400-2000;
* spoiled gradient echo (DCE, variable-flip-angle T1 mapping, low-flip PD
  reference, GE localizer): ``S = PD sin(a) (1 - E1) / (1 - cos(a) E1) exp(-TE/T2*)``
  with ``E1 = exp(-TR/T1)``; balanced SSFP for the Philips survey;
* contrast uptake: a Parker population arterial input function, veins as a
  delayed and dispersed copy, tissues by the extended Tofts model; the
  concentration shortens T1 by ``1/T1 = 1/T10 + r1 C``.  The first DCE time
  point is always pre-contrast; arteries enhance first, the lesion enhances
  early and strongly with wash-out, normal prostate slowly.

Every image then gets a smooth multiplicative receive-coil bias field and
Rician noise (magnitude of complex Gaussian noise), and is scaled to 12-bit
(16-bit signed for GE) integers, with a non-trivial RescaleSlope on some
Philips images.

Studies and headers
-------------------
Each study holds a 3-plane localizer (OTHER), T2w TSE axial (sometimes tilted
10-20 degrees about the left-right axis), sagittal and coronal, a multi-b DWI
series (b-value per file, in the vendor's private tag and sometimes in the
standard (0018,9087)), a calculated high-b series, an ADC map, DCE either as one
4D series or as one series per time point, variable-flip-angle T1 mapping
series (OTHER) and a PD reference (OTHER); Siemens studies sometimes add raw
directional DWI in mosaic format, Philips studies sometimes store the T2w
and/or the DWI as one Enhanced MR Image Storage multi-frame file.  About one
series in ten gets a blank or misleading SeriesDescription (the label stays the
truth).  Names, sequence names, ImageType, private tags and their creators
follow the vendors' conventions as seen in real data (see ``shared/data``).

The ``variant`` tag of each :class:`SynthSeries` is one of ``localizer_3plane``,
``t2_tra``, ``t2_tra_tilted``, ``t2_sag``, ``t2_cor``, ``dwi_multib``,
``dwi_calc_highb``, ``mosaic``, ``adc``, ``t1_vfa``, ``pd_ref``, ``dce_4d``,
``dce_per_timepoint``, ``philips_enhanced`` (T2w or DWI in one multi-frame
file) and ``misleading_description`` (the ``labels.csv`` note then names the
true variant).  Which studies get which variant is deterministic: per vendor,
alternate studies get the Siemens mosaic / Philips enhanced DWI and DCE as 4D
or per time point, so a few consecutive studies show all of them.

Neuro studies (``kinds`` including ``"neuro"``) use a head phantom
(:class:`HeadTissue`: scalp fat, skull with diploe, CSF in ventricles, sulci and
the interhemispheric fissure, cortex and deep grey matter, white matter, in 60 %
of studies a restricted-diffusion lesion; WM ADC ~700, GM ~850, CSF ~3000
10^-6 mm^2/s) and vendors ``SIEMENS_XA`` (Enhanced MR multi-frame for every
series but the localizer), ``GE``, ``PHILIPS``, ``UIH`` and ``CANON`` (Manufacturer
CANON_MEC or TOSHIBA by model).  Each holds a localizer, T2 TSE axial (T2w,
variant ``t2_brain``), FLAIR, 3D T1 (MPRAGE/BRAVO/TFE), SWI, DWI trace b0/b1000
(``dwi``), ADC (``adc``), one multi-direction DTI series (``dti``: b0 + 6-12
directions, enhanced with DiffusionGradientDirectionSequence on Siemens XA and
every other Philips study), an FA map (``fa``), fMRI BOLD EPI with 10 volumes
(``fmri``), pCASL label/control pairs (``asl``) and a CBF map (``cbf``), and GRE
field maps (``fmap``: magnitude and phase, ImageType ...M... / ...P...); enhanced
series get the suffix ``_enhanced`` on their variant.  Everything except T2w,
DWI, DTI and ADC is OTHER.  With ``prostate_extras=True`` Siemens prostate
studies may get raw 3-scan-trace DWI (``dwi_3scan``) and TWIST-named per-time-
point DCE (``dce_twist``).

Everything is deterministic: the same seed gives the same series, UIDs and
pixel values.
"""

from __future__ import annotations

import csv
import datetime as _dt
import enum
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from SeqClassifierLib.dicom import tags as T
from SeqClassifierLib.labels import Plane, SequenceLabel

__all__ = [
    "SynthSeries",
    "Tissue",
    "Phantom",
    "generate_studies",
    "study_phantom",
    "VENDORS",
    "PROSTATE_VENDORS",
    "NEURO_VENDORS",
    "KINDS",
    "HeadTissue",
    "SIZES",
    "LABELS_CSV",
    "LABELS_COLUMNS",
]

#: Vendors of prostate studies, in their default cycling order.
PROSTATE_VENDORS: tuple[str, ...] = ("SIEMENS", "GE", "PHILIPS")
#: Vendors of neuro studies, in their default cycling order ("SIEMENS" -- classic
#: syngo MR headers -- is accepted too when named explicitly).
NEURO_VENDORS: tuple[str, ...] = ("SIEMENS_XA", "GE", "PHILIPS", "UIH", "CANON")
#: Every vendor the generator knows (prostate studies: the first three only).
VENDORS: tuple[str, ...] = ("SIEMENS", "GE", "PHILIPS", "SIEMENS_XA", "UIH", "CANON")
#: Study kinds accepted by :func:`generate_studies`.
KINDS: tuple[str, ...] = ("prostate", "neuro")
#: Size presets accepted by :func:`generate_studies`.
SIZES: tuple[str, ...] = ("tiny", "small")
#: Name and columns of the label file written beside the studies.
LABELS_CSV = "labels.csv"
LABELS_COLUMNS: tuple[str, ...] = ("series_dir", "SeriesInstanceUID", "label", "SeriesDescription", "note")
#: Every note written by this generator starts with this word; it is how an
#: existing ``labels.csv`` is recognised as ours.
_NOTE_PREFIX = "synthetic"
_UID_TAG = "seqclassifier-synth-v1"
_IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.8.498.1"
_IMPLEMENTATION_VERSION = "SEQCLS_SYNTH_1"

ProgressFn = Callable[[int, int], None]


# =============================================================================
# Public result type
# =============================================================================

@dataclass(frozen=True)
class SynthSeries:
    """One written series and its ground truth."""

    series_uid: str
    study_uid: str
    patient_id: str
    series_number: int
    description: str
    label: SequenceLabel
    plane: Plane
    vendor: str
    """One of :data:`VENDORS`: ``SIEMENS`` (syngo MR classic), ``GE``, ``PHILIPS``,
    ``SIEMENS_XA`` (Manufacturer "Siemens Healthineers", syngo MR XA, Enhanced MR),
    ``UIH`` or ``CANON`` (Manufacturer "CANON_MEC" or "TOSHIBA")."""
    series_dir: str
    """Folder holding the series' files, relative to the output folder (``/`` separated)."""
    n_files: int
    variant: str
    """Short tag of how the series was made (``t2_tra_tilted``, ``dwi_multib``,
    ``dce_4d``, ``dce_per_timepoint``, ``philips_enhanced``, ``mosaic``,
    ``misleading_description`` ...)."""


# =============================================================================
# Size presets
# =============================================================================

@dataclass(frozen=True)
class _Size:
    phantom_mm: float
    loc_matrix: int
    loc_per_plane: tuple[int, int]        # (majority plane, other planes)
    t2_matrix: tuple[int, ...]
    t2_ps: tuple[float, float]
    t2_tra_slices: tuple[int, int]
    t2_other_slices: tuple[int, int]
    t2_coverage: Optional[float]          # fixed stack extent (mm) or None: slices * spacing
    dwi_matrix: tuple[int, ...]
    dwi_fov: tuple[float, float]
    dwi_slices: tuple[int, int]
    dce_matrix: tuple[int, ...]
    dce_fov: tuple[float, float]
    dce_slices: tuple[int, int]
    dce_times: tuple[int, int]
    tra_coverage: Optional[float]         # DWI/DCE stack extent in tiny mode


_SIZE_SPECS: dict[str, _Size] = {
    "small": _Size(
        phantom_mm=1.5, loc_matrix=128, loc_per_plane=(5, 3),
        t2_matrix=(176, 192), t2_ps=(0.65, 0.8), t2_tra_slices=(17, 20),
        t2_other_slices=(14, 18), t2_coverage=None,
        dwi_matrix=(64, 80, 96), dwi_fov=(180.0, 240.0), dwi_slices=(15, 19),
        dce_matrix=(80, 96), dce_fov=(170.0, 220.0), dce_slices=(12, 16), dce_times=(6, 8),
        tra_coverage=None,
    ),
    "tiny": _Size(
        phantom_mm=3.0, loc_matrix=48, loc_per_plane=(2, 1),
        t2_matrix=(56, 64), t2_ps=(1.9, 2.3), t2_tra_slices=(4, 4),
        t2_other_slices=(3, 4), t2_coverage=48.0,
        dwi_matrix=(40, 48), dwi_fov=(190.0, 230.0), dwi_slices=(5, 5),
        dce_matrix=(40, 48), dce_fov=(180.0, 220.0), dce_slices=(4, 4), dce_times=(4, 4),
        tra_coverage=44.0,
    ),
}


# =============================================================================
# Tissues and the phantom
# =============================================================================

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


def _study_rng(seed: int, study_index: int, stream: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(study_index), int(stream), *[int(m) for m in more]])


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


def _study_field_strength(seed: int, study_index: int, vendor: str) -> tuple[str, float]:
    rng = _study_rng(seed, study_index, 5)
    models = _VENDOR_INFO[vendor]["models"]
    name, fs = models[int(rng.integers(len(models)))]
    return name, fs


def study_phantom(seed: int, study_index: int = 0, size: str = "small",
                  vendor: Optional[str] = None, kinds: Sequence[str] = ("prostate",)) -> Phantom:
    """The ground-truth phantom of study ``study_index`` of ``generate_studies(..., seed=seed)``.

    ``vendor`` must match the study's vendor when it is not the default cycle
    (it selects the scanner and so the field strength); with the default vendor
    cycle it can be left out.  Use :meth:`Phantom.label_at` with pixel positions
    computed from a written file's geometry to know which tissue each pixel shows.
    """
    spec = _size_spec(size)
    klist = _norm_kinds(kinds)
    kind = klist[study_index % len(klist)]
    occ = study_index // len(klist)
    if vendor is None:
        cycle = PROSTATE_VENDORS if kind == "prostate" else NEURO_VENDORS
        vendor = cycle[occ % len(cycle)]
    _, fs = _study_field_strength(seed, study_index, vendor.upper())
    if kind == "neuro":
        return _build_head_phantom(int(seed), int(study_index), _NEURO_SIZES[str(size).lower()]["phantom_mm"], fs)
    return _build_phantom(int(seed), int(study_index), spec.phantom_mm, fs)


def _norm_kinds(kinds: Any) -> list[str]:
    if isinstance(kinds, str):
        kinds = [kinds]
    out: list[str] = []
    for k in kinds:
        k = str(k).strip().lower()
        if k not in KINDS:
            raise ValueError(f"unknown study kind {k!r}; expected one of {', '.join(KINDS)}")
        if k not in out:
            out.append(k)
    if not out:
        raise ValueError("kinds must name at least one study kind")
    return out


# =============================================================================
# Geometry and resampling
# =============================================================================

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


# =============================================================================
# Sequence physics (per-tissue lookup tables)
# =============================================================================

def _se(p: _Props, tr: float, te: float, ti: Optional[float] = None, fs: float = 1.0,
        flow: bool = True, t1: Optional[np.ndarray] = None) -> np.ndarray:
    t1 = p.t1 if t1 is None else t1
    s = p.pd * (1.0 - np.exp(-tr / t1)) * np.exp(-te / p.t2)
    if ti:
        s = p.pd * np.abs(1.0 - 2.0 * np.exp(-ti / t1) + np.exp(-tr / t1)) * np.exp(-te / p.t2)
    if fs != 1.0:
        s = s * np.where(p.fat > 0, fs, 1.0)
    if flow:
        s = s * p.flow
    return s.astype(np.float32)


def _spgr(p: _Props, tr: float, te: float, flip_deg: float, fs: float = 1.0,
          t1: Optional[np.ndarray] = None) -> np.ndarray:
    t1 = p.t1 if t1 is None else t1
    a = math.radians(flip_deg)
    e1 = np.exp(-tr / t1)
    t2s = np.maximum(p.t2 * 0.6, 0.5)
    s = p.pd * math.sin(a) * (1.0 - e1) / (1.0 - math.cos(a) * e1) * np.exp(-te / t2s)
    if fs != 1.0:
        s = s * np.where(p.fat > 0, fs, 1.0)
    return s.astype(np.float32)


def _bssfp(p: _Props, tr: float, te: float, flip_deg: float) -> np.ndarray:
    a = math.radians(flip_deg)
    e1 = np.exp(-tr / p.t1)
    e2 = np.exp(-tr / p.t2)
    s = p.pd * math.sin(a) * (1 - e1) * np.exp(-te / p.t2) / (1 - (e1 - e2) * math.cos(a) - e1 * e2)
    return (s * np.sqrt(p.flow)).astype(np.float32)


def _parker_aif(t_min: np.ndarray) -> np.ndarray:
    """Parker et al. (2006) population arterial input function, blood concentration (mM)."""
    A1, A2, T1, T2, s1, s2 = 0.809, 0.330, 0.17046, 0.365, 0.0563, 0.132
    alpha, beta, s, tau = 1.050, 0.1685, 38.078, 0.483
    t = np.maximum(t_min, 0.0)
    c = (A1 / (s1 * math.sqrt(2 * math.pi)) * np.exp(-((t - T1) ** 2) / (2 * s1 * s1))
         + A2 / (s2 * math.sqrt(2 * math.pi)) * np.exp(-((t - T2) ** 2) / (2 * s2 * s2))
         + alpha * np.exp(-beta * t) / (1 + np.exp(-s * (t - tau))))
    return np.where(t_min > 0, c, 0.0)


def _dce_concentration(p: _Props, times_s: np.ndarray, arrival_s: float, dose: float) -> np.ndarray:
    """Contrast concentration (mM) per tissue (rows) at ``times_s`` (columns)."""
    dt = 0.5
    t_fine = np.arange(0.0, float(times_s.max()) + 2 * dt, dt)
    cb = dose * _parker_aif((t_fine - arrival_s) / 60.0)
    hct = 0.42
    cp = cb / (1 - hct)
    # Veins: delayed, dispersed blood curve.
    delay, tau = 7.0, 9.0
    kern = np.exp(-np.arange(0, 60, dt) / tau)
    kern /= kern.sum()
    cv = np.convolve(np.interp(t_fine - delay, t_fine, cb, left=0.0), kern)[: len(t_fine)]
    out = np.zeros((_N_TISSUES, len(times_s)))
    for tissue in Tissue:
        i = int(tissue)
        if tissue == Tissue.ARTERY:
            c = cb
        elif tissue == Tissue.VEIN:
            c = cv
        elif p.ktrans[i] <= 0 and p.vp[i] <= 0:
            continue
        else:
            ktrans = float(p.ktrans[i]) / 60.0          # /s
            ve = max(float(p.ve[i]), 1e-3)
            kep = ktrans / ve
            irf = ktrans * np.exp(-kep * np.arange(len(t_fine)) * dt) * dt
            c = float(p.vp[i]) * cp + np.convolve(cp, irf)[: len(t_fine)]
        out[i] = np.interp(times_s, t_fine, c)
    return out


# =============================================================================
# Vendors
# =============================================================================

_VENDOR_INFO: dict[str, dict[str, Any]] = {
    "SIEMENS": {
        "manufacturer": "SIEMENS",
        "models": [("Skyra", 3.0), ("Prisma", 3.0), ("Prisma_fit", 3.0), ("MAGNETOM Vida", 3.0),
                   ("Aera", 1.5), ("Avanto_fit", 1.5)],
        "software": ["syngo MR D13", "syngo MR E11", "syngo MR XA20"],
        "study": ["MR prostaat kanker detectie", "MRT Prostata mp", "MR PROSTATE MULTIPARAMETRIC"],
        "institution": "Synthetic Klinikum",
    },
    "GE": {
        "manufacturer": "GE MEDICAL SYSTEMS",
        "models": [("DISCOVERY MR750", 3.0), ("SIGNA Premier", 3.0), ("SIGNA Architect", 3.0),
                   ("Optima MR450w", 1.5), ("SIGNA Artist", 1.5)],
        "software": ["27\\LX\\MR Software release:DV26.0_R03_1831.b",
                     "28\\LX\\MR29.1_EA_2039.a", "25\\LX\\MR Software release:DV25.1_R02_1724.a"],
        "study": ["MRI PROSTATE W WO CONTRAST", "MR PELVIS PROSTATE", "PROSTATE MPMRI"],
        "institution": "Synthetic Medical Center",
    },
    "PHILIPS": {
        "manufacturer": "Philips Medical Systems",
        "models": [("Achieva", 3.0), ("Ingenia", 3.0), ("Ingenia Elition X", 3.0),
                   ("Achieva", 1.5), ("Ingenia", 1.5)],
        "software": ["5.3.1\\5.3.1.0", "5.6.1\\5.6.1.2", "3.2.3\\3.2.3.1"],
        "study": ["MR Prostaat", "MRI prostate mpMRI", "MR PROSTATE"],
        "institution": "Synthetic Ziekenhuis",
    },
    # Vendors below make neuro studies only.
    "SIEMENS_XA": {
        "manufacturer": "Siemens Healthineers",
        "models": [("MAGNETOM Vida", 3.0), ("MAGNETOM Prisma", 3.0), ("MAGNETOM Sola", 1.5),
                   ("MAGNETOM Cima.X", 3.0)],
        "software": ["syngo MR XA30", "syngo MR XA30", "syngo MR XA50", "syngo MR XA20"],
        "study": ["MRT Schaedel", "MR BRAIN", "Kopf^Routine"],
        "institution": "Synthetic Klinikum",
    },
    "UIH": {
        "manufacturer": "UIH",
        "models": [("uMR 780", 3.0), ("uMR 790", 3.0), ("uMR 770", 3.0), ("uMR 570", 1.5)],
        "software": ["R004", "R005", "R003"],
        "study": ["MR Head", "BRAIN MRI", "Head^Routine"],
        "institution": "Synthetic Hospital",
    },
    "CANON": {
        "manufacturer": "CANON_MEC",
        "models": [("Vantage Galan 3T", 3.0), ("Vantage Orian", 1.5), ("Vantage Titan 3T", 3.0),
                   ("Vantage Titan", 1.5)],
        "toshiba_models": ("Vantage Titan 3T", "Vantage Titan"),
        "software": ["V6.0", "V7.0", "V4.5"],
        "study": ["MRI HEAD", "MR BRAIN W/O", "Brain Routine"],
        "institution": "Synthetic Medical Center",
    },
}
_NEURO_STUDY = {"SIEMENS": ["MRT Schaedel", "MR BRAIN"], "GE": ["MRI BRAIN WO CONTRAST", "MR HEAD"],
                "PHILIPS": ["MR Hersenen", "MRI BRAIN"]}

_GAMMA_MHZ_T = 42.577478
_CONTRAST_AGENTS = ["Gadovist", "Dotarem", "MultiHance", "ProHance", "Clariscan", "Gadavist 1.0 mmol/ml"]


# =============================================================================
# Study plan
# =============================================================================

@dataclass
class _SeriesPlan:
    """Everything needed to render and write one series."""

    kind: str                 # loc, t2, dwi, calc, adc, mosaic, dce, vfa, pd
    label: SequenceLabel
    plane: Plane
    description: str
    protocol: str
    variant: str
    note: str
    stacks: list[_Stack]
    params: dict[str, Any] = field(default_factory=dict)
    series_number: int = 0
    uid: str = ""
    enhanced: bool = False
    misleading: bool = False
    start_s: float = 0.0      # acquisition start, seconds after study start


@dataclass
class _StudyPlan:
    index: int
    seed: int
    vendor: str
    model: str
    field_strength: float
    patient_id: str
    patient_name: str
    study_uid: str
    frame_uid: str
    study_date: str
    study_time_s: float
    study_description: str
    software: str
    accession: str
    age: int
    weight: int
    height: float
    patient_position: str
    series: list[_SeriesPlan]
    opts: dict[str, Any]


def _size_spec(size: str) -> _Size:
    try:
        return _SIZE_SPECS[str(size).lower()]
    except KeyError:
        raise ValueError(f"unknown size {size!r}; expected one of {', '.join(SIZES)}") from None


def _uid(seed: int, study_index: int, *what: Any) -> str:
    parts = [_UID_TAG, f"seed={seed}", f"study={study_index}"] + [f"{w}" for w in what]
    return str(generate_uid(entropy_srcs=["|".join(parts) + "|"]))


def _rint(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(rng.integers(lo, hi + 1))


def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _plan_study(seed: int, index: int, vendor: str, occurrence: int, spec: _Size,
                phantom_center: np.ndarray, extras: bool = False) -> _StudyPlan:
    """Draw the protocol of one study (no pixels): series, geometry, names, parameters."""
    rng = _study_rng(seed, index, 2)
    info = _VENDOR_INFO[vendor]
    model, fs = _study_field_strength(seed, index, vendor)
    vi = VENDORS.index(vendor)
    parity = (occurrence + seed) % 2
    opts = {
        "dce_4d": (occurrence + seed + vi) % 2 == 0,
        "mosaic": vendor == "SIEMENS" and parity == 0,
        "enh_dwi": vendor == "PHILIPS" and parity == 0,
        "enh_t2": vendor == "PHILIPS" and bool(rng.random() < 0.5),
        "tilt": float(rng.uniform(10, 20)) if rng.random() < 0.5 else 0.0,
        "std_bvalue": vendor == "PHILIPS" or bool(rng.random() < 0.4),
        "siemens_b_vr": "IS" if rng.random() < 0.6 else "DS",
        "dwi_stir": vendor == "PHILIPS" and bool(rng.random() < 0.35),
        "dce_fs": bool(rng.random() < (0.9 if vendor == "PHILIPS" else 0.5)),
        "philips_slope": float(np.round(rng.uniform(1.1, 3.2), 6)),
    }
    d0 = _dt.date(2012, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 4200)))
    pid = f"SYNTH-{seed}-{index + 1:03d}"
    plan = _StudyPlan(
        index=index, seed=seed, vendor=vendor, model=model, field_strength=fs,
        patient_id=pid, patient_name=f"Synth^{seed}-{index + 1:03d}",
        study_uid=_uid(seed, index, "study"), frame_uid=_uid(seed, index, "frame"),
        study_date=d0.strftime("%Y%m%d"), study_time_s=float(rng.uniform(7.5, 17.0) * 3600),
        study_description=_pick(rng, info["study"]), software=_pick(rng, info["software"]),
        accession=f"{int(rng.integers(10**9, 10**10))}", age=_rint(rng, 48, 79),
        weight=_rint(rng, 62, 105), height=round(float(rng.uniform(1.65, 1.95)), 2),
        patient_position="FFS" if vendor == "SIEMENS" or rng.random() < 0.5 else "HFS",
        series=[], opts=opts,
    )
    pc = phantom_center
    tilt = opts["tilt"]
    center = pc + rng.uniform(-3, 3, 3)
    sgn = -1 if vendor in ("SIEMENS", "GE") else 1
    S: list[_SeriesPlan] = []

    # -- localizer: three planes in one series, majority plane first
    maj = _pick(rng, [Plane.SAGITTAL, Plane.AXIAL, Plane.CORONAL])
    order = [maj] + [p for p in (Plane.SAGITTAL, Plane.CORONAL, Plane.AXIAL) if p != maj]
    n_major, n_other = spec.loc_per_plane
    loc_ps = float(rng.uniform(340, 400)) / spec.loc_matrix
    loc_center = np.array([0.0, pc[1] * 0.5, pc[2] + rng.uniform(-10, 10)])
    loc_thick = float(rng.choice([6.0, 7.0, 8.0]))
    loc_gap = loc_thick * 1.5
    stacks = []
    for k, plane in enumerate(order):
        r, c = _plane_dirs(plane)
        stacks.append(_Stack(r, c, loc_center.copy(), spec.loc_matrix, spec.loc_matrix, loc_ps, loc_ps,
                             n_major if k == 0 else n_other, loc_gap, loc_thick, 1))
    if vendor == "SIEMENS":
        d, prm = "t2_localizer", dict(seq="haste", tr=1800.0, te=92.0, flip=120.0, etl=96)
    elif vendor == "GE":   # spoiled gradient echo
        d = _pick(rng, ["3-Plane Loc", "3 Plane Localizer", "3pl loc"])
        prm = dict(seq="fgre", tr=4.7, te=1.6, flip=30.0, etl=1)
    else:                  # balanced SSFP survey
        d = _pick(rng, ["Survey", "SURVEY", "Survey_MST"])
        prm = dict(seq="bffe", tr=3.6, te=1.8, flip=45.0, etl=1)
    prm["snr"] = float(rng.uniform(12, 22))
    S.append(_SeriesPlan("loc", SequenceLabel.OTHER, maj, d, d, "localizer_3plane", "localizer (3 planes)",
                         stacks, prm))

    # -- T2w TSE in three planes
    t2_mat = int(_pick(rng, spec.t2_matrix))
    t2_ps = float(np.round(rng.uniform(*spec.t2_ps), 4))
    t2_thick = float(_pick(rng, [3.0, 3.0, 3.5]))
    etl = _rint(rng, 16, 25)
    ge_t2 = _pick(rng, ["FRFSE", "FSE", "FRFSE", "PROPELLER"])
    names = {
        "SIEMENS": {Plane.AXIAL: "t2_tse_tra", Plane.SAGITTAL: "t2_tse_sag", Plane.CORONAL: "t2_tse_cor"},
        "GE": {p: f"{a} T2 {ge_t2}" for p, a in
               ((Plane.AXIAL, "Ax"), (Plane.SAGITTAL, "Sag"), (Plane.CORONAL, "Cor"))},
        "PHILIPS": {Plane.AXIAL: "T2W_TSE_tra", Plane.SAGITTAL: "T2W_TSE_sag", Plane.CORONAL: "T2W_TSE_cor"},
    }[vendor]
    for plane in (Plane.AXIAL, Plane.SAGITTAL, Plane.CORONAL):
        if plane == Plane.SAGITTAL:
            r, c = _plane_dirs(plane, 0.0)
            n = _rint(rng, *spec.t2_other_slices)
            gap = t2_thick * float(_pick(rng, [1.0, 1.2]))
        else:
            r, c = _plane_dirs(plane, tilt)
            n = _rint(rng, *(spec.t2_tra_slices if plane == Plane.AXIAL else spec.t2_other_slices))
            gap = t2_thick if plane == Plane.AXIAL else t2_thick * float(_pick(rng, [1.0, 1.1]))
        if spec.t2_coverage:
            gap = spec.t2_coverage / max(n - 1, 1)
        st = _Stack(r, c, center + rng.uniform(-2, 2, 3), t2_mat, t2_mat, t2_ps, t2_ps, n, gap, t2_thick,
                    sgn if plane == Plane.AXIAL else int(_pick(rng, [-1, 1])))
        prm = dict(tr=float(np.round(rng.uniform(3800, 6500), 0)), te=float(np.round(rng.uniform(95, 115), 1)),
                   flip=float(_pick(rng, [150.0, 160.0] if vendor == "SIEMENS" else [90.0, 90.0, 111.0])),
                   etl=etl, snr=float(rng.uniform(25, 45)), nex=_rint(rng, 2, 4))
        if plane == Plane.AXIAL:
            variant = "t2_tra_tilted" if tilt else "t2_tra"
        else:
            variant = "t2_sag" if plane == Plane.SAGITTAL else "t2_cor"
        enhanced = bool(opts["enh_t2"] and plane == Plane.AXIAL)
        if enhanced:
            variant = "philips_enhanced"
        S.append(_SeriesPlan("t2", SequenceLabel.T2w, plane, names[plane], names[plane], variant,
                             "T2 turbo spin echo", [st], prm, enhanced=enhanced))

    # -- DWI (multi-b), calculated high b, ADC, optional mosaic
    bsets = {"SIEMENS": [(50, 400, 800), (50, 500, 1000), (50, 400, 800), (100, 500, 1000)],
             "GE": [(50, 800), (50, 400, 800), (50, 1000)],
             "PHILIPS": [(0, 800), (0, 100, 800), (0, 400, 1000)]}[vendor]
    bvals = tuple(int(b) for b in _pick(rng, bsets))
    b_calc = int(_pick(rng, [1400, 1500, 2000]))
    dwi_mat = int(_pick(rng, spec.dwi_matrix))
    dwi_ps = float(np.round(rng.uniform(*spec.dwi_fov) / dwi_mat, 4))
    dwi_cols = dwi_mat if rng.random() < 0.6 or vendor != "SIEMENS" else int(round(dwi_mat * 0.66 / 4) * 4)
    n_dwi = _rint(rng, *spec.dwi_slices)
    dwi_gap = (spec.tra_coverage / max(n_dwi - 1, 1)) if spec.tra_coverage else float(_pick(rng, [3.0, 3.5, 3.6]))
    r, c = _plane_dirs(Plane.AXIAL, tilt)
    dwi_center = center + np.array([0.0, 0.0, 4.0 if spec.tra_coverage else 0.0])
    dwi_stack = _Stack(r, c, dwi_center, dwi_mat, dwi_cols, dwi_ps, dwi_ps, n_dwi, dwi_gap,
                       min(dwi_gap, 3.6), sgn)
    dwi_prm = dict(bvalues=bvals, b_calc=b_calc, tr=float(np.round(rng.uniform(2700, 5200), 0)),
                   te=float(np.round(rng.uniform(58, 88), 1)), flip=90.0, etl=_rint(rng, 40, 64),
                   snr=float(rng.uniform(18, 32)), nex=_rint(rng, 4, 12),
                   ti=250.0 if opts["dwi_stir"] else None, fs=float(rng.uniform(0.01, 0.04)))
    bt = "_".join(str(b) for b in bvals)
    if vendor == "SIEMENS":
        dwi_d = _pick(rng, [f"ep2d_diff_b{bt}_tra", f"ep2d_diff_tra_b{bt}", "ep2d_diff_tra_DYNDIST",
                            f"ep2d_diff_b{bt}_tra_p2"])
        calc_d = _pick(rng, [f"{dwi_d}_CALC_BVAL", f"{dwi_d}CALC_BVAL"])
        adc_d = f"{dwi_d}_ADC"
    elif vendor == "GE":
        dwi_d = _pick(rng, [f"Ax DWI b{bvals[0]}-{bvals[-1]}", f"AX DWI {bvals[0]}-{bvals[-1]}",
                            f"Ax DWI b{bvals[-1]}"])
        calc_d = _pick(rng, [f"Calc DWI b{b_calc}", f"Ax DWI b{b_calc} (calc)"])
        adc_d = "Apparent Diffusion Coefficient (mm2/s)"
    else:
        dwi_d = _pick(rng, [f"DWI_b{bvals[0]}_{bvals[-1]}", f"DWI_b{bvals[0]}_{bvals[-1]}_SENSE",
                            f"dwi_b{bt}"])
        calc_d = _pick(rng, [f"cDWI_b{b_calc}", f"DWI_b{b_calc}_calc"])
        adc_d = _pick(rng, ["dADC", f"dADC_b{bvals[0]}_{bvals[-1]}"])
    dwi_variant = "philips_enhanced" if opts["enh_dwi"] else "dwi_multib"
    note_dwi = "diffusion-weighted (acquired, trace or calculated b-value)"
    S.append(_SeriesPlan("dwi", SequenceLabel.DWI, Plane.AXIAL, dwi_d, dwi_d, dwi_variant,
                         f"{note_dwi}; b={'/'.join(map(str, bvals))}", [dwi_stack], dwi_prm,
                         enhanced=bool(opts["enh_dwi"])))
    if opts["mosaic"]:
        S.append(_SeriesPlan("mosaic", SequenceLabel.DWI, Plane.AXIAL, dwi_d, dwi_d, "mosaic",
                             f"{note_dwi}; raw directional mosaic", [dwi_stack], dict(dwi_prm)))
    S.append(_SeriesPlan("calc", SequenceLabel.DWI, Plane.AXIAL, calc_d, dwi_d, "dwi_calc_highb",
                         f"{note_dwi}; calculated b={b_calc}", [dwi_stack], dwi_prm))
    S.append(_SeriesPlan("adc", SequenceLabel.ADC, Plane.AXIAL, adc_d, dwi_d, "adc", "ADC map",
                         [dwi_stack], dwi_prm))

    # -- pre-contrast T1 mapping (variable flip angle) and PD reference, then DCE
    dce_mat = int(_pick(rng, spec.dce_matrix))
    dce_ps = float(np.round(rng.uniform(*spec.dce_fov) / dce_mat, 4))
    n_dce = _rint(rng, *spec.dce_slices)
    dce_thick = float(_pick(rng, [3.0, 3.0, 3.5]))
    dce_gap = (spec.tra_coverage / max(n_dce - 1, 1)) if spec.tra_coverage else dce_thick
    r, c = _plane_dirs(Plane.AXIAL, tilt)
    dce_stack = _Stack(r, c, dwi_center.copy(), dce_mat, dce_mat, dce_ps, dce_ps, n_dce, dce_gap,
                       min(dce_gap, dce_thick), sgn)
    tr_gre = float(np.round(rng.uniform(3.4, 5.6), 2))
    te_gre = float(np.round(rng.uniform(1.2, 2.1), 2))
    flips = _pick(rng, [(2, 15), (5, 15), (2, 12), (3, 14)])
    vfa_names = {"SIEMENS": ["t1_vibe_vfa_tra_fa{}", "t1_vibe_tra_fa{}", "t1_vibe_vfa_fa{}"],
                 "GE": ["Ax 3D T1 VFA FA{}", "Ax T1 map FA{}"],
                 "PHILIPS": ["T1_VFA_FA{}", "T1map_FFE_{}deg"]}[vendor]
    vfa_name = _pick(rng, vfa_names)
    for fa in flips:
        d = vfa_name.format(fa)
        S.append(_SeriesPlan("vfa", SequenceLabel.OTHER, Plane.AXIAL, d, d, "t1_vfa",
                             f"pre-contrast T1 mapping, flip {fa}", [dce_stack],
                             dict(tr=tr_gre, te=te_gre, flip=float(fa), snr=float(rng.uniform(20, 35)),
                                  fs=1.0)))
    if vendor == "SIEMENS":
        d = _pick(rng, ["tfl_3d PD ref_tra_1.5x1.5_t3", "tfl3d_PD_ref_tra", "PD_ref_tfl3d"])
        prm = dict(tr=800.0, te=1.53, flip=float(_pick(rng, [8.0, 10.0, 14.0])))
    elif vendor == "GE":
        d = _pick(rng, ["Ax 3D PD ref", "PD ref LAVA"])
        prm = dict(tr=tr_gre, te=te_gre, flip=float(_pick(rng, [2.0, 3.0])))
    else:
        d = _pick(rng, ["PD_FFE_ref", "PD_ref_3D"])
        prm = dict(tr=tr_gre, te=te_gre, flip=float(_pick(rng, [2.0, 3.0])))
    prm.update(snr=float(rng.uniform(20, 35)), fs=1.0)
    S.append(_SeriesPlan("pd", SequenceLabel.OTHER, Plane.AXIAL, d, d, "pd_ref", "proton-density reference",
                         [dce_stack], prm))

    n_t = _rint(rng, *spec.dce_times)
    dt_s = float(np.round(rng.uniform(10, 30) if spec.dce_times[1] > 4 else rng.uniform(20, 35), 1))
    times = np.arange(n_t) * dt_s
    arrival = float(dt_s * rng.uniform(0.45, 0.9))
    agent = _pick(rng, _CONTRAST_AGENTS)
    dce_prm = dict(tr=tr_gre, te=te_gre, flip=float(_pick(rng, [9.0, 10.0, 12.0, 15.0])), times=times,
                   arrival=arrival, agent=agent, dose=float(rng.uniform(0.9, 1.1)),
                   snr=float(rng.uniform(22, 40)), fs=float(rng.uniform(0.1, 0.2)) if opts["dce_fs"] else 1.0)
    if vendor == "SIEMENS":
        dce_d = _pick(rng, ["t1_twist_tra_dyn", "t1_vibe_dyn_tra", "t1_vibe_fs_tra_dyn", "TWIST_dyn_tra"])
    elif vendor == "GE":
        dce_d = _pick(rng, ["Ax LAVA DCE", "Ax LAVA-Flex DCE", "Ax DISCO DCE", "AX 3D DCE"])
    else:
        dce_d = _pick(rng, ["DCE_THRIVE", "dyn_eTHRIVE", "T1_THRIVE_DCE"])
    if opts["dce_4d"]:
        S.append(_SeriesPlan("dce", SequenceLabel.DCE, Plane.AXIAL, dce_d, dce_d, "dce_4d",
                             f"dynamic contrast-enhanced, {n_t} time points in one series", [dce_stack],
                             dict(dce_prm, tps=list(range(n_t)))))
    else:
        suffix = _pick(rng, ["same", "num", "ph"])
        for k in range(n_t):
            d = {"same": dce_d, "num": f"{dce_d}_{k + 1}", "ph": f"{dce_d} Ph{k + 1}"}[suffix]
            S.append(_SeriesPlan("dce", SequenceLabel.DCE, Plane.AXIAL, d, dce_d, "dce_per_timepoint",
                                 f"dynamic contrast-enhanced, time point {k + 1}/{n_t}", [dce_stack],
                                 dict(dce_prm, tps=[k])))

    # -- newer variants (own random stream: without them nothing above changes)
    if extras and vendor == "SIEMENS":
        xr = _study_rng(seed, index, 7)
        dwi_sp = next(sp for sp in S if sp.kind == "dwi")
        if not opts["mosaic"] or xr.random() < 0.3:
            name = _pick(xr, ["ep2d_diff_3scan_p2_tra", "ZOOMit_diff_tra", "ep2d_diff_3scan_trace_p2",
                              "ZOOMit_dif_3scan_tra"])
            dwi_sp.kind = "dwi3scan"
            dwi_sp.description = dwi_sp.protocol = name
            dwi_sp.variant = "dwi_3scan"
            dwi_sp.note = f"{note_dwi}; raw 3-scan-trace directions; b={'/'.join(map(str, bvals))}"
            dwi_d = name
        if not opts["dce_4d"]:
            twist = _pick(xr, ["t1_twist_tra_dyn", "t1_twist_fs_tra_dyn", "TWIST_dyn_tra"])
            for sp in S:
                if sp.kind == "dce":
                    tp = sp.params["tps"][0]
                    sp.description = f"{twist}_TT={float(times[tp]) + 0.5 * dt_s:.1f}s"
                    sp.protocol = twist
                    sp.variant = "dce_twist"
                    sp.params["twist"] = True
            dce_d = twist

    # -- numbering, UIDs, timing, misleading descriptions
    t = 0.0
    dyn_start = 0.0
    number = 0
    last_base = 0
    for k, sp in enumerate(S):
        if vendor == "SIEMENS":
            number += 1
            sp.series_number = number
        elif vendor == "GE":
            if sp.kind in ("calc", "adc"):
                sp.series_number = last_base * 100 + (1 if sp.kind == "calc" else 0)
            else:
                number += 1
                sp.series_number = number
                last_base = number
        else:
            if sp.kind in ("calc", "adc"):
                sp.series_number = last_base + (2 if sp.kind == "calc" else 1)
            else:
                number += 1
                sp.series_number = number * 100 + 1
                last_base = sp.series_number
        sp.uid = _uid(seed, index, "series", k)
        duration = {"loc": 25, "t2": 240, "dwi": 280, "dwi3scan": 280, "mosaic": 0, "calc": 0, "adc": 0, "vfa": 40,
                    "pd": 30, "dce": 0}[sp.kind]
        if sp.kind == "dce":
            if sp.params["tps"][0] == 0:
                t += 20
                dyn_start = t
            sp.params["dyn_start"] = dyn_start
            sp.start_s = t + float(times[sp.params["tps"][0]])
            if sp.params["tps"][-1] == n_t - 1:
                t += float(times[-1]) + dt_s
        else:
            sp.start_s = t
            t += duration + float(rng.uniform(5, 40)) * (duration > 0)
        if rng.random() < 0.1:
            sp.misleading = True
    names_by_label = {
        SequenceLabel.T2w: list(names.values()),
        SequenceLabel.DWI: [dwi_d, calc_d],
        SequenceLabel.ADC: [adc_d],
        SequenceLabel.DCE: [dce_d],
        SequenceLabel.OTHER: [S[0].description],
    }
    for sp in S:
        if not sp.misleading:
            continue
        generic = ["", f"series {sp.series_number}", "AX", "MR", "Series", "new series"]
        wrong = [n for lab, ns in names_by_label.items() if lab != sp.label for n in ns]
        choice = _pick(rng, generic) if rng.random() < 0.5 else _pick(rng, wrong)
        sp.note = f"{sp.note}; misleading description (true variant {sp.variant})"
        sp.description = choice
        sp.protocol = choice
        sp.variant = "misleading_description"
    plan.series = S
    return plan


# =============================================================================
# Rendering helpers
# =============================================================================

def _rician(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    n1 = rng.standard_normal(img.shape, dtype=np.float32)
    n2 = rng.standard_normal(img.shape, dtype=np.float32)
    return np.sqrt((img + sigma * n1) ** 2 + (sigma * n2) ** 2)


def _ref_level(img: np.ndarray) -> float:
    v = img[img > 0.05 * float(img.max())] if img.size else img
    return float(np.percentile(v, 75)) if v.size else 1.0


def _window(stored: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(stored, [1, 99.5])
    return float(round((lo + hi) / 2)), float(max(round(hi - lo), 1))


def _fmt(v: float) -> str:
    """DS text of at most 16 characters."""
    v = float(v)
    if v == 0 or abs(v) < 1e-9:
        return "0"
    for digits in (10, 9, 8, 7, 6):
        s = f"{v:.{digits}g}"
        if len(s) <= 16:
            return s
    return f"{v:.4e}"


def _ds_list(values: Sequence[float]) -> list[str]:
    return [_fmt(round(float(v), 6)) for v in values]


def _tm(seconds: float) -> str:
    seconds = seconds % 86400
    h = int(seconds // 3600)
    m = int((seconds % 3600) // 60)
    s = seconds - h * 3600 - m * 60
    return f"{h:02d}{m:02d}{s:09.6f}"


def _safe_name(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._")
    return s[:60] or "unnamed"


# =============================================================================
# Study writer
# =============================================================================

class _StudyWriter:
    """Renders and writes the series of one study plan."""

    def __init__(self, plan: _StudyPlan, phantom: Phantom, outdir: str, spec: _Size):
        self.plan = plan
        self.ph = phantom
        self.outdir = outdir
        self.spec = spec
        brng = _study_rng(plan.seed, plan.index, 3)
        strength = {"SIEMENS": 0.18, "GE": 0.25, "PHILIPS": 0.2}.get(plan.vendor, 0.2)
        self.bias = _Bias(brng.normal(0, strength, 5).astype(np.float32)
                          + np.array([0, 0, 0, 0.25, 0.1], dtype=np.float32))
        self.ctx: dict[str, Any] = {}
        self._samplers: dict[int, _Sampler] = {}

    # -- geometry -------------------------------------------------------------
    def sampler(self, stack: _Stack) -> _Sampler:
        key = id(stack)
        if key not in self._samplers:
            n_sub = int(min(3, max(1, round(stack.thickness / self.ph.spacing))))
            pts = stack.points(n_sub)
            bias = self.bias(pts)
            self._samplers[key] = _Sampler(self.ph, pts, bias)
        return self._samplers[key]

    def release(self, stack: _Stack) -> None:
        self._samplers.pop(id(stack), None)

    def noise_rng(self, sp: _SeriesPlan, *more: int) -> np.random.Generator:
        return _study_rng(self.plan.seed, self.plan.index, 4, sp.series_number, *more)

    # -- rendering -------------------------------------------------------------
    def render(self, sp: _SeriesPlan) -> list[dict[str, Any]]:
        """Frames of a series: dicts with 'img' (float, physical), 'stack', 'k' and per-frame meta."""
        p = self.ph.props
        prm = sp.params
        rng = self.noise_rng(sp)
        frames: list[dict[str, Any]] = []
        if sp.kind == "loc":
            if prm["seq"] == "haste":
                lut = _se(p, prm["tr"], prm["te"])
            elif prm["seq"] == "fgre":
                lut = _spgr(p, prm["tr"], prm["te"], prm["flip"])
            else:
                lut = _bssfp(p, prm["tr"], prm["te"], prm["flip"])
            imgs = [self.sampler(st).sample(lut) for st in sp.stacks]
            sigma = _ref_level(np.concatenate([i.ravel() for i in imgs])) / prm["snr"]
            for st, vol in zip(sp.stacks, imgs):
                vol = _rician(vol, sigma, rng)
                for k in range(st.n_slices):
                    frames.append(dict(img=vol[k], stack=st, k=k))
                self.release(st)
            return frames
        st = sp.stacks[0]
        smp = self.sampler(st)
        if sp.kind == "t2":
            vol = smp.sample(_se(p, prm["tr"], prm["te"]))
            vol = _rician(vol, _ref_level(vol) / prm["snr"], rng)
            frames = [dict(img=vol[k], stack=st, k=k) for k in range(st.n_slices)]
            self.release(st)
        elif sp.kind == "dwi":
            frames = self._render_dwi(sp, smp, rng)
        elif sp.kind == "dwi3scan":
            frames = self._render_dwi3(sp, smp, rng)
        elif sp.kind == "mosaic":
            frames = self._render_mosaic(sp, smp, rng)
        elif sp.kind in ("calc", "adc"):
            frames = self._render_derived(sp)
        elif sp.kind in ("vfa", "pd"):
            vol = smp.sample(_spgr(p, prm["tr"], prm["te"], prm["flip"], prm.get("fs", 1.0)))
            sigma = self.ctx.setdefault(("gre_sigma", id(st)), _ref_level(vol) / prm["snr"])
            if sp.kind == "pd":
                sigma = _ref_level(vol) / prm["snr"]
            vol = _rician(vol, sigma, rng)
            frames = [dict(img=vol[k], stack=st, k=k) for k in range(st.n_slices)]
        elif sp.kind == "dce":
            frames = self._render_dce(sp, smp, rng)
        return frames

    def _render_dwi(self, sp, smp, rng):
        p = self.ph.props
        prm = sp.params
        st = sp.stacks[0]
        s0_lut = _se(p, prm["tr"], prm["te"], ti=prm["ti"], fs=prm["fs"])
        sigma = _ref_level(smp.sample(s0_lut)) / prm["snr"]   # one noise level for every b
        vols = []
        for b in prm["bvalues"]:
            lut = s0_lut * np.exp(-b * p.adc * 1e-3)
            vols.append(_rician(smp.sample(lut), sigma, rng))
        self.ctx["dwi"] = dict(b=np.array(prm["bvalues"], dtype=np.float64), vols=vols, sigma=sigma,
                               stack=st)
        frames = []
        for bi, b in enumerate(prm["bvalues"]):
            for k in range(st.n_slices):
                frames.append(dict(img=vols[bi][k], stack=st, k=k, b=b))
        return frames

    def _render_dwi3(self, sp, smp, rng):
        """Raw 3-scan-trace DWI: the lowest b once, every other b in three directions."""
        p = self.ph.props
        prm = sp.params
        st = sp.stacks[0]
        s0_lut = _se(p, prm["tr"], prm["te"], ti=prm["ti"], fs=prm["fs"])
        sigma = _ref_level(smp.sample(s0_lut)) / prm["snr"] * 1.5
        dirs = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
        frames, vols = [], []
        for bi, b in enumerate(prm["bvalues"]):
            per_dir = []
            for d, g in enumerate(dirs if bi > 0 else [None]):
                fac = (1.0 + p.aniso * (0.35 if d == 2 else -0.175)) if g is not None else 1.0
                vol = _rician(smp.sample(s0_lut * np.exp(-b * p.adc * 1e-3 * fac)), sigma, rng)
                per_dir.append(vol)
                for k in range(st.n_slices):
                    frames.append(dict(img=vol[k], stack=st, k=k, b=b, direction=g, dir_index=d + 1))
            vols.append(np.exp(np.mean([np.log(np.maximum(v, 1e-6)) for v in per_dir], axis=0)))
        self.ctx["dwi"] = dict(b=np.array(prm["bvalues"], dtype=np.float64), vols=vols, sigma=sigma,
                               stack=st)
        return frames

    def _render_mosaic(self, sp, smp, rng):
        p = self.ph.props
        prm = sp.params
        st = sp.stacks[0]
        s0_lut = _se(p, prm["tr"], prm["te"], ti=prm["ti"], fs=prm["fs"])
        sigma = self.ctx["dwi"]["sigma"] * 1.8   # single direction, fewer averages
        dirs = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
        frames = []
        for b in prm["bvalues"]:
            for d, g in enumerate(dirs if b > 0 else [(0.0, 0.0, 0.0)]):
                fac = 1.0 + p.aniso * (0.35 if d == 2 else -0.175) if b > 0 else 1.0
                lut = s0_lut * np.exp(-b * p.adc * 1e-3 * fac)
                vol = _rician(smp.sample(lut), sigma, rng)
                frames.append(dict(img=vol, stack=st, k=0, b=b, direction=g, dir_index=d + 1))
        return frames

    def _render_derived(self, sp):
        dwi = self.ctx["dwi"]
        key = "fit"
        if key not in self.ctx:
            b = dwi["b"]
            logs = np.stack([np.log(np.maximum(v, 1e-6)) for v in dwi["vols"]])
            xm = b.mean()
            ym = logs.mean(axis=0)
            bx = (b - xm)[:, None, None, None]
            slope = (bx * (logs - ym)).sum(axis=0) / float(((b - xm) ** 2).sum())
            adc = -slope                                   # mm^2/s
            a = ym - slope * xm                            # ln S at b=0
            mask = dwi["vols"][0] > 4.0 * dwi["sigma"]
            self.ctx[key] = dict(adc=adc, a=a, mask=mask)
        fit = self.ctx[key]
        st = dwi["stack"]
        if sp.kind == "adc":
            adc_um = np.where(fit["mask"], np.clip(fit["adc"], 0, 4.0e-3) * 1e6, 0.0)
            return [dict(img=adc_um[k], stack=st, k=k, b=int(dwi["b"][-1]), adc=True) for k in range(st.n_slices)]
        bc = float(sp.params["b_calc"])
        adc = np.clip(fit["adc"], 0.0, 4.0e-3)
        calc = np.exp(fit["a"] - bc * adc)
        last = dwi["vols"][-1]
        calc = np.where(fit["mask"], calc, last * float(np.exp(-(bc - dwi["b"][-1]) * 1e-3)))
        return [dict(img=calc[k], stack=st, k=k, b=int(bc)) for k in range(st.n_slices)]

    def _render_dce(self, sp, smp, rng):
        p = self.ph.props
        prm = sp.params
        st = sp.stacks[0]
        key = ("dce", id(st))
        if key not in self.ctx:
            conc = _dce_concentration(p, prm["times"], prm["arrival"], prm["dose"])
            r1 = {3.0: 4.5, 1.5: 4.9}.get(self.ph.field_strength, 4.7)
            pre = smp.sample(_spgr(p, prm["tr"], prm["te"], prm["flip"], prm["fs"]))
            self.ctx[key] = dict(conc=conc, r1=r1, sigma=_ref_level(pre) / prm["snr"])
        c = self.ctx[key]
        frames = []
        for tp in prm["tps"]:
            t1 = 1.0 / (1.0 / p.t1 + c["r1"] * c["conc"][:, tp].astype(np.float32) / 1000.0)
            lut = _spgr(p, prm["tr"], prm["te"], prm["flip"], prm["fs"], t1=t1.astype(np.float32))
            vol = _rician(smp.sample(lut), c["sigma"], _study_rng(self.plan.seed, self.plan.index, 6, tp))
            for k in range(st.n_slices):
                frames.append(dict(img=vol[k], stack=st, k=k, tp=tp, time=float(prm["times"][tp])))
        return frames

    # -- writing ---------------------------------------------------------------
    def write(self, sp: _SeriesPlan, frames: list[dict[str, Any]], series_dir: str) -> int:
        path = os.path.join(self.outdir, series_dir)
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):     # stale files of an earlier run into the same folder
            if re.fullmatch(r"IM_\d{4,}\.dcm", name):
                os.remove(os.path.join(path, name))
        if sp.enhanced:
            return self._write_enhanced(sp, frames, path)
        if sp.kind == "mosaic":
            return self._write_mosaic(sp, frames, path)
        return self._write_classic(sp, frames, path)

    # scaling --------------------------------------------------------------
    def _gain(self, sp: _SeriesPlan, frames) -> float:
        if sp.kind == "adc":
            return 1.0
        key_map = {"dwi": "dwi", "dwi3scan": "dwi", "calc": "dwi", "mosaic": "dwi", "dce": ("dce", id(sp.stacks[0]))}
        key = key_map.get(sp.kind)
        store_key = ("gain", key) if key is not None else None
        if store_key is not None and store_key in self.ctx:
            return self.ctx[store_key]
        rng = self.noise_rng(sp, 99)
        ref = [f["img"] for f in frames if f.get("tp", 0) == 0] or [f["img"] for f in frames]
        hi = float(np.percentile(np.stack(ref).ravel(), 99.5)) or 1.0
        target = rng.uniform(700, 1800)
        if self.plan.vendor == "GE":
            target *= 1.6
        if sp.kind == "dce":
            target = rng.uniform(350, 700)
        g = target / hi
        if store_key is not None:
            self.ctx[store_key] = g
        return g

    def _to_stored(self, sp: _SeriesPlan, img: np.ndarray, gain: float, slope: float) -> np.ndarray:
        v = img * gain / slope
        maxv = 32767 if self.plan.vendor == "GE" else 4095
        out = np.clip(np.rint(v), 0, maxv)
        return out.astype(np.int16 if self.plan.vendor == "GE" else np.uint16)

    def _slope(self, sp: _SeriesPlan) -> float:
        if self.plan.vendor == "PHILIPS" and sp.kind not in ("adc",):
            return self.plan.opts["philips_slope"]
        return 1.0

    # datasets -------------------------------------------------------------
    def _base(self, sp: _SeriesPlan, sop_class: str) -> Dataset:
        pl = self.plan
        info = _VENDOR_INFO[pl.vendor]
        ds = Dataset()
        fm = FileMetaDataset()
        fm.MediaStorageSOPClassUID = sop_class
        fm.TransferSyntaxUID = ExplicitVRLittleEndian
        fm.ImplementationClassUID = _IMPLEMENTATION_CLASS_UID
        fm.ImplementationVersionName = _IMPLEMENTATION_VERSION
        ds.file_meta = fm
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = sop_class
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = pl.study_date
        ds.StudyTime = _tm(pl.study_time_s)
        ds.SeriesTime = _tm(pl.study_time_s + sp.start_s)
        ds.AccessionNumber = pl.accession
        ds.Modality = "MR"
        ds.Manufacturer = pl.opts.get("manufacturer", info["manufacturer"])
        ds.InstitutionName = info["institution"]
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = pl.study_description
        ds.SeriesDescription = sp.description
        ds.ManufacturerModelName = pl.model
        ds.PatientName = pl.patient_name
        ds.PatientID = pl.patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = pl.opts.get("sex", "M")
        ds.PatientAge = f"{pl.age:03d}Y"
        ds.PatientSize = _fmt(pl.height)
        ds.PatientWeight = str(pl.weight)
        ds.BodyPartExamined = pl.opts.get("body_part", "PROSTATE")
        ds.MagneticFieldStrength = _fmt(pl.field_strength)
        ds.ImagingFrequency = _fmt(round(pl.field_strength * _GAMMA_MHZ_T, 6))
        ds.ImagedNucleus = "1H"
        ds.SoftwareVersions = pl.software.split("\\") if "\\" in pl.software else pl.software
        ds.ProtocolName = sp.protocol
        ds.PatientPosition = pl.patient_position
        ds.StudyInstanceUID = pl.study_uid
        ds.SeriesInstanceUID = sp.uid
        ds.StudyID = str(1 + pl.index)
        ds.SeriesNumber = str(sp.series_number)
        ds.FrameOfReferenceUID = pl.frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        if pl.vendor == "GE":
            ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 1
        else:
            ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
        return ds

    def _mr_params(self, ds: Dataset, sp: _SeriesPlan, b: Optional[float] = None) -> None:
        """Classic MR acquisition attributes (ScanningSequence ... FlipAngle)."""
        v = self.plan.vendor
        prm = sp.params
        kind = sp.kind
        st = sp.stacks[0]
        it: list[str]
        seqname = ""
        if kind == "loc":
            if v == "SIEMENS":
                it, ss, var = ["ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"], "SE", ["SK", "SP", "OSP"]
                opt, acq = "PFP", "2D"
                seqname = f"*h2d1_{int(st.rows * 0.8)}"     # HASTE
            elif v == "GE":
                it, ss, var, opt, acq = ["ORIGINAL", "PRIMARY", "OTHER"], "GR", ["SS", "SP"], ["FAST_GEMS"], "2D"
                seqname = "fgre"
            else:
                it, ss, var, opt, acq = ["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"], "GR", "SS", "", "2D"
                seqname = "B-FFE"
        elif kind == "t2":
            if v == "SIEMENS":
                it, ss, var, acq = ["ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"], "SE", ["SK", "SP", "OSP"], "2D"
                opt = "SAT1" if sp.plane == Plane.SAGITTAL else ""
                seqname = f"*tse2d1_{prm['etl']}"
            elif v == "GE":
                it, ss, var, acq = ["ORIGINAL", "PRIMARY", "OTHER"], "SE", ["SK", "OSP"], "2D"
                opt = ["FAST_GEMS", "FILTERED_GEMS", "NPW"]
                seqname = "fse-xl"
            else:
                it, ss, var, opt, acq = ["ORIGINAL", "PRIMARY", "M_SE", "M", "SE"], "SE", "SK", "PFP", "2D"
                seqname = "TSE"
        elif kind in ("dwi", "calc", "adc", "mosaic", "dwi3scan"):
            acq = "2D"
            bv = prm["bvalues"]
            if v == "SIEMENS":
                ss, var, opt = "EP", ["SK", "SP"], ["PFP", "FS"]
                if kind == "dwi":
                    it, seqname = ["DERIVED", "PRIMARY", "DIFFUSION", "TRACEW", "DIS2D"], f"*ep_b{int(b)}t"
                elif kind == "dwi3scan":
                    it, seqname = ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE", "ND"], f"*ep_b{int(b)}"
                elif kind == "calc":
                    it, seqname = ["DERIVED", "PRIMARY", "DIFFUSION", "TRACEW", "DIS2D"], f"*ep_b{bv[0]}_{bv[-1]}"
                elif kind == "adc":
                    it, seqname = ["DERIVED", "PRIMARY", "DIFFUSION", "ADC", "DIS2D"], f"*ep_b{bv[0]}_{bv[-1]}"
                else:
                    it, seqname = ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE", "ND", "MOSAIC"], f"*ep_b{int(b)}"
            elif v == "GE":
                ss, var, opt = ["EP", "SE"], "NONE", ["EPI_GEMS", "ACC_GEMS", "PFF", "FS"]
                seqname = "epi2"
                it = {"dwi": ["ORIGINAL", "PRIMARY", "OTHER"], "calc": ["DERIVED", "SECONDARY", "OTHER"],
                      "adc": ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"]}[kind]
            else:
                ss = ["SE", "IR"] if prm.get("ti") else "SE"
                var, opt = "SK", ("" if prm.get("ti") else "FS")
                seqname = "DwiSE"
                it = {"dwi": ["ORIGINAL", "PRIMARY", "M_SE", "M", "SE"],
                      "calc": ["DERIVED", "PRIMARY", "M_SE", "M", "SE"],
                      "adc": ["DERIVED", "PRIMARY", "ADC", "ADC"]}[kind]
        else:  # vfa, pd, dce: 3D spoiled gradient echo
            acq = "3D"
            fs = prm.get("fs", 1.0) != 1.0
            if v == "SIEMENS":
                it = (["ORIGINAL", "PRIMARY", "M", "ND", "NORM"] if kind != "pd"
                      else ["ORIGINAL", "PRIMARY", "M", "DIS2D"])
                ss, var = "GR", ["SP", "OSP"] if kind != "pd" else ["SK", "SP", "OSP"]
                opt = ["PFP", "FS"] if fs else "PFP"
                seqname = "*tfl3d1_16" if kind == "pd" else "*fl3d1"
            elif v == "GE":
                it, ss, var = ["ORIGINAL", "PRIMARY", "OTHER"], "GR", ["SS", "SP", "SK"]
                opt = ["FAST_GEMS", "EDR_GEMS", "ACC_GEMS"] + (["FS"] if fs else [])
                seqname = "efgre3d"
            else:
                it, ss, var = ["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"], "GR", "SP"
                opt = "FS" if fs else ""
                seqname = "T1FFE"
        ds.ImageType = it
        ds.ScanningSequence = ss
        ds.SequenceVariant = var
        ds.ScanOptions = opt
        ds.MRAcquisitionType = acq
        ds.SequenceName = seqname
        ds.SliceThickness = _fmt(st.thickness)
        ds.RepetitionTime = _fmt(prm["tr"])
        ds.EchoTime = _fmt(prm["te"])
        if prm.get("ti"):
            ds.InversionTime = _fmt(prm["ti"])
        ds.NumberOfAverages = str(prm.get("nex", 1))
        if not (v == "SIEMENS" and kind == "pd"):
            ds.SpacingBetweenSlices = _fmt(st.spacing)
        ds.EchoTrainLength = str(prm.get("etl", 1))
        ds.PercentSampling = "100"
        ds.PercentPhaseFieldOfView = _fmt(round(100.0 * min(st.rows, st.cols) / max(st.rows, st.cols), 4))
        ds.PixelBandwidth = _fmt({"t2": 200.0, "dwi": 1860.0, "loc": 650.0}.get(kind, 400.0))
        ds.AcquisitionMatrix = [0, st.cols, int(st.rows * 0.8) if kind in ("t2", "loc") else st.rows, 0]
        ds.InPlanePhaseEncodingDirection = "ROW" if v == "SIEMENS" else "COL"
        ds.FlipAngle = _fmt(prm["flip"])
        ds.VariableFlipAngleFlag = "N"
        ds.SAR = _fmt(0.8 if kind != "t2" else 1.5)

    def _vendor_private(self, ds: Dataset, sp: _SeriesPlan, b: Optional[float], slice_no: int) -> None:
        """Vendor private blocks; the b-value goes into the vendor's tag with its creator."""
        v = self.plan.vendor
        if v == "SIEMENS":
            blk = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
            if b is not None:
                vr = self.plan.opts["siemens_b_vr"]
                blk.add_new(0x0C, vr, str(int(b)) if vr == "IS" else _fmt(float(b)))
                blk.add_new(0x0D, "CS", "ISOTROPIC" if b > 0 else "NONE")
            blk.add_new(0x0B, "DS", _fmt(round(float(sp.params["tr"]) * 45.3, 1)))
            b51 = ds.private_block(0x0051, "SIEMENS MR HEADER", create=True)
            st = sp.stacks[0]
            b51.add_new(0x0B, "LO", f"{st.rows}*{st.cols}s")
        elif v == "GE":
            g19 = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
            g19.add_new(0x9C, "LO", str(ds.get("SequenceName", "")))
            if b is not None:
                blk = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
                blk.add_new(0x39, "IS", [1_000_000_000 + int(b), 0, 0, 0])
        else:
            blk = ds.private_block(0x2001, "Philips Imaging DD 001", create=True)
            if b is not None:
                blk.add_new(0x03, "FL", float(b))
                blk.add_new(0x04, "CS", "I" if b > 0 else "0")
            blk.add_new(0x0A, "IS", str(slice_no))

    def _geometry(self, ds: Dataset, st: _Stack, k: int) -> None:
        ipp = st.ipp(k)
        ds.ImagePositionPatient = _ds_list(ipp)
        ds.ImageOrientationPatient = _ds_list(st.iop)
        ds.SliceLocation = _fmt(round(float(ipp @ st.normal), 6))
        ds.PixelSpacing = _ds_list([st.ps_row, st.ps_col])
        ds.Rows = st.rows
        ds.Columns = st.cols

    def _write_classic(self, sp: _SeriesPlan, frames, path: str) -> int:
        """One MR Image Storage file per frame; the data set is built once and updated per file."""
        pl = self.plan
        gain = self._gain(sp, frames)
        slope = self._slope(sp)
        stored = [self._to_stored(sp, f["img"], gain, slope) for f in frames]
        wc, ww = _window(np.stack(stored))
        ds = self._base(sp, T.MR_IMAGE_STORAGE)
        self._mr_params(ds, sp, frames[0].get("b"))
        if sp.kind == "dce":
            ds.ContrastBolusAgent = sp.params["agent"]
            ds.ContrastBolusRoute = "IV"
            ds.ContrastBolusVolume = _fmt(round(0.1 * pl.weight * sp.params["dose"], 1))
            ds.ContrastBolusStartTime = _tm(pl.study_time_s + sp.params["dyn_start"]
                                            + sp.params["arrival"] - 8.0)
        if pl.vendor == "PHILIPS" or sp.kind == "adc":
            ds.RescaleIntercept = "0"
            ds.RescaleSlope = _fmt(slope)
            ds.RescaleType = "normalized" if slope != 1.0 else "US"
        ds.WindowCenter = _fmt(wc * slope)
        ds.WindowWidth = _fmt(ww * slope)
        for i, (f, px) in enumerate(zip(frames, stored), start=1):
            b = f.get("b")
            if pl.vendor == "SIEMENS" and sp.kind == "dwi":
                ds.SequenceName = f"*ep_b{int(b)}t"
            g = f.get("direction")
            if sp.kind == "dwi3scan":
                ds.SequenceName = f"*ep_b{int(b)}#{f['dir_index']}" if g is not None else f"*ep_b{int(b)}"
            # ADC maps keep the highest b-value in the private tag on Siemens and GE.
            b_for_tag = None if (f.get("adc") and pl.vendor == "PHILIPS") else b
            uid = _uid(pl.seed, pl.index, "sop", sp.series_number, i)
            ds.file_meta.MediaStorageSOPInstanceUID = uid
            ds.SOPInstanceUID = uid
            acq_s = sp.params["dyn_start"] + f["time"] if sp.kind == "dce" else sp.start_s
            ds.AcquisitionTime = _tm(pl.study_time_s + acq_s)
            ds.ContentTime = _tm(pl.study_time_s + acq_s + 30)
            ds.AcquisitionNumber = str(f["tp"] + 1 if "tp" in f else 1)
            ds.InstanceNumber = str(i)
            self._geometry(ds, f["stack"], f["k"])
            if sp.kind == "dce":
                ds.TriggerTime = _fmt(round(f["time"] * 1000.0, 1))
                # One 4D series always numbers its time points; separate series per
                # time point do so on GE and Philips, Siemens only counts acquisitions.
                if len(sp.params["tps"]) > 1 or pl.vendor != "SIEMENS" or sp.params.get("twist"):
                    ds.TemporalPositionIdentifier = str(f["tp"] + 1)
                    ds.NumberOfTemporalPositions = str(len(sp.params["times"]))
            if b is not None and sp.kind in ("dwi", "calc") and pl.opts["std_bvalue"]:
                ds.DiffusionBValue = float(b)
                ds.DiffusionDirectionality = "ISOTROPIC" if b > 0 else "NONE"
            if sp.kind == "dwi3scan" and pl.opts["std_bvalue"]:
                ds.DiffusionBValue = float(b)
                ds.DiffusionDirectionality = "DIRECTIONAL" if g is not None else "NONE"
                if g is not None:
                    ds.DiffusionGradientOrientation = [float(x) for x in g]
                elif "DiffusionGradientOrientation" in ds:
                    del ds.DiffusionGradientOrientation
            self._vendor_private(ds, sp, b_for_tag, f["k"] + 1)
            if sp.kind == "dwi3scan":
                blk = ds.private_block(0x0019, "SIEMENS MR HEADER")
                blk.add_new(0x0D, "CS", "DIRECTIONAL" if g is not None else "NONE")
                if g is not None:
                    blk.add_new(0x0E, "FD", [float(x) for x in g])
                elif blk.get_tag(0x0E) in ds:
                    del ds[blk.get_tag(0x0E)]
            ds.PixelData = px.tobytes()
            ds["PixelData"].VR = "OW"
            ds.save_as(os.path.join(path, f"IM_{i:04d}.dcm"), enforce_file_format=True)
        return len(frames)

    def _write_mosaic(self, sp: _SeriesPlan, frames, path: str) -> int:
        pl = self.plan
        st = sp.stacks[0]
        n = st.n_slices
        grid = int(math.ceil(math.sqrt(n)))
        gain = self._gain(sp, frames)
        for i, f in enumerate(frames, start=1):
            vol = self._to_stored(sp, f["img"], gain, 1.0)
            mos = np.zeros((grid * st.rows, grid * st.cols), dtype=vol.dtype)
            for k in range(n):
                r, c = divmod(k, grid)
                mos[r * st.rows:(r + 1) * st.rows, c * st.cols:(c + 1) * st.cols] = vol[k]
            ds = self._base(sp, T.MR_IMAGE_STORAGE)
            b = f["b"]
            self._mr_params(ds, sp, b)
            ds.SequenceName = f"*ep_b{int(b)}#{f['dir_index']}" if b > 0 else f"*ep_b{int(b)}"
            uid = _uid(pl.seed, pl.index, "sop", sp.series_number, i)
            ds.file_meta.MediaStorageSOPInstanceUID = uid
            ds.SOPInstanceUID = uid
            ds.AcquisitionTime = _tm(pl.study_time_s + sp.start_s + 4.0 * i)
            ds.ContentTime = ds.AcquisitionTime
            ds.AcquisitionNumber = str(i)
            ds.InstanceNumber = str(i)
            # Siemens convention: the position of the whole mosaic as one big image
            # centred on the first slice's centre.
            ipp1 = st.ipp(0)
            big_r, big_c = grid * st.rows, grid * st.cols
            ipp = (ipp1 - st.row_dir * st.ps_col * (big_c - st.cols) / 2.0
                   - st.col_dir * st.ps_row * (big_r - st.rows) / 2.0)
            ds.ImagePositionPatient = _ds_list(ipp)
            ds.ImageOrientationPatient = _ds_list(st.iop)
            ds.SliceLocation = _fmt(round(float(ipp1 @ st.normal), 6))
            ds.PixelSpacing = _ds_list([st.ps_row, st.ps_col])
            ds.Rows, ds.Columns = big_r, big_c
            ds.AcquisitionMatrix = [st.cols, 0, 0, st.rows]
            if pl.opts["std_bvalue"]:
                ds.DiffusionBValue = float(b)
                ds.DiffusionDirectionality = "DIRECTIONAL" if b > 0 else "NONE"
                if b > 0:
                    ds.DiffusionGradientOrientation = [float(x) for x in f["direction"]]
            self._vendor_private(ds, sp, b, 1)
            blk = ds.private_block(0x0019, "SIEMENS MR HEADER")
            blk.add_new(0x0A, "US", n)
            blk.add_new(0x0D, "CS", "DIRECTIONAL" if b > 0 else "NONE")
            if b > 0:
                blk.add_new(0x0E, "FD", [float(x) for x in f["direction"]])
            wc, ww = _window(mos)
            ds.WindowCenter, ds.WindowWidth = _fmt(wc), _fmt(ww)
            ds.PixelData = mos.tobytes()
            ds["PixelData"].VR = "OW"
            ds.save_as(os.path.join(path, f"IM_{i:04d}.dcm"), enforce_file_format=True)
        return len(frames)

    def _write_enhanced(self, sp: _SeriesPlan, frames, path: str) -> int:
        """One Enhanced MR Image Storage file holding all frames (Philips)."""
        pl = self.plan
        prm = sp.params
        st = sp.stacks[0]
        gain = self._gain(sp, frames)
        slope = float(np.round(pl.opts["philips_slope"] * 1.17, 6))
        stored = np.stack([self._to_stored(sp, f["img"], gain, slope) for f in frames])
        ds = self._base(sp, T.ENHANCED_MR_IMAGE_STORAGE)
        uid = _uid(pl.seed, pl.index, "sop", sp.series_number, 1)
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SOPInstanceUID = uid
        is_dwi = sp.kind == "dwi"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "DIFFUSION" if is_dwi else "T2", "NONE"]
        ds.AcquisitionDateTime = pl.study_date + _tm(pl.study_time_s + sp.start_s)
        ds.ContentTime = _tm(pl.study_time_s + sp.start_s + 60)
        ds.AcquisitionNumber = "1"
        ds.InstanceNumber = "1"
        ds.ContentQualification = "PRODUCT"
        ds.ResonantNucleus = "1H"
        ds.MRAcquisitionType = "2D"
        ds.SequenceName = "DwiSE" if is_dwi else "TSE"
        ds.PulseSequenceName = "DwiSE" if is_dwi else "TSE"
        ds.EchoPulseSequence = "SPIN"
        ds.MultipleSpinEcho = "NO" if is_dwi else "YES"
        ds.PhaseContrast = "NO"
        ds.SteadyStatePulseSequence = "NONE"
        ds.EchoPlanarPulseSequence = "YES" if is_dwi else "NO"
        ds.SpectrallySelectedSuppression = "FAT" if is_dwi and not prm.get("ti") else "NONE"
        ds.AcquisitionContrast = "DIFFUSION" if is_dwi else "T2"
        ds.SpacingBetweenSlices = _fmt(st.spacing)
        ds.NumberOfFrames = str(len(frames))
        ds.Rows, ds.Columns = st.rows, st.cols
        ds.VolumetricProperties = "VOLUME"
        ds.VolumeBasedCalculationTechnique = "NONE"
        ds.ComplexImageComponent = "MAGNITUDE"
        ds.PixelPresentation = "MONOCHROME"

        dim_uid = _uid(pl.seed, pl.index, "dimorg", sp.series_number)
        org = Dataset()
        org.DimensionOrganizationUID = dim_uid
        ds.DimensionOrganizationSequence = DicomSequence([org])
        dims = [(0x00209056, 0x00209111, "Stack ID"), (0x00209057, 0x00209111, "In-Stack Position Number")]
        if is_dwi:
            dims.append((0x00189087, 0x00189117, "Diffusion b-value"))
        items = []
        for ptr, grp, label in dims:
            it = Dataset()
            it.DimensionOrganizationUID = dim_uid
            it.DimensionIndexPointer = ptr
            it.FunctionalGroupPointer = grp
            it.DimensionDescriptionLabel = label
            items.append(it)
        ds.DimensionIndexSequence = DicomSequence(items)

        shared = Dataset()
        po = Dataset()
        po.ImageOrientationPatient = _ds_list(st.iop)
        shared.PlaneOrientationSequence = DicomSequence([po])
        pm = Dataset()
        pm.PixelSpacing = _ds_list([st.ps_row, st.ps_col])
        pm.SliceThickness = _fmt(st.thickness)
        pm.SpacingBetweenSlices = _fmt(st.spacing)
        shared.PixelMeasuresSequence = DicomSequence([pm])
        tm = Dataset()
        tm.RepetitionTime = _fmt(prm["tr"])
        tm.FlipAngle = _fmt(prm["flip"])
        tm.EchoTrainLength = str(prm.get("etl", 1))
        tm.RFEchoTrainLength = 1 if is_dwi else int(prm.get("etl", 1))
        tm.GradientEchoTrainLength = int(prm.get("etl", 1)) if is_dwi else 0
        shared.MRTimingAndRelatedParametersSequence = DicomSequence([tm])
        mod = Dataset()
        mod.InversionRecovery = "YES" if prm.get("ti") else "NO"
        mod.FlowCompensation = "NONE"
        mod.T2Preparation = "NO"
        mod.SpectrallySelectedExcitation = "NONE"
        mod.SpatialPresaturation = "NONE"
        mod.PartialFourier = "NO"
        mod.ParallelAcquisition = "YES"
        mod.ParallelAcquisitionTechnique = "SENSE"
        mod.ParallelReductionFactorInPlane = 2.0
        shared.MRModifierSequence = DicomSequence([mod])
        fov = Dataset()
        fov.InPlanePhaseEncodingDirection = "COLUMN"
        fov.MRAcquisitionFrequencyEncodingSteps = st.cols
        fov.MRAcquisitionPhaseEncodingStepsInPlane = st.rows
        fov.PercentSampling = "100"
        fov.PercentPhaseFieldOfView = "100"
        shared.MRFOVGeometrySequence = DicomSequence([fov])
        av = Dataset()
        av.NumberOfAverages = str(prm.get("nex", 1))
        shared.MRAveragesSequence = DicomSequence([av])
        if prm.get("ti"):
            shared.MRModifierSequence[0].InversionTimes = [float(prm["ti"])]
        ds.SharedFunctionalGroupsSequence = DicomSequence([shared])

        b_index = {b: i + 1 for i, b in enumerate(prm.get("bvalues", ()))}
        per = []
        for f in frames:
            g = Dataset()
            fc = Dataset()
            fc.FrameAcquisitionDateTime = pl.study_date + _tm(pl.study_time_s + sp.start_s)
            fc.StackID = "1"
            fc.InStackPositionNumber = f["k"] + 1
            fc.TemporalPositionIndex = 1
            div = [1, f["k"] + 1] + ([b_index[f["b"]]] if is_dwi else [])
            fc.DimensionIndexValues = div
            g.FrameContentSequence = DicomSequence([fc])
            pp = Dataset()
            pp.ImagePositionPatient = _ds_list(st.ipp(f["k"]))
            g.PlanePositionSequence = DicomSequence([pp])
            echo = Dataset()
            echo.EffectiveEchoTime = float(prm["te"])
            g.MREchoSequence = DicomSequence([echo])
            ft = Dataset()
            ft.FrameType = ["ORIGINAL", "PRIMARY", "DIFFUSION" if is_dwi else "T2", "NONE"]
            ft.PixelPresentation = "MONOCHROME"
            ft.VolumetricProperties = "VOLUME"
            ft.VolumeBasedCalculationTechnique = "NONE"
            ft.ComplexImageComponent = "MAGNITUDE"
            ft.AcquisitionContrast = "DIFFUSION" if is_dwi else "T2"
            g.MRImageFrameTypeSequence = DicomSequence([ft])
            if is_dwi:
                dif = Dataset()
                dif.DiffusionDirectionality = "ISOTROPIC" if f["b"] > 0 else "NONE"
                dif.DiffusionBValue = float(f["b"])
                g.MRDiffusionSequence = DicomSequence([dif])
            pvt = Dataset()
            pvt.RescaleIntercept = "0"
            pvt.RescaleSlope = _fmt(slope)
            pvt.RescaleType = "US"
            g.PixelValueTransformationSequence = DicomSequence([pvt])
            voi = Dataset()
            wc, ww = _window(stored[len(per)])
            voi.WindowCenter, voi.WindowWidth = _fmt(wc * slope), _fmt(ww * slope)
            g.FrameVOILUTSequence = DicomSequence([voi])
            per.append(g)
        ds.PerFrameFunctionalGroupsSequence = DicomSequence(per)
        ds.PixelData = stored.tobytes()
        ds["PixelData"].VR = "OW"
        ds.save_as(os.path.join(path, "IM_0001.dcm"), enforce_file_format=True)
        return 1


# =============================================================================
# Neuro studies: head phantom, protocol and writer
# =============================================================================

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

_NEURO_SIZES: dict[str, dict[str, Any]] = {
    "small": dict(phantom_mm=1.5, loc_matrix=128, anat_matrix=(160, 192), anat_slices=(16, 18),
                  t1_slices=16, epi_matrix=(80, 96), dwi_slices=(14, 16), dti_slices=6,
                  fmri_slices=6, fmri_volumes=10, asl_slices=8, asl_pairs=3, fmap_slices=10),
    "tiny": dict(phantom_mm=3.0, loc_matrix=48, anat_matrix=(56, 64), anat_slices=(4, 4),
                 t1_slices=4, epi_matrix=(40, 48), dwi_slices=(4, 4), dti_slices=3,
                 fmri_slices=4, fmri_volumes=10, asl_slices=3, asl_pairs=2, fmap_slices=3),
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


# Per vendor: series name choices.
_NEURO_NAMES: dict[str, dict[str, list[str]]] = {
    "SIEMENS": dict(loc=["localizer", "AAHead_Scout"], t2=["t2_tse_tra", "t2_tse_tra_512"],
                    flair=["t2_tirm_tra_dark-fluid", "t2_flair_tra"], t1=["t1_mprage_sag", "t1_mprage_sag_p2_iso"],
                    swi=["t2_swi_tra", "SWI_Images"], dwi=["ep2d_diff_tra_b1000", "ep2d_diff_3scan_trace_p2"],
                    adc=["{dwi}_ADC"], dti=["ep2d_diff_mddw_12_p2", "DTI_mddw_6dir", "ep2d_diff_DTI_12"],
                    fa=["{dti}_FA"], fmri=["ep2d_bold_rest", "ep2d_bold_moco", "rs_fMRI_ep2d_bold"],
                    asl=["tgse_pcasl_3d", "pcasl", "ep2d_pcasl"], cbf=["{asl}_relCBF", "{asl}_CBF"],
                    fmap=["gre_field_mapping", "gre_field_mapping_2mm"]),
    "GE": dict(loc=["3-Plane Loc", "3pl loc"], t2=["Ax T2 FRFSE", "AX T2 PROPELLER"], flair=["Ax T2 FLAIR"],
               t1=["Sag 3D T1 BRAVO", "SAG 3D T1 MPRAGE"], swi=["Ax SWAN"], dwi=["Ax DWI b1000", "AX DWI ASSET"],
               adc=["ADC (10^-6 mm\u00b2/s)", "Apparent Diffusion Coefficient (mm2/s)"],
               dti=["Ax DTI 12dir", "DTI"], fa=["FA", "Fractional Aniso."], fmri=["fMRI_rest", "rsfMRI", "BOLD"],
               asl=["3D ASL (non-contrast)", "3D pCASL"], cbf=["Cerebral Blood Flow", "CBF"],
               fmap=["B0map", "Ax B0 Map"]),
    "PHILIPS": dict(loc=["Survey", "SURVEY"], t2=["T2W_TSE_tra", "T2W_TSE"], flair=["FLAIR_tra", "T2W_FLAIR"],
                    t1=["T1W_3D_TFE", "3D_T1W_TFE_sag"], swi=["SWIp", "SWI"], dwi=["DWI_b1000", "DWI_SENSE"],
                    adc=["dADC", "DWI_b1000_ADC"], dti=["DTI_high_iso", "DTI_12dir"], fa=["FA", "DTI_FA"],
                    fmri=["fMRI_rest", "BOLD", "rsfMRI_SENSE"], asl=["pCASL", "ASL_perfusion"],
                    cbf=["CBF", "ASL_CBF"], fmap=["B0map", "fieldmap"]),
    "UIH": dict(loc=["localizer", "loc_3plane"], t2=["t2_fse_tra", "t2_fse_tra_fs"], flair=["t2_flair_tra"],
                t1=["t1_gre_fsp_3d_sag", "t1_mprage_sag_iso"], swi=["swi_tra"], dwi=["dwi_b1000_tra", "DWI"],
                adc=["ADC"], dti=["dti_12dir", "DTI"], fa=["FA"], fmri=["BOLD_rest", "bold_rs", "fMRI"],
                asl=["3D ASL", "asl_3d_pcasl"], cbf=["CBF", "3D ASL CBF"], fmap=["fieldmap", "gre_fieldmap"]),
    "CANON": dict(loc=["Locator", "3plane loc"], t2=["T2_FSE_AX", "Ax T2 FSE"], flair=["FLAIR_AX", "Ax FLAIR"],
                  t1=["3D T1 MPRAGE SAG", "T1_3D_FFE_SAG"], swi=["SWI", "FSBB"], dwi=["DWI_b1000", "Ax DWI"],
                  adc=["ADC"], dti=["DTI_12", "DTI"], fa=["FA"], fmri=["BOLD_EPI", "fMRI"],
                  asl=["ASL", "ASL_perfusion"], cbf=["CBF"], fmap=["B0map", "fieldmap"]),
}
_NEURO_NAMES["SIEMENS_XA"] = dict(_NEURO_NAMES["SIEMENS"], dwi=["ep2d_diff_b0_1000_tra", "ep2d_diff_tra_b1000"],
                                  dti=["ep2d_diff_mddw_12_p2", "DTI_12dir_XA"])


def _neuro_hdr(vendor: str, kind: str, phase: bool = False) -> dict[str, Any]:
    """ImageType, ScanningSequence, SequenceVariant, ScanOptions, MRAcquisitionType, SequenceName."""
    fam = "SIEMENS" if vendor.startswith("SIEMENS") else vendor
    gre = kind in ("swi", "fmap", "loc")
    epi = kind in ("dwi", "dti", "fmri", "adc", "fa")
    ss = "EP" if epi else ("GR" if gre else ("IR" if kind in ("flair",) else ("GR" if kind == "t1" else "SE")))
    if kind == "t1":
        ss = ["GR", "IR"]
    if kind in ("dwi", "dti", "adc", "fa"):
        ss = ["EP", "SE"] if fam == "GE" else "EP"
    if kind == "asl":
        ss = ["SE", "GR"] if fam in ("SIEMENS", "GE") else "EP"
    acq = "3D" if kind in ("t1", "swi", "asl", "cbf") else "2D"
    var = ["SK", "SP"] if ss != "SE" else ["SK", "SP", "OSP"]
    m = "P" if phase else "M"
    derived = kind in ("adc", "fa", "cbf")
    seq = {"t2": "tse2d1_15", "flair": "tir2d1_16", "t1": "tfl3d1_16ns", "swi": "swi3d1r", "dwi": "ep_b1000t",
           "dti": "ep_b1000#1", "adc": "ep_b0_1000", "fa": "ep_b0_1000", "fmri": "epfid2d1_64",
           "asl": "tgse_pcasl", "cbf": "tgse_pcasl", "fmap": "fm2d2r", "loc": "fl2d1"}[kind]
    if fam == "SIEMENS":
        sub = {"dwi": ["DIFFUSION", "TRACEW"], "dti": ["DIFFUSION", "NONE"], "adc": ["DIFFUSION", "ADC"],
               "fa": ["DIFFUSION", "FA"], "asl": ["ASL", "NONE"], "cbf": ["ASL", "RELCBF"]}.get(kind, [m, "ND"])
        it = ["DERIVED" if derived or kind == "dwi" else "ORIGINAL", "PRIMARY"] + sub + ["NORM"]
        if kind == "fmri":
            it = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC" if vendor == "SIEMENS" else "NORM"]
        seq = ("*" if vendor == "SIEMENS" else "") + seq
    elif fam == "GE":
        it = {"adc": ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"], "fa": ["DERIVED", "SECONDARY", "FA"],
              "cbf": ["DERIVED", "PRIMARY", "ASL", "CBF"]}.get(kind, ["ORIGINAL", "PRIMARY", "OTHER"])
        if kind == "fmap":
            it = ["ORIGINAL", "PRIMARY", "OTHER", m]
        seq = {"t2": "fse-xl", "flair": "fse-ir", "t1": "efgre3d", "swi": "swan", "asl": "3dasl",
               "cbf": "3dasl", "fmap": "fgre", "loc": "fgre"}.get(kind, "epi2")
    elif fam == "PHILIPS":
        base = "FFE" if (gre or kind in ("t1", "fmri")) else "SE"
        it = {"adc": ["DERIVED", "PRIMARY", "ADC", "ADC"], "fa": ["DERIVED", "PRIMARY", "FA", "FA"],
              "cbf": ["DERIVED", "PRIMARY", "CBF", "CBF"]}.get(kind, ["ORIGINAL", "PRIMARY", f"{m}_{base}", m, base])
        seq = {"t2": "TSE", "flair": "IR", "t1": "T1TFE", "swi": "FFE", "dwi": "DwiSE", "dti": "DwiSE",
               "fmri": "FEEPI", "asl": "FEEPI", "fmap": "FFE", "loc": "B-FFE"}.get(kind, "")
    else:  # UIH, CANON
        it = {"adc": ["DERIVED", "PRIMARY", "ADC"], "fa": ["DERIVED", "PRIMARY", "FA"],
              "cbf": ["DERIVED", "PRIMARY", "CBF"], "dwi": ["ORIGINAL", "PRIMARY", "DIFFUSION", "TRACE"],
              "dti": ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"]}.get(kind, ["ORIGINAL", "PRIMARY", m, "ND"])
        if vendor == "CANON" and not derived and kind not in ("dwi", "dti"):
            it = ["ORIGINAL", "PRIMARY", "OTHER", m] if kind == "fmap" else ["ORIGINAL", "PRIMARY", "OTHER"]
        seq = {"t2": "fse", "flair": "fse_ir", "t1": "gre_fsp_3d", "swi": "swi", "dwi": "epi_dwi",
               "dti": "epi_dti", "fmri": "epi_bold", "asl": "asl_3d", "fmap": "gre_fm", "loc": "gre"}.get(kind, "")
        if vendor == "CANON":
            seq = seq.upper()
    return dict(it=it, ss=ss, var=var, acq=acq, seq=seq, opt="PFP" if fam != "GE" else ["FAST_GEMS"])


def _plan_neuro_study(seed: int, index: int, vendor: str, occurrence: int, size: str) -> _StudyPlan:
    """Draw the protocol of one neuro study: series, geometry, names, parameters (no pixels)."""
    ns = _NEURO_SIZES[str(size).lower()]
    rng = _study_rng(seed, index, 12)
    info = _VENDOR_INFO[vendor]
    model, fs = _study_field_strength(seed, index, vendor)
    names = _NEURO_NAMES[vendor]
    parity = (occurrence + seed) % 2
    manufacturer = info["manufacturer"]
    if vendor == "CANON" and model in info.get("toshiba_models", ()):
        manufacturer = "TOSHIBA"
    opts = dict(kind="neuro", body_part="HEAD" if rng.random() < 0.6 else "BRAIN",
                sex="F" if rng.random() < 0.5 else "M", manufacturer=manufacturer,
                enh_dti=vendor == "SIEMENS_XA" or (vendor == "PHILIPS" and parity == 0),
                enh_all=vendor == "SIEMENS_XA", philips_slope=float(np.round(rng.uniform(1.1, 3.2), 6)),
                std_bvalue=True, siemens_b_vr="IS")
    d0 = _dt.date(2014, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 3600)))
    pid = f"SYNTH-{seed}-{index + 1:03d}"
    study_names = info["study"] if vendor in ("SIEMENS_XA", "UIH", "CANON") else _NEURO_STUDY[vendor]
    plan = _StudyPlan(
        index=index, seed=seed, vendor=vendor, model=model, field_strength=fs, patient_id=pid,
        patient_name=f"Synth^{seed}-{index + 1:03d}", study_uid=_uid(seed, index, "study"),
        frame_uid=_uid(seed, index, "frame"), study_date=d0.strftime("%Y%m%d"),
        study_time_s=float(rng.uniform(7.5, 17.0) * 3600), study_description=_pick(rng, study_names),
        software=_pick(rng, info["software"]), accession=f"{int(rng.integers(10**9, 10**10))}",
        age=_rint(rng, 18, 85), weight=_rint(rng, 50, 105), height=round(float(rng.uniform(1.55, 1.95)), 2),
        patient_position="HFS", series=[], opts=opts)
    hc = np.array([0.0, 0.0, 30.0]) + rng.uniform(-3, 3, 3)
    ax_r, ax_c = _plane_dirs(Plane.AXIAL, float(rng.uniform(0, 12)))
    S: list[_SeriesPlan] = []
    O, L = SequenceLabel.OTHER, SequenceLabel

    def stack(plane, mat, fov, n, thick, gap_factor=1.0, center=hc, cols=None):
        r, c = (ax_r, ax_c) if plane == Plane.AXIAL else _plane_dirs(plane)
        ps = float(np.round(fov / mat, 4))
        cover = 120.0 if size != "tiny" else 60.0
        gap = max(thick * gap_factor, cover / max(n - 1, 1)) if size == "tiny" else thick * gap_factor
        return _Stack(r, c, center + rng.uniform(-2, 2, 3), mat, cols or mat, ps, ps, n, gap, min(thick, gap), 1)

    def add(kind, label, plane, name, note, stk, **prm):
        prm.setdefault("snr", float(rng.uniform(20, 40)))
        prm["hdr"] = _neuro_hdr(vendor, kind, prm.get("phase", False))
        S.append(_SeriesPlan(kind, label, plane, name, name, kind if kind != "t2" else "t2_brain", note,
                             stk if isinstance(stk, list) else [stk], prm))

    # localizer (3 planes)
    lm = ns["loc_matrix"]
    loc = []
    for plane in (Plane.SAGITTAL, Plane.CORONAL, Plane.AXIAL):
        r, c = _plane_dirs(plane)
        loc.append(_Stack(r, c, hc.copy(), lm, lm, 260.0 / lm, 260.0 / lm, 1 if size == "tiny" else 3, 10.0, 7.0, 1))
    add("loc", O, Plane.SAGITTAL, _pick(rng, names["loc"]), "localizer (3 planes)", loc,
        tr=8.6, te=4.0, flip=20.0, model="spgr")
    am = int(_pick(rng, ns["anat_matrix"]))
    na = _rint(rng, *ns["anat_slices"])
    ax = stack(Plane.AXIAL, am, 230.0, na, 5.0, 1.2)
    add("t2", L.T2w, Plane.AXIAL, _pick(rng, names["t2"]), "T2 turbo spin echo (brain)", ax,
        tr=float(rng.uniform(4000, 6500)), te=float(rng.uniform(85, 105)), flip=150.0, etl=_rint(rng, 12, 20),
        model="se")
    add("flair", O, Plane.AXIAL, _pick(rng, names["flair"]), "FLAIR (OTHER)", ax,
        tr=9000.0, te=float(rng.uniform(90, 120)), ti=2500.0, flip=150.0, etl=16, model="se")
    t1 = stack(Plane.SAGITTAL, am, 250.0, ns["t1_slices"], 1.0 if size != "tiny" else 4.0, 1.0 if size != "tiny" else 1.0,
               center=hc.copy())
    add("t1", O, Plane.SAGITTAL, _pick(rng, names["t1"]), "3D T1-weighted (OTHER)", t1,
        tr=2300.0, te=2.3, ti=900.0, flip=9.0, model="ir")
    add("swi", O, Plane.AXIAL, _pick(rng, names["swi"]), "susceptibility-weighted (OTHER)", ax,
        tr=28.0, te=20.0, flip=15.0, model="spgr")
    em = int(_pick(rng, ns["epi_matrix"]))
    nd = _rint(rng, *ns["dwi_slices"])
    dst = stack(Plane.AXIAL, em, 230.0, nd, 5.0, 1.2)
    dwi_prm = dict(tr=float(rng.uniform(4500, 8000)), te=float(rng.uniform(60, 90)), flip=90.0,
                   bvalues=(0, 1000), snr=float(rng.uniform(20, 35)), model="dwi")
    dwi_name = _pick(rng, names["dwi"])
    add("dwi", L.DWI, Plane.AXIAL, dwi_name, "diffusion-weighted trace; b=0/1000", dst, **dwi_prm)
    add("adc", L.ADC, Plane.AXIAL, _pick(rng, names["adc"]).format(dwi=dwi_name), "ADC map", dst, **dwi_prm)
    n_dir = _rint(rng, 6, 12)
    dirs = rng.normal(size=(n_dir, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    dti = stack(Plane.AXIAL, em, 230.0, ns["dti_slices"], 4.0 if size != "tiny" else 5.0, 1.0)
    dti_name = _pick(rng, names["dti"])
    add("dti", L.DWI, Plane.AXIAL, dti_name, f"multi-direction diffusion (DTI), b=0 + {n_dir} directions at b=1000",
        dti, **dict(dwi_prm, dirs=dirs))
    add("fa", O, Plane.AXIAL, _pick(rng, names["fa"]).format(dti=dti_name), "fractional anisotropy map (OTHER)",
        dti, **dict(dwi_prm, dirs=dirs))
    fst = stack(Plane.AXIAL, em, 220.0, ns["fmri_slices"], 4.0, 1.1 if size != "tiny" else 1.0)
    add("fmri", O, Plane.AXIAL, _pick(rng, names["fmri"]), "fMRI BOLD gradient-echo EPI (OTHER)", fst,
        tr=2000.0, te=30.0 if fs > 2 else 45.0, flip=float(_pick(rng, [70.0, 77.0, 90.0])),
        volumes=ns["fmri_volumes"], model="bold")
    asl = stack(Plane.AXIAL, em, 240.0, ns["asl_slices"], 8.0 if size != "tiny" else 10.0, 1.0)
    asl_name = _pick(rng, names["asl"])
    add("asl", O, Plane.AXIAL, asl_name, "pCASL label/control pairs (OTHER)", asl,
        tr=4500.0, te=float(rng.uniform(11, 16)), flip=90.0, ti=1800.0, pairs=ns["asl_pairs"], model="asl")
    add("cbf", O, Plane.AXIAL, _pick(rng, names["cbf"]).format(asl=asl_name), "ASL CBF map (OTHER)", asl,
        tr=4500.0, te=14.0, flip=90.0, model="cbf")
    fm = stack(Plane.AXIAL, em, 230.0, ns["fmap_slices"], 3.0 if size != "tiny" else 5.0, 1.0)
    fm_name = _pick(rng, names["fmap"])
    te1 = 4.92 if fs > 2 else 5.19
    fm_prm = dict(tr=600.0 if vendor.startswith("SIEMENS") else 20.0, te=te1, te2=te1 + 2.46, flip=60.0,
                  model="fmap")
    if vendor.startswith("SIEMENS") or vendor == "UIH":   # magnitude (2 echoes) and phase difference series
        add("fmap", O, Plane.AXIAL, fm_name, "field map magnitude (OTHER)", fm, echoes=(1, 2), **fm_prm)
        add("fmap", O, Plane.AXIAL, fm_name, "field map phase difference (OTHER)", fm, echoes=(0,), phase=True, **fm_prm)
    else:                                                 # one series holding magnitude and phase
        add("fmap", O, Plane.AXIAL, fm_name, "field map magnitude and phase (OTHER)", fm, echoes=(1, 0), **fm_prm)
    for sp in S:
        sp.enhanced = bool(opts["enh_all"] and sp.kind != "loc") or (sp.kind == "dti" and opts["enh_dti"])
        if sp.kind == "dti" and not sp.enhanced:
            sp.variant = "dti"
        elif sp.enhanced:
            sp.variant = f"{sp.kind}_enhanced" if sp.kind != "t2" else "t2_brain_enhanced"
    # numbering, UIDs, timing, misleading descriptions
    t = 0.0
    for k, sp in enumerate(S):
        sp.series_number = (k + 1) if vendor not in ("PHILIPS", "GE") else ((k + 1) * 100 + 1 if vendor == "PHILIPS" else k + 1)
        sp.uid = _uid(seed, index, "series", k)
        sp.start_s = t
        t += float(rng.uniform(40, 300))
        if rng.random() < 0.08:
            sp.misleading = True
    by_label = {L.T2w: names["t2"], L.DWI: names["dwi"], L.ADC: ["ADC"], L.OTHER: names["fmri"] + names["t1"]}
    for sp in S:
        if sp.misleading:
            generic = ["", f"series {sp.series_number}", "MR", "Series"]
            wrong = [n for lab, ns_ in by_label.items() if lab != sp.label for n in ns_]
            choice = _pick(rng, generic) if rng.random() < 0.5 else _pick(rng, wrong)
            sp.note = f"{sp.note}; misleading description (true variant {sp.variant})"
            sp.description = sp.protocol = choice
            sp.variant = "misleading_description"
    plan.series = S
    return plan


class _NeuroWriter(_StudyWriter):
    """Renders and writes the series of a neuro study plan."""

    def _frames_of(self, vol, st, **meta):
        return [dict(img=vol[k], stack=st, k=k, **meta) for k in range(st.n_slices)]

    def render(self, sp: _SeriesPlan) -> list[dict[str, Any]]:
        p = self.ph.props
        prm = sp.params
        rng = self.noise_rng(sp)
        model = prm["model"]
        if sp.kind == "loc":
            frames = []
            lut = _spgr(p, prm["tr"], prm["te"], prm["flip"])
            for st in sp.stacks:
                vol = self.sampler(st).sample(lut)
                frames += self._frames_of(_rician(vol, _ref_level(vol) / prm["snr"], rng), st)
                self.release(st)
            return frames
        st = sp.stacks[0]
        smp = self.sampler(st)
        if model in ("se", "ir"):
            vol = smp.sample(_se(p, prm["tr"], prm["te"], ti=prm.get("ti")))
            return self._frames_of(_rician(vol, _ref_level(vol) / prm["snr"], rng), st)
        if model == "spgr":
            vol = smp.sample(_spgr(p, prm["tr"], prm["te"], prm["flip"]))
            return self._frames_of(_rician(vol, _ref_level(vol) / prm["snr"], rng), st)
        s0 = _se(p, prm["tr"], prm["te"], fs=0.03)
        if model == "dwi" and sp.kind == "dwi":
            sigma = _ref_level(smp.sample(s0)) / prm["snr"]
            vols = [_rician(smp.sample(s0 * np.exp(-b * p.adc * 1e-3)), sigma, rng) for b in prm["bvalues"]]
            self.ctx["dwi"] = dict(vols=vols, sigma=sigma)
            return [f for b, v in zip(prm["bvalues"], vols) for f in self._frames_of(v, st, b=b)]
        if sp.kind == "adc":
            d = self.ctx["dwi"]
            v0, v1 = d["vols"]
            adc = np.log(np.maximum(v0, 1e-6) / np.maximum(v1, 1e-6)) / float(prm["bvalues"][-1])
            adc = np.where(v0 > 4 * d["sigma"], np.clip(adc, 0, 4e-3) * 1e6, 0.0)
            return self._frames_of(adc, st, derived=True)
        if sp.kind == "dti":
            sigma = _ref_level(smp.sample(s0)) / prm["snr"] * 1.4
            e = np.array([1.0, 0.0, 0.0])
            a = np.clip(p.aniso * 0.6, 0.0, 0.45)
            b0 = _rician(smp.sample(s0), sigma, rng)
            frames = self._frames_of(b0, st, b=0, direction=None, tp=0)
            lam = []
            for d, g in enumerate(prm["dirs"]):
                fac = 1.0 + a * (3.0 * float(g @ e) ** 2 - 1.0)
                v = _rician(smp.sample(s0 * np.exp(-1000.0 * p.adc * 1e-3 * fac)), sigma, rng)
                lam.append(np.log(np.maximum(b0, 1e-6) / np.maximum(v, 1e-6)) / 1000.0)
                frames += self._frames_of(v, st, b=1000, direction=tuple(float(x) for x in g), tp=d + 1)
            self.ctx["dti"] = dict(lam=np.stack(lam), mask=b0 > 4 * sigma)
            return frames
        if sp.kind == "fa":
            d = self.ctx["dti"]
            lam = np.clip(d["lam"], 0, 4e-3)
            md = lam.mean(axis=0)
            fa = np.sqrt(1.5 * ((lam - md) ** 2).sum(axis=0) / np.maximum((lam ** 2).sum(axis=0), 1e-12))
            fa = np.where(d["mask"], np.clip(fa * 1.6, 0, 1) * 1000.0, 0.0)
            return self._frames_of(fa, st, derived=True)
        if model == "bold":
            base = smp.sample(_spgr(p, prm["tr"], prm["te"], prm["flip"]))
            sigma = _ref_level(base) / prm["snr"]
            frames = []
            for tp in range(prm["volumes"]):
                drift = 1.0 + 0.004 * tp / max(prm["volumes"], 1) + 0.003 * float(rng.normal())
                frames += self._frames_of(_rician(base * drift, sigma, rng), st, tp=tp)
            return frames
        if model == "asl":
            ctrl_lut = (p.pd * (1 - np.exp(-prm["tr"] / p.t1)) * np.exp(-prm["te"] / p.t2) * 0.35).astype(np.float32)
            ctrl = smp.sample(ctrl_lut)
            perf = smp.sample((p.pd * p.cbf / 60.0 * 0.012).astype(np.float32))
            sigma = _ref_level(ctrl) / prm["snr"]
            frames = []
            for k in range(2 * prm["pairs"]):
                vol = ctrl - perf if k % 2 == 0 else ctrl
                frames += self._frames_of(_rician(vol, sigma, rng), st, tp=k)
            return frames
        if model == "cbf":
            cbf = smp.sample(p.cbf)
            cbf = np.maximum(cbf + rng.normal(0, 4.0, cbf.shape).astype(np.float32) * (cbf > 1), 0)
            return self._frames_of(cbf, st, derived=True)
        if model == "fmap":
            frames = []
            for echo in prm["echoes"]:
                if echo == 0:   # phase difference image, radians in [-pi, pi)
                    mag = smp.sample(_spgr(p, prm["tr"], prm["te"], prm["flip"]))
                    pts = st.points(1)[0].astype(np.float64)
                    df = (25.0 * pts[..., 0] / 100.0 + 15.0 * pts[..., 2] / 100.0
                          + 80.0 * np.exp(-(((pts[..., 1] + 70.0) ** 2 + (pts[..., 2] + 5.0) ** 2) / 900.0)))
                    phi = 2 * np.pi * df * (prm["te2"] - prm["te"]) * 1e-3
                    noise = rng.uniform(-np.pi, np.pi, phi.shape)
                    phi = np.where(mag > 0.08 * _ref_level(mag), phi, noise)
                    phi = (phi + np.pi) % (2 * np.pi) - np.pi
                    frames += self._frames_of(phi.astype(np.float32), st, echo=0, phase=True)
                else:
                    te = prm["te"] if echo == 1 else prm["te2"]
                    vol = smp.sample(_spgr(p, prm["tr"], te, prm["flip"]))
                    frames += self._frames_of(_rician(vol, _ref_level(vol) / prm["snr"], rng), st, echo=echo, te=te)
            return frames
        raise ValueError(sp.kind)

    # writing ------------------------------------------------------------------
    def write(self, sp: _SeriesPlan, frames, series_dir: str) -> int:
        path = os.path.join(self.outdir, series_dir)
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if re.fullmatch(r"IM_\d{4,}\.dcm", name):
                os.remove(os.path.join(path, name))
        pl = self.plan
        rng = self.noise_rng(sp, 99)
        mags = [f["img"] for f in frames if not (f.get("derived") or f.get("phase"))]
        hi = float(np.percentile(np.stack(mags).ravel(), 99.5)) if mags else 1.0
        target = float(rng.uniform(700, 1800)) * (1.6 if pl.vendor == "GE" else 1.0)
        maxv = 32767 if pl.vendor == "GE" else 4095
        stored = []
        for f in frames:
            if f.get("phase"):
                v = (f["img"] + np.pi) / (2 * np.pi) * 4095.0
            elif f.get("derived"):
                v = f["img"]
            else:
                v = f["img"] * target / max(hi, 1e-9)
            stored.append(np.clip(np.rint(v), 0, maxv).astype(np.int16 if pl.vendor == "GE" else np.uint16))
        if sp.enhanced:
            return self._write_enh(sp, frames, stored, path)
        return self._write_cls(sp, frames, stored, path)

    def _common(self, ds: Dataset, sp: _SeriesPlan) -> None:
        prm = sp.params
        h = prm["hdr"]
        st = sp.stacks[0]
        ds.ImageType = h["it"]
        ds.ScanningSequence = h["ss"]
        ds.SequenceVariant = h["var"]
        ds.ScanOptions = h["opt"]
        ds.MRAcquisitionType = h["acq"]
        ds.SequenceName = h["seq"]
        ds.SliceThickness = _fmt(st.thickness)
        ds.RepetitionTime = _fmt(prm["tr"])
        ds.EchoTime = _fmt(prm["te"])
        if prm.get("ti"):
            ds.InversionTime = _fmt(prm["ti"])
        ds.SpacingBetweenSlices = _fmt(st.spacing)
        ds.EchoTrainLength = str(prm.get("etl", 1))
        ds.FlipAngle = _fmt(prm["flip"])
        ds.PixelBandwidth = _fmt(1500.0 if sp.kind in ("dwi", "dti", "fmri", "asl") else 220.0)
        ds.AcquisitionMatrix = [0, st.cols, st.rows, 0]
        ds.InPlanePhaseEncodingDirection = "COL"
        if sp.kind == "fmri":
            ds.NumberOfTemporalPositions = str(prm["volumes"])
        if sp.kind in ("adc", "fa", "cbf") or sp.params.get("phase"):
            ds.RescaleIntercept = "-4096" if sp.params.get("phase") else "0"
            ds.RescaleSlope = "2" if sp.params.get("phase") else "1"
            ds.RescaleType = "US"

    def _b_tags(self, ds: Dataset, b: float, g) -> None:
        v = self.plan.vendor
        if v == "SIEMENS":
            blk = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
            blk.add_new(0x0C, "IS", str(int(b)))
            blk.add_new(0x0D, "CS", "NONE" if b == 0 else ("DIRECTIONAL" if g is not None else "ISOTROPIC"))
            if g is not None and b > 0:
                blk.add_new(0x0E, "FD", list(g))
            return
        if v == "GE":
            blk = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
            blk.add_new(0x39, "IS", [1_000_000_000 + int(b), 0, 0, 0])
            return
        if v == "PHILIPS":
            blk = ds.private_block(0x2001, "Philips Imaging DD 001", create=True)
            blk.add_new(0x03, "FL", float(b))
            blk.add_new(0x04, "CS", "0" if b == 0 else ("I" if g is None else "O"))
        ds.DiffusionBValue = float(b)
        ds.DiffusionDirectionality = "NONE" if b == 0 else ("DIRECTIONAL" if g is not None else "ISOTROPIC")
        if g is not None and b > 0:
            ds.DiffusionGradientOrientation = list(g)
        elif "DiffusionGradientOrientation" in ds:
            del ds.DiffusionGradientOrientation

    def _write_cls(self, sp, frames, stored, path) -> int:
        pl = self.plan
        ds = self._base(sp, T.MR_IMAGE_STORAGE)
        self._common(ds, sp)
        wc, ww = _window(np.stack(stored))
        ds.WindowCenter, ds.WindowWidth = _fmt(wc), _fmt(ww)
        base_it = list(ds.ImageType)
        for i, (f, px) in enumerate(zip(frames, stored), start=1):
            uid = _uid(pl.seed, pl.index, "sop", sp.series_number, i)
            ds.file_meta.MediaStorageSOPInstanceUID = uid
            ds.SOPInstanceUID = uid
            tp = f.get("tp", 0)
            t_acq = sp.start_s + tp * float(sp.params["tr"]) / 1000.0
            ds.AcquisitionTime = _tm(pl.study_time_s + t_acq)
            ds.ContentTime = _tm(pl.study_time_s + t_acq + 20)
            ds.AcquisitionNumber = str(tp + 1)
            ds.InstanceNumber = str(i)
            self._geometry(ds, f["stack"], f["k"])
            if sp.kind in ("fmri", "asl"):
                ds.TemporalPositionIdentifier = str(tp + 1)
                ds.NumberOfTemporalPositions = str(1 + max(g.get("tp", 0) for g in frames))
            if sp.kind == "fmap":
                ds.EchoNumbers = str(max(f["echo"], 1) if not f.get("phase") else 2)
                ds.EchoTime = _fmt(f.get("te", sp.params["te2"]))
                m = "P" if f.get("phase") else "M"
                ds.ImageType = [x if x not in ("M", "P") else m for x in base_it] if any(
                    x in ("M", "P") for x in base_it) else base_it + [m]
                if f.get("phase"):
                    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-4096", "2", "US"
            if "b" in f:
                self._b_tags(ds, float(f["b"]), f.get("direction"))
            elif sp.kind == "adc" and pl.vendor == "GE":
                self._b_tags(ds, 1000.0, None)
            if sp.kind == "dti" and pl.vendor == "SIEMENS":
                ds.SequenceName = f"*ep_b{int(f['b'])}" + (f"#{f['tp']}" if f["b"] else "")
            if pl.vendor == "GE":
                g19 = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
                g19.add_new(0x9C, "LO", str(ds.SequenceName))
            ds.PixelData = px.tobytes()
            ds["PixelData"].VR = "OW"
            ds.save_as(os.path.join(path, f"IM_{i:04d}.dcm"), enforce_file_format=True)
        return len(frames)

    def _write_enh(self, sp, frames, stored, path) -> int:
        pl = self.plan
        prm = sp.params
        st = sp.stacks[0]
        ds = self._base(sp, T.ENHANCED_MR_IMAGE_STORAGE)
        uid = _uid(pl.seed, pl.index, "sop", sp.series_number, 1)
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SOPInstanceUID = uid
        h = prm["hdr"]
        ds.ImageType = h["it"][:4] if len(h["it"]) >= 4 else h["it"] + ["NONE"] * (4 - len(h["it"]))
        ds.AcquisitionDateTime = pl.study_date + _tm(pl.study_time_s + sp.start_s)
        ds.ContentTime = _tm(pl.study_time_s + sp.start_s + 30)
        ds.AcquisitionNumber = "1"
        ds.InstanceNumber = "1"
        ds.ContentQualification = "PRODUCT"
        ds.ResonantNucleus = "1H"
        ds.MRAcquisitionType = h["acq"]
        ds.SequenceName = h["seq"]
        ds.PulseSequenceName = h["seq"]
        epi = sp.kind in ("dwi", "dti", "adc", "fa", "fmri", "asl", "cbf")
        ds.EchoPulseSequence = "GRADIENT" if sp.kind in ("fmri", "swi", "t1", "fmap", "loc") else "SPIN"
        ds.MultipleSpinEcho = "YES" if sp.kind in ("t2", "flair") else "NO"
        ds.PhaseContrast = "NO"
        ds.SteadyStatePulseSequence = "NONE"
        ds.EchoPlanarPulseSequence = "YES" if epi else "NO"
        ds.SpectrallySelectedSuppression = "FAT" if sp.kind in ("dwi", "dti") else "NONE"
        ds.AcquisitionContrast = {"dwi": "DIFFUSION", "dti": "DIFFUSION", "adc": "DIFFUSION", "fa": "DIFFUSION",
                                  "t2": "T2", "flair": "FLUID_ATTENUATED", "t1": "T1", "fmri": "T2_STAR",
                                  "swi": "T2_STAR"}.get(sp.kind, "UNKNOWN")
        ds.NumberOfFrames = str(len(frames))
        ds.Rows, ds.Columns = st.rows, st.cols
        ds.VolumetricProperties = "VOLUME"
        ds.VolumeBasedCalculationTechnique = "NONE"
        ds.ComplexImageComponent = "PHASE" if prm.get("phase") else "MAGNITUDE"
        ds.PixelPresentation = "MONOCHROME"
        if sp.kind == "fmri":
            ds.NumberOfTemporalPositions = str(prm["volumes"])
        dim_uid = _uid(pl.seed, pl.index, "dimorg", sp.series_number)
        org = Dataset()
        org.DimensionOrganizationUID = dim_uid
        ds.DimensionOrganizationSequence = DicomSequence([org])
        has_b = any("b" in f for f in frames)
        has_t = any("tp" in f for f in frames) and sp.kind not in ("dti",)
        dims = [(0x00209056, 0x00209111, "Stack ID"), (0x00209057, 0x00209111, "In-Stack Position Number")]
        if has_b:
            dims.append((0x00189087, 0x00189117, "Diffusion b-value"))
        if has_t or sp.kind == "dti":
            dims.append((0x00209128, 0x00209111, "Temporal Position Index"))
        items = []
        for ptr, grp, label in dims:
            it = Dataset()
            it.DimensionOrganizationUID = dim_uid
            it.DimensionIndexPointer = ptr
            it.FunctionalGroupPointer = grp
            it.DimensionDescriptionLabel = label
            items.append(it)
        ds.DimensionIndexSequence = DicomSequence(items)
        shared = Dataset()
        po = Dataset()
        po.ImageOrientationPatient = _ds_list(st.iop)
        shared.PlaneOrientationSequence = DicomSequence([po])
        pm = Dataset()
        pm.PixelSpacing = _ds_list([st.ps_row, st.ps_col])
        pm.SliceThickness = _fmt(st.thickness)
        pm.SpacingBetweenSlices = _fmt(st.spacing)
        shared.PixelMeasuresSequence = DicomSequence([pm])
        tm = Dataset()
        tm.RepetitionTime = _fmt(prm["tr"])
        tm.FlipAngle = _fmt(prm["flip"])
        tm.EchoTrainLength = str(prm.get("etl", 1))
        shared.MRTimingAndRelatedParametersSequence = DicomSequence([tm])
        if prm.get("ti"):
            mod = Dataset()
            mod.InversionRecovery = "YES"
            mod.InversionTimes = [float(prm["ti"])]
            shared.MRModifierSequence = DicomSequence([mod])
        ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
        slope = float(pl.opts["philips_slope"]) if pl.vendor == "PHILIPS" and not any(
            f.get("derived") for f in frames) else 1.0
        b_index: dict[float, int] = {}
        per = []
        for i, f in enumerate(frames):
            g = Dataset()
            fc = Dataset()
            tp = f.get("tp", 0)
            fc.FrameAcquisitionDateTime = pl.study_date + _tm(pl.study_time_s + sp.start_s + tp * prm["tr"] / 1000.0)
            fc.StackID = "1"
            fc.InStackPositionNumber = f["k"] + 1
            fc.TemporalPositionIndex = tp + 1
            div = [1, f["k"] + 1]
            if has_b:
                div.append(b_index.setdefault(float(f.get("b", 0)), len(b_index) + 1))
            if has_t or sp.kind == "dti":
                div.append(tp + 1)
            fc.DimensionIndexValues = div
            g.FrameContentSequence = DicomSequence([fc])
            pp = Dataset()
            pp.ImagePositionPatient = _ds_list(st.ipp(f["k"]))
            g.PlanePositionSequence = DicomSequence([pp])
            echo = Dataset()
            echo.EffectiveEchoTime = float(f.get("te", prm["te"]))
            g.MREchoSequence = DicomSequence([echo])
            ft = Dataset()
            ft.FrameType = list(ds.ImageType)
            ft.PixelPresentation = "MONOCHROME"
            ft.VolumetricProperties = "VOLUME"
            ft.VolumeBasedCalculationTechnique = "NONE"
            ft.ComplexImageComponent = ds.ComplexImageComponent
            ft.AcquisitionContrast = ds.AcquisitionContrast
            g.MRImageFrameTypeSequence = DicomSequence([ft])
            if "b" in f:
                dif = Dataset()
                b = float(f["b"])
                gdir = f.get("direction")
                dif.DiffusionDirectionality = "NONE" if b == 0 else ("DIRECTIONAL" if gdir is not None else "ISOTROPIC")
                dif.DiffusionBValue = b
                if gdir is not None and b > 0:
                    gd = Dataset()
                    gd.DiffusionGradientOrientation = list(gdir)
                    dif.DiffusionGradientDirectionSequence = DicomSequence([gd])
                g.MRDiffusionSequence = DicomSequence([dif])
            pvt = Dataset()
            pvt.RescaleIntercept = "-4096" if f.get("phase") else "0"
            pvt.RescaleSlope = "2" if f.get("phase") else _fmt(slope)
            pvt.RescaleType = "US"
            g.PixelValueTransformationSequence = DicomSequence([pvt])
            voi = Dataset()
            wc, ww = _window(stored[i])
            voi.WindowCenter, voi.WindowWidth = _fmt(wc), _fmt(ww)
            g.FrameVOILUTSequence = DicomSequence([voi])
            per.append(g)
        ds.PerFrameFunctionalGroupsSequence = DicomSequence(per)
        arr = np.stack(stored)
        if slope != 1.0:
            arr = np.clip(np.rint(arr / slope), 0, 4095).astype(arr.dtype)
        ds.PixelData = arr.tobytes()
        ds["PixelData"].VR = "OW"
        ds.save_as(os.path.join(path, "IM_0001.dcm"), enforce_file_format=True)
        return 1


# =============================================================================
# labels.csv and the output folder
# =============================================================================

def _read_own_labels(outdir: str) -> Optional[list[dict[str, str]]]:
    """Rows of ``outdir/labels.csv`` if it was written by this generator, else None."""
    path = os.path.join(outdir, LABELS_CSV)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or tuple(h.strip() for h in header) != LABELS_COLUMNS:
                return None
            rows = []
            for rec in reader:
                if not rec:
                    continue
                if len(rec) != len(LABELS_COLUMNS) or not rec[4].startswith(_NOTE_PREFIX):
                    return None
                rows.append(dict(zip(LABELS_COLUMNS, rec)))
            return rows
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def _check_outdir(outdir: str) -> list[dict[str, str]]:
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise ValueError(f"output path {outdir!r} exists and is not a folder")
    if not os.path.isdir(outdir) or not os.listdir(outdir):
        return []
    rows = _read_own_labels(outdir)
    if rows is None:
        raise ValueError(
            f"refusing to write synthetic studies into {outdir!r}: the folder is not empty and "
            f"holds no {LABELS_CSV} made by the synthetic generator; choose an empty or new folder"
        )
    return rows


def _write_labels(outdir: str, old: list[dict[str, str]], new: list[SynthSeries],
                  notes: dict[str, str]) -> None:
    rows: dict[str, dict[str, str]] = {r["series_dir"]: r for r in old}
    for s in new:
        rows[s.series_dir] = {
            "series_dir": s.series_dir, "SeriesInstanceUID": s.series_uid, "label": s.label.value,
            "SeriesDescription": s.description, "note": notes[s.series_uid],
        }
    tmp = os.path.join(outdir, LABELS_CSV + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(LABELS_COLUMNS)
        for r in rows.values():
            w.writerow([r[c] for c in LABELS_COLUMNS])
    os.replace(tmp, os.path.join(outdir, LABELS_CSV))


# =============================================================================
# Public entry point
# =============================================================================

def generate_studies(outdir: Any, studies: int = 1, seed: int = 0, *,
                     vendors: Optional[Sequence[str]] = None, size: str = "small",
                     progress: Optional[ProgressFn] = None,
                     kinds: Sequence[str] = ("prostate",),
                     prostate_extras: bool = False) -> list[SynthSeries]:
    """Write ``studies`` synthetic prostate mpMRI studies under ``outdir``.

    Layout: ``<PatientID>/<StudyDate>/<SeriesNumber>-<safe description>/IM_0001.dcm ...``
    plus ``outdir/labels.csv`` (columns ``series_dir,SeriesInstanceUID,label,
    SeriesDescription,note``; rows of an earlier run of this generator in the
    same folder are kept, rows of re-written series replaced).

    Parameters
    ----------
    outdir:
        Output folder; created if missing.  A non-empty folder is accepted only
        when it already holds a ``labels.csv`` written by this generator.
    studies:
        Number of studies (patients), >= 1.
    seed:
        Non-negative integer; the same seed gives the same series, UIDs and
        pixel values.  Study ``i`` uses patient ID ``SYNTH-<seed>-<i+1:03d>``.
    vendors:
        Vendors to cycle through, per study kind (the ``n``-th study of a kind
        gets ``vendors[n % len(vendors)]``); default :data:`PROSTATE_VENDORS`
        ``("SIEMENS", "GE", "PHILIPS")`` for prostate studies and
        :data:`NEURO_VENDORS` ``("SIEMENS_XA", "GE", "PHILIPS", "UIH", "CANON")``
        for neuro studies.  Prostate studies accept only the first three.
    kinds:
        Study kinds, ``"prostate"`` and/or ``"neuro"``; study ``i`` is of kind
        ``kinds[i % len(kinds)]``.  The default keeps the output of earlier
        versions byte for byte.
    prostate_extras:
        Give prostate studies the newer variants too: Siemens raw 3-scan-trace
        multi-direction DWI (``dwi_3scan``) and TWIST-named per-time-point DCE
        with TemporalPositionIdentifier (``dce_twist``).  Off by default so that
        existing outputs stay identical.
    size:
        ``"small"`` (default: <= ~400 files and <= 20 slices per series, a few
        seconds per study) or ``"tiny"`` (a few slices of <= 64 pixels, for tests).
    progress:
        Optional ``callable(done, total)`` called after each written series
        (``total`` = series of all studies).

    Returns
    -------
    list[SynthSeries]
        The written series with their ground-truth labels, in writing order.

    Raises
    ------
    ValueError
        For a non-empty foreign ``outdir``, an unknown vendor or size, a
        negative seed or ``studies`` < 1.
    """
    outdir = os.fspath(outdir)
    spec = _size_spec(size)
    if isinstance(studies, bool) or int(studies) != studies or studies < 1:
        raise ValueError(f"studies must be a positive integer, not {studies!r}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    seed, studies = int(seed), int(studies)
    if isinstance(vendors, str):
        vendors = [vendors]
    klist = _norm_kinds(kinds)
    vlist = [str(v).strip().upper() for v in vendors] if vendors is not None else None
    if vlist is not None and not vlist:
        raise ValueError("vendors must name at least one vendor")
    for v in vlist or []:
        if v not in _VENDOR_INFO:
            raise ValueError(f"unknown vendor {v!r}; expected one of {', '.join(VENDORS)}")
    if vlist is not None and "prostate" in klist and not all(v in PROSTATE_VENDORS for v in vlist):
        raise ValueError(f"prostate studies support only the vendors {', '.join(PROSTATE_VENDORS)}")
    old_rows = _check_outdir(outdir)
    os.makedirs(outdir, exist_ok=True)

    # Plan all studies first (cheap) so progress knows the total.
    plans: list[_StudyPlan] = []
    seen: dict[tuple[str, str], int] = {}
    for i in range(studies):
        kind = klist[i % len(klist)]
        kocc = i // len(klist)
        cycle = vlist if vlist is not None else (PROSTATE_VENDORS if kind == "prostate" else NEURO_VENDORS)
        vendor = cycle[kocc % len(cycle)]
        occ = seen.get((kind, vendor), 0)
        seen[(kind, vendor)] = occ + 1
        if kind == "neuro":
            plans.append(_plan_neuro_study(seed, i, vendor, occ, size))
        else:
            plans.append(_plan_study(seed, i, vendor, occ, spec, _prostate_center(seed, i),
                                     extras=bool(prostate_extras)))
    total = sum(len(p.series) for p in plans)
    done = 0
    written: list[SynthSeries] = []
    notes: dict[str, str] = {}
    for plan in plans:
        if plan.opts.get("kind") == "neuro":
            phantom = _build_head_phantom(seed, plan.index, _NEURO_SIZES[size.lower()]["phantom_mm"],
                                          plan.field_strength)
            writer: _StudyWriter = _NeuroWriter(plan, phantom, outdir, spec)
        else:
            phantom = _build_phantom(seed, plan.index, spec.phantom_mm, plan.field_strength)
            writer = _StudyWriter(plan, phantom, outdir, spec)
        study_dir = f"{plan.patient_id}/{plan.study_date}"
        for sp in plan.series:
            series_dir = f"{study_dir}/{sp.series_number}-{_safe_name(sp.description)}"
            frames = writer.render(sp)
            n_files = writer.write(sp, frames, series_dir.replace("/", os.sep))
            s = SynthSeries(
                series_uid=sp.uid, study_uid=plan.study_uid, patient_id=plan.patient_id,
                series_number=sp.series_number, description=sp.description, label=sp.label,
                plane=sp.plane, vendor=plan.vendor, series_dir=series_dir, n_files=n_files,
                variant=sp.variant,
            )
            written.append(s)
            notes[sp.uid] = f"{_NOTE_PREFIX} {plan.vendor}: {sp.note}" + (
                f" [{sp.variant}]" if sp.variant != "misleading_description" else "")
            done += 1
            if progress is not None:
                progress(done, total)
    _write_labels(outdir, old_rows, written, notes)
    return written

