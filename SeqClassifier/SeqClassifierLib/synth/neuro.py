"""Neuro studies: protocol planning and the rendering and writing of their series."""

from __future__ import annotations

import datetime as _dt
import os
import re
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from SeqClassifierLib.dicom import tags as T
from SeqClassifierLib.dicom.vendors import b_value_tag
from SeqClassifierLib.labels import Plane, SequenceLabel
from SeqClassifierLib.synth.base import _NEURO_SIZES, _pick, _rint, _study_rng, _uid
from SeqClassifierLib.synth.geometry import _Stack, _plane_dirs
from SeqClassifierLib.synth.physics import _ref_level, _rician, _se, _spgr
from SeqClassifierLib.synth.plan import _SeriesPlan, _StudyPlan
from SeqClassifierLib.synth.realism import RATES, draw_series_drops
from SeqClassifierLib.synth.vendors import _NEURO_NAMES, _NEURO_STUDY, _VENDOR_INFO, _neuro_hdr, _study_field_strength
from SeqClassifierLib.synth.writer import EnhancedFrame, EnhancedSeries, _WriterBase, _fmt, _tm, _window

def _plan_neuro_study(seed: int, index: int, vendor: str, occurrence: int, size: str,
                      realism: bool = False) -> _StudyPlan:
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
    rr = _study_rng(seed, index, 20)   # realism: own stream
    if realism:
        ge = vendor == "GE"
        for sp in S:
            if sp.kind == "fmri":        # GE writes b=0 in its private b-value tag of every EPI
                sp.params["ge_b0"] = ge
                sp.family = "fmri_epi"
        if rr.random() < RATES["dti_b0_series"]:
            add("dti", L.DWI, Plane.AXIAL, dti_name + _pick(rr, ["_b0", "_B0", " b0", "_b0_PA", "_nodif"]),
                "DTI b0 volume(s) stored as a series of their own (DWI: acquired b-value images)", dti,
                **dict(dwi_prm, model="se_epi", b0_volumes=1 if rr.random() < 0.6 else 2))
            S[-1].kind, S[-1].variant = "dtib0", "dti_b0"
            if vendor.startswith("SIEMENS"):
                S[-1].params["hdr"] = dict(S[-1].params["hdr"], seq=("*" if vendor == "SIEMENS" else "") + "ep_b0")
        if rr.random() < RATES["se_fieldmap"]:
            fmt = _pick(rr, ["SpinEchoFieldMap_{}", "se_epi_{}", "fmap_{}", "ep2d_se_{}", "Ax SE EPI B0 {}",
                             "blip_{}", "topup_{}", "EPI_PE_{}"])
            hdr = dict(_neuro_hdr(vendor, "fmri"), ss=["EP", "SE"] if ge else "EP",
                       seq={"GE": "epi2", "PHILIPS": "SEEPI"}.get(vendor, "epse2d1_86"))
            for pe in ("AP", "PA"):
                add("fmri", O, Plane.AXIAL, fmt.format(pe), f"spin-echo EPI field map, phase encoding {pe} (OTHER)",
                    fst, tr=float(rr.uniform(6000, 9000)), te=float(rr.uniform(60, 80)), flip=90.0, model="se_epi",
                    b0_volumes=1, ge_b0=ge)
                S[-1].kind, S[-1].variant = "sefmap", "se_epi_fieldmap"
                S[-1].params["hdr"] = hdr
        if rr.random() < RATES["fmri_multiband"]:
            add("fmri", O, Plane.AXIAL, _pick(rr, ["rfMRI_REST_AP", "cmrr_mbep2d_bold", "fMRI_MB4", "BOLD_MB_rest",
                                                   "mb_fmri", "Ax rsfMRI HyperBand"]),
                "multiband fMRI BOLD (OTHER)", fst, tr=800.0, te=30.0 if fs > 2 else 45.0, flip=52.0,
                volumes=3 * ns["fmri_volumes"], model="bold", ge_b0=ge)
            S[-1].variant = S[-1].family = "fmri_multiband"
        if rr.random() < RATES["sc_colour_map"]:
            src = _pick(rr, ["fa", "cbf"])
            name = _pick(rr, ["ColFA", "FA_color", "DTI_ColFA", "RGB FA"] if src == "fa"
                         else ["CBF_color", "Perfusion_Weighted colour", "rCBF RGB", "ASL CBF map"])
            add(src, O, Plane.AXIAL, name, f"RGB colour {src.upper()} map as Secondary Capture (OTHER)",
                dti if src == "fa" else asl, tr=dwi_prm["tr"], te=dwi_prm["te"], flip=90.0, model="sc", source=src,
                sc_modality="MR" if rr.random() < 0.6 else "OT", sc_geometry=bool(rr.random() < 0.3))
            S[-1].kind, S[-1].variant = "sc", "sc_colour_map"
    for sp in S:
        sp.enhanced = (bool(opts["enh_all"] and sp.kind not in ("loc", "sc"))
                       or (sp.kind == "dti" and opts["enh_dti"]))
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
        sp.family = sp.family or sp.variant
        if sp.misleading:
            generic = ["", f"series {sp.series_number}", "MR", "Series"]
            wrong = [n for lab, ns_ in by_label.items() if lab != sp.label for n in ns_]
            choice = _pick(rng, generic) if rng.random() < 0.5 else _pick(rng, wrong)
            sp.note = f"{sp.note}; misleading description (true variant {sp.variant})"
            sp.description = sp.protocol = choice
            sp.variant = "misleading_description"
    if realism:
        study = {"private"} if rr.random() < RATES["private_strip"] else set()
        diff_std = rr.random() < RATES["diff_std_drop"]
        for sp in S:
            sp.params = dict(sp.params)
            drops: set[str] = set()
            if diff_std and sp.kind in ("dwi", "dti", "dtib0"):
                drops.add("diff_std")
            if sp.kind == "adc" and rr.random() < RATES["adc_imagetype_plain"]:
                sp.params["set"] = {"ImageType": ["DERIVED", "PRIMARY", "DIFFUSION"] if rr.random() < 0.5
                                    else ["DERIVED", "SECONDARY"]}
            sp.params["drops"] = drops
            if sp.misleading:
                sp.params["drops"] |= study
            else:
                draw_series_drops(rr, sp, study)
    plan.series = S
    return plan


