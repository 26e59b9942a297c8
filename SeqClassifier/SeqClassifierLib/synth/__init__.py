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

import os
from typing import Any, Optional, Sequence

from SeqClassifierLib.synth.base import (KINDS, LABELS_COLUMNS, LABELS_CSV, NEURO_VENDORS, PROSTATE_VENDORS, SIZES,
                                         VENDORS, ProgressFn, SynthSeries, _NEURO_SIZES, _NOTE_PREFIX, _norm_kinds,
                                         _size_spec)
from SeqClassifierLib.synth.head import HeadTissue, _build_head_phantom
from SeqClassifierLib.synth.labels_csv import _check_outdir, _write_labels
from SeqClassifierLib.synth.neuro import _NeuroWriter, _plan_neuro_study
from SeqClassifierLib.synth.phantom import Phantom, Tissue, _build_phantom, _prostate_center
from SeqClassifierLib.synth.plan import _StudyPlan
from SeqClassifierLib.synth.prostate import _ProstateWriter
from SeqClassifierLib.synth.prostate_plan import _plan_study
from SeqClassifierLib.synth.vendors import _VENDOR_INFO, _study_field_strength
from SeqClassifierLib.synth.writer import _WriterBase, _safe_name

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


def generate_studies(outdir: Any, studies: int = 1, seed: int = 0, *,
                     vendors: Optional[Sequence[str]] = None, size: str = "small",
                     progress: Optional[ProgressFn] = None,
                     kinds: Sequence[str] = ("prostate",),
                     prostate_extras: bool = False, realism: bool = False) -> list[SynthSeries]:
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
    realism:
        Realistic header gaps (:mod:`SeqClassifierLib.synth.realism`, rates in
        ``docs/ATTRIBUTES.md``): attribute groups dropped or changed per study and
        series (names, ImageType detail, contrast and timing, standard and private
        diffusion tags, ScanningSequence ...), names from the IDC vocabulary, and
        the series real protocols hold (per-time-point DCE without any contrast or
        timing attribute beside VFA maps of the same TE/TR, static post-contrast T1,
        GE fMRI with a private b=0, spin-echo EPI field maps, DTI b0 series,
        multiband fMRI, Secondary Capture colour maps).  Labels stay the truth.
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
            plans.append(_plan_neuro_study(seed, i, vendor, occ, size, realism=bool(realism)))
        else:
            plans.append(_plan_study(seed, i, vendor, occ, spec, _prostate_center(seed, i),
                                     extras=bool(prostate_extras), realism=bool(realism)))
    total = sum(len(p.series) for p in plans)
    done = 0
    written: list[SynthSeries] = []
    notes: dict[str, str] = {}
    for plan in plans:
        if plan.opts.get("kind") == "neuro":
            phantom = _build_head_phantom(seed, plan.index, _NEURO_SIZES[size.lower()]["phantom_mm"],
                                          plan.field_strength)
            writer: _WriterBase = _NeuroWriter(plan, phantom, outdir, spec)
        else:
            phantom = _build_phantom(seed, plan.index, spec.phantom_mm, plan.field_strength)
            writer = _ProstateWriter(plan, phantom, outdir, spec)
        study_dir = f"{plan.patient_id}/{plan.study_date}"
        for sp in plan.series:
            series_dir = f"{study_dir}/{sp.series_number}-{_safe_name(sp.description)}"
            frames = writer.render(sp)
            n_files = writer.write(sp, frames, series_dir.replace("/", os.sep))
            s = SynthSeries(
                series_uid=sp.uid, study_uid=plan.study_uid, patient_id=plan.patient_id,
                series_number=sp.series_number, description=sp.description, label=sp.label,
                plane=sp.plane, vendor=plan.vendor, series_dir=series_dir, n_files=n_files,
                variant=sp.variant, family=f"{plan.vendor}/{sp.family or sp.variant}",
            )
            written.append(s)
            notes[sp.uid] = f"{_NOTE_PREFIX} {plan.vendor}: {sp.note}" + (
                f" [{sp.variant}]" if sp.variant != "misleading_description" else "")
            done += 1
            if progress is not None:
                progress(done, total)
    _write_labels(outdir, old_rows, written, notes)
    return written
