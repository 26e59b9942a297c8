"""DICOM writing shared by prostate and neuro studies: value formatting, the base data set, file saving."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian

from SeqClassifierLib.synth.base import _IMPLEMENTATION_CLASS_UID, _IMPLEMENTATION_VERSION, _Size, _study_rng, _uid
from SeqClassifierLib.synth.geometry import _Bias, _Sampler, _Stack
from SeqClassifierLib.synth.phantom import Phantom
from SeqClassifierLib.synth.plan import _SeriesPlan, _StudyPlan
from SeqClassifierLib.synth.realism import apply_drops
from SeqClassifierLib.synth.vendors import _GAMMA_MHZ_T, _VENDOR_INFO

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


_PYDICOM_MAJOR = int(str(pydicom.__version__).split(".")[0])


def save_dataset(ds: Dataset, path: str) -> None:
    """Write ``ds`` as a DICOM Part 10 file (preamble, file meta) with pydicom 2.4 as with 3.x."""
    if _PYDICOM_MAJOR >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pydicom 2.x: the same file through the older keyword
        ds.save_as(path, write_like_original=False)


def set_pixels(ds: Dataset, pixels: np.ndarray) -> None:
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OB" if ds.get("BitsAllocated") == 8 else "OW"


def colour_map(x: np.ndarray) -> np.ndarray:
    """Values 0..1 as 8-bit RGB (a jet-like map, black background), shape (..., 3)."""
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    rgb = np.stack([np.clip(1.5 - np.abs(4 * x - 3), 0, 1), np.clip(1.5 - np.abs(4 * x - 2), 0, 1),
                    np.clip(1.5 - np.abs(4 * x - 1), 0, 1)], axis=-1)
    rgb = np.where((x > 0.02)[..., None], rgb, 0.0)
    return np.rint(rgb * 255).astype(np.uint8)


def _safe_name(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._")
    return s[:60] or "unnamed"


class _WriterBase:
    """Geometry samplers, noise streams and the base data set of one study's series."""

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

    def _geometry(self, ds: Dataset, st: _Stack, k: int) -> None:
        ipp = st.ipp(k)
        ds.ImagePositionPatient = _ds_list(ipp)
        ds.ImageOrientationPatient = _ds_list(st.iop)
        ds.SliceLocation = _fmt(round(float(ipp @ st.normal), 6))
        ds.PixelSpacing = _ds_list([st.ps_row, st.ps_col])
        ds.Rows = st.rows
        ds.Columns = st.cols

    def _set_sop(self, ds: Dataset, sp: _SeriesPlan, i: int) -> None:
        uid = _uid(self.plan.seed, self.plan.index, "sop", sp.series_number, i)
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SOPInstanceUID = uid

    def write_classic(self, ds: Dataset, sp: _SeriesPlan, frames: Sequence[dict[str, Any]],
                      stored: Sequence[np.ndarray], path: str,
                      per_frame: Callable[[Dataset, int, dict[str, Any]], None]) -> int:
        """One MR Image Storage file per frame: ``ds`` is built once and updated per file.

        Each file gets its SOP instance UID, InstanceNumber and slice geometry here;
        ``per_frame(ds, i, frame)`` sets the rest (times, b-values, private tags).
        """
        for i, (f, px) in enumerate(zip(frames, stored), start=1):
            self._set_sop(ds, sp, i)
            ds.InstanceNumber = str(i)
            self._geometry(ds, f["stack"], f["k"])
            per_frame(ds, i, f)
            apply_drops(ds, sp)
            set_pixels(ds, px)
            save_dataset(ds, os.path.join(path, f"IM_{i:04d}.dcm"))
        return len(frames)

    def write_secondary_capture(self, sp: _SeriesPlan, frames: Sequence[dict[str, Any]], path: str,
                                modality: str, keep_geometry: bool) -> int:
        """Derived colour map as Secondary Capture Image Storage: RGB, Modality MR or OT, often without geometry."""
        ds = self._base(sp, SECONDARY_CAPTURE_STORAGE)
        ds.Modality = modality
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.ConversionType = "WSD"
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        stored = [colour_map(f["img"]) for f in frames]

        def per_frame(ds: Dataset, i: int, f: dict[str, Any]) -> None:
            ds.AcquisitionNumber = "1"
            if not keep_geometry:
                for key in ("ImagePositionPatient", "ImageOrientationPatient", "SliceLocation"):
                    if key in ds:
                        delattr(ds, key)

        return self.write_classic(ds, sp, frames, stored, path, per_frame)

    def write_enhanced(self, ds: Dataset, sp: _SeriesPlan, es: "EnhancedSeries",
                       frames: Sequence["EnhancedFrame"], pixels: np.ndarray, path: str) -> int:
        """One Enhanced MR Image Storage file holding every frame (Philips, Siemens XA ...).

        ``ds`` comes from :meth:`_base` with the series' own top-level attributes
        (times, temporal counts) already set; ``es`` holds the series-level
        values, ``frames`` the per-frame ones.
        """
        st = sp.stacks[0]
        self._set_sop(ds, sp, 1)
        ds.ImageType = list(es.image_type)
        ds.AcquisitionNumber = "1"
        ds.InstanceNumber = "1"
        ds.ContentQualification = "PRODUCT"
        ds.ResonantNucleus = "1H"
        ds.MRAcquisitionType = es.acquisition_type
        ds.SequenceName = es.sequence_name
        ds.PulseSequenceName = es.sequence_name
        ds.EchoPulseSequence = es.echo_pulse
        ds.MultipleSpinEcho = es.multiple_spin_echo
        ds.PhaseContrast = "NO"
        ds.SteadyStatePulseSequence = "NONE"
        ds.EchoPlanarPulseSequence = es.echo_planar
        ds.SpectrallySelectedSuppression = es.fat_suppression
        ds.AcquisitionContrast = es.contrast
        ds.NumberOfFrames = str(len(frames))
        ds.Rows, ds.Columns = st.rows, st.cols
        ds.VolumetricProperties = "VOLUME"
        ds.VolumeBasedCalculationTechnique = "NONE"
        ds.ComplexImageComponent = es.complex_component
        ds.PixelPresentation = "MONOCHROME"

        dim_uid = _uid(self.plan.seed, self.plan.index, "dimorg", sp.series_number)
        org = Dataset()
        org.DimensionOrganizationUID = dim_uid
        ds.DimensionOrganizationSequence = DicomSequence([org])
        items = []
        for ptr, grp, label in [_DIMENSIONS["stack"], _DIMENSIONS["in_stack"], *(_DIMENSIONS[d] for d in es.dims)]:
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
        tm.RepetitionTime = _fmt(es.tr)
        tm.FlipAngle = _fmt(es.flip)
        tm.EchoTrainLength = str(es.etl)
        for key, value in es.timing_extra.items():
            setattr(tm, key, value)
        shared.MRTimingAndRelatedParametersSequence = DicomSequence([tm])
        for keyword, item in es.shared_extra:
            setattr(shared, keyword, DicomSequence([item]))
        ds.SharedFunctionalGroupsSequence = DicomSequence([shared])

        per = []
        for f in frames:
            g = Dataset()
            fc = Dataset()
            fc.FrameAcquisitionDateTime = f.acq_datetime
            fc.StackID = "1"
            fc.InStackPositionNumber = f.k + 1
            fc.TemporalPositionIndex = f.temporal_index
            fc.DimensionIndexValues = list(f.dim_values)
            g.FrameContentSequence = DicomSequence([fc])
            pp = Dataset()
            pp.ImagePositionPatient = _ds_list(st.ipp(f.k))
            g.PlanePositionSequence = DicomSequence([pp])
            echo = Dataset()
            echo.EffectiveEchoTime = float(f.echo_time)
            g.MREchoSequence = DicomSequence([echo])
            ft = Dataset()
            ft.FrameType = list(es.image_type)
            ft.PixelPresentation = "MONOCHROME"
            ft.VolumetricProperties = "VOLUME"
            ft.VolumeBasedCalculationTechnique = "NONE"
            ft.ComplexImageComponent = es.complex_component
            ft.AcquisitionContrast = es.contrast
            g.MRImageFrameTypeSequence = DicomSequence([ft])
            if f.b is not None:
                dif = Dataset()
                b = float(f.b)
                gdir = f.direction
                dif.DiffusionDirectionality = "NONE" if b == 0 else ("DIRECTIONAL" if gdir is not None else "ISOTROPIC")
                dif.DiffusionBValue = b
                if gdir is not None and b > 0:
                    gd = Dataset()
                    gd.DiffusionGradientOrientation = list(gdir)
                    dif.DiffusionGradientDirectionSequence = DicomSequence([gd])
                g.MRDiffusionSequence = DicomSequence([dif])
            pvt = Dataset()
            pvt.RescaleIntercept = f.intercept
            pvt.RescaleSlope = f.slope
            pvt.RescaleType = "US"
            g.PixelValueTransformationSequence = DicomSequence([pvt])
            voi = Dataset()
            voi.WindowCenter, voi.WindowWidth = f.window_center, f.window_width
            g.FrameVOILUTSequence = DicomSequence([voi])
            per.append(g)
        ds.PerFrameFunctionalGroupsSequence = DicomSequence(per)
        apply_drops(ds, sp)
        set_pixels(ds, pixels)
        save_dataset(ds, os.path.join(path, "IM_0001.dcm"))
        return 1


SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"

_DIMENSIONS: dict[str, tuple[int, int, str]] = {
    "stack": (0x00209056, 0x00209111, "Stack ID"),
    "in_stack": (0x00209057, 0x00209111, "In-Stack Position Number"),
    "b": (0x00189087, 0x00189117, "Diffusion b-value"),
    "temporal": (0x00209128, 0x00209111, "Temporal Position Index"),
}


@dataclass
class EnhancedSeries:
    """Series-level values of an Enhanced MR Image Storage file."""

    image_type: Sequence[str]
    acquisition_type: str
    sequence_name: str
    echo_pulse: str                  # SPIN / GRADIENT
    multiple_spin_echo: str          # YES / NO
    echo_planar: str                 # YES / NO
    fat_suppression: str             # FAT / NONE
    contrast: str                    # AcquisitionContrast
    complex_component: str           # MAGNITUDE / PHASE
    tr: float
    flip: float
    etl: int
    dims: Sequence[str] = ()         # beyond stack / in-stack position: "b", "temporal"
    timing_extra: dict[str, Any] = field(default_factory=dict)
    shared_extra: Sequence[tuple[str, Dataset]] = ()   # (sequence keyword, its one item)


@dataclass
class EnhancedFrame:
    """Per-frame values of an Enhanced MR Image Storage file."""

    k: int                           # index in the stack
    acq_datetime: str
    temporal_index: int
    dim_values: Sequence[int]
    echo_time: float
    intercept: str
    slope: str
    window_center: str
    window_width: str
    b: Optional[float] = None        # None: no MRDiffusionSequence
    direction: Optional[Sequence[float]] = None