class _NeuroWriter(_WriterBase):
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
        if model == "se_epi":     # b=0 spin-echo EPI: DTI b0 series or field-map reference
            sigma = _ref_level(smp.sample(s0)) / prm["snr"]
            frames = []
            for v in range(prm.get("b0_volumes", 1)):
                meta = dict(tp=v, b=0) if sp.kind == "dtib0" else dict(tp=v)
                frames += self._frames_of(_rician(smp.sample(s0), sigma, rng), st, **meta)
            return frames
        if model == "sc":         # colour map of FA (from the DTI) or CBF, values 0..1
            if prm["source"] == "fa" and "dti" in self.ctx:
                d = self.ctx["dti"]
                lam = np.clip(d["lam"], 0, 4e-3)
                md = lam.mean(axis=0)
                x = np.sqrt(1.5 * ((lam - md) ** 2).sum(axis=0) / np.maximum((lam ** 2).sum(axis=0), 1e-12))
                x = np.where(d["mask"], np.clip(x * 1.6, 0, 1), 0.0)
            else:
                x = np.clip(smp.sample(p.cbf) / 90.0, 0, 1)
            return self._frames_of(x, st, derived=True)
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
        if sp.kind == "sc":
            return self.write_secondary_capture(sp, frames, path, sp.params["sc_modality"], sp.params["sc_geometry"])
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
        if v in ("SIEMENS", "GE", "PHILIPS"):  # the b-value in the vendor's private tag (dicom.vendors)
            e = b_value_tag(v)
            blk = ds.private_block(e.group, e.creator, create=True)
            blk.add_new(e.offset, e.vr, e.encode(b))
        if v == "SIEMENS":
            blk.add_new(0x0D, "CS", "NONE" if b == 0 else ("DIRECTIONAL" if g is not None else "ISOTROPIC"))
            if g is not None and b > 0:
                blk.add_new(0x0E, "FD", list(g))
            return
        if v == "GE":
            return
        if v == "PHILIPS":
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

        def per_frame(ds: Dataset, i: int, f: dict[str, Any]) -> None:
            tp = f.get("tp", 0)
            t_acq = sp.start_s + tp * float(sp.params["tr"]) / 1000.0
            ds.AcquisitionTime = _tm(pl.study_time_s + t_acq)
            ds.ContentTime = _tm(pl.study_time_s + t_acq + 20)
            ds.AcquisitionNumber = str(tp + 1)
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
            elif sp.params.get("ge_b0") and pl.vendor == "GE":   # GE: b=0 in the private tag of any EPI
                self._b_tags(ds, 0.0, None)
            if sp.kind == "dti" and pl.vendor == "SIEMENS":
                ds.SequenceName = f"*ep_b{int(f['b'])}" + (f"#{f['tp']}" if f["b"] else "")
            if pl.vendor == "GE":
                g19 = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
                g19.add_new(0x9C, "LO", str(ds.get("SequenceName", "")))

        return self.write_classic(ds, sp, frames, stored, path, per_frame)

    def _write_enh(self, sp, frames, stored, path) -> int:
        pl = self.plan
        prm = sp.params
        ds = self._base(sp, T.ENHANCED_MR_IMAGE_STORAGE)
        h = prm["hdr"]
        ds.AcquisitionDateTime = pl.study_date + _tm(pl.study_time_s + sp.start_s)
        ds.ContentTime = _tm(pl.study_time_s + sp.start_s + 30)
        if sp.kind == "fmri":
            ds.NumberOfTemporalPositions = str(prm["volumes"])
        has_b = any("b" in f for f in frames)
        has_t = (any("tp" in f for f in frames) and sp.kind not in ("dti",)) or sp.kind == "dti"
        shared_extra = []
        if prm.get("ti"):
            mod = Dataset()
            mod.InversionRecovery = "YES"
            mod.InversionTimes = [float(prm["ti"])]
            shared_extra.append(("MRModifierSequence", mod))
        es = EnhancedSeries(
            image_type=h["it"][:4] if len(h["it"]) >= 4 else h["it"] + ["NONE"] * (4 - len(h["it"])),
            acquisition_type=h["acq"], sequence_name=h["seq"],
            echo_pulse="GRADIENT" if sp.kind in ("fmri", "swi", "t1", "fmap", "loc") else "SPIN",
            multiple_spin_echo="YES" if sp.kind in ("t2", "flair") else "NO",
            echo_planar="YES" if sp.kind in ("dwi", "dti", "adc", "fa", "fmri", "asl", "cbf", "dtib0",
                                             "sefmap") else "NO",
            fat_suppression="FAT" if sp.kind in ("dwi", "dti", "dtib0") else "NONE",
            contrast={"dwi": "DIFFUSION", "dti": "DIFFUSION", "dtib0": "DIFFUSION", "adc": "DIFFUSION", "fa": "DIFFUSION",
                      "t2": "T2", "flair": "FLUID_ATTENUATED", "t1": "T1", "fmri": "T2_STAR",
                      "swi": "T2_STAR"}.get(sp.kind, "UNKNOWN"),
            complex_component="PHASE" if prm.get("phase") else "MAGNITUDE",
            tr=prm["tr"], flip=prm["flip"], etl=prm.get("etl", 1),
            dims=(("b",) if has_b else ()) + (("temporal",) if has_t else ()), shared_extra=shared_extra)
        slope = float(pl.opts["philips_slope"]) if pl.vendor == "PHILIPS" and not any(
            f.get("derived") for f in frames) else 1.0
        b_index: dict[float, int] = {}
        efs = []
        for i, f in enumerate(frames):
            tp = f.get("tp", 0)
            div = [1, f["k"] + 1]
            if has_b:
                div.append(b_index.setdefault(float(f.get("b", 0)), len(b_index) + 1))
            if has_t:
                div.append(tp + 1)
            wc, ww = _window(stored[i])
            efs.append(EnhancedFrame(
                k=f["k"], acq_datetime=pl.study_date + _tm(pl.study_time_s + sp.start_s + tp * prm["tr"] / 1000.0),
                temporal_index=tp + 1, dim_values=div, echo_time=f.get("te", prm["te"]),
                intercept="-4096" if f.get("phase") else "0", slope="2" if f.get("phase") else _fmt(slope),
                window_center=_fmt(wc), window_width=_fmt(ww),
                b=f["b"] if "b" in f else None, direction=f.get("direction")))
        arr = np.stack(stored)
        if slope != 1.0:
            arr = np.clip(np.rint(arr / slope), 0, 4095).astype(arr.dtype)
        return self.write_enhanced(ds, sp, es, efs, arr, path)
