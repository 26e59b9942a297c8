"""Rendering and writing of prostate series (classic files, Siemens mosaic, Philips enhanced multi-frame)."""

from __future__ import annotations

import math
import os
import re
from typing import Any, Optional

import numpy as np
from pydicom.dataset import Dataset

from SeqClassifierLib.dicom import tags as T
from SeqClassifierLib.dicom.vendors import b_value_tag
from SeqClassifierLib.labels import Plane
from SeqClassifierLib.synth.base import _study_rng
from SeqClassifierLib.synth.physics import _bssfp, _dce_concentration, _ref_level, _rician, _se, _spgr
from SeqClassifierLib.synth.plan import _SeriesPlan
from SeqClassifierLib.synth.writer import EnhancedFrame, EnhancedSeries, _WriterBase, _ds_list, _fmt, _tm, _window


class _ProstateWriter(_WriterBase):
    """Renders and writes the series of one prostate study plan."""

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
        elif sp.kind in ("dce", "t1post"):
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
            e = b_value_tag("SIEMENS")
            blk = ds.private_block(e.group, e.creator, create=True)
            if b is not None:
                vr = self.plan.opts["siemens_b_vr"]  # real Siemens exports carry IS or DS here
                blk.add_new(e.offset, vr, e.encode(b) if vr == e.vr else _fmt(float(b)))
                blk.add_new(0x0D, "CS", "ISOTROPIC" if b > 0 else "NONE")
            blk.add_new(0x0B, "DS", _fmt(round(float(sp.params["tr"]) * 45.3, 1)))
            b51 = ds.private_block(0x0051, "SIEMENS MR HEADER", create=True)
            st = sp.stacks[0]
            b51.add_new(0x0B, "LO", f"{st.rows}*{st.cols}s")
        elif v == "GE":
            g19 = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
            g19.add_new(0x9C, "LO", str(ds.get("SequenceName", "")))
            if b is not None:
                e = b_value_tag("GE")
                ds.private_block(e.group, e.creator, create=True).add_new(e.offset, e.vr, e.encode(b))
        else:
            e = b_value_tag("PHILIPS")
            blk = ds.private_block(e.group, e.creator, create=True)
            if b is not None:
                blk.add_new(e.offset, e.vr, e.encode(b))
                blk.add_new(0x04, "CS", "I" if b > 0 else "0")
            blk.add_new(0x0A, "IS", str(slice_no))


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
        elif sp.kind == "t1post" and sp.params.get("agent"):
            ds.ContrastBolusAgent = sp.params["agent"]
            ds.ContrastBolusRoute = "IV"
        if pl.vendor == "PHILIPS" or sp.kind == "adc":
            ds.RescaleIntercept = "0"
            ds.RescaleSlope = _fmt(slope)
            ds.RescaleType = "normalized" if slope != 1.0 else "US"
        ds.WindowCenter = _fmt(wc * slope)
        ds.WindowWidth = _fmt(ww * slope)

        def per_frame(ds: Dataset, i: int, f: dict[str, Any]) -> None:
            b = f.get("b")
            if pl.vendor == "SIEMENS" and sp.kind == "dwi":
                ds.SequenceName = f"*ep_b{int(b)}t"
            g = f.get("direction")
            if sp.kind == "dwi3scan":
                ds.SequenceName = f"*ep_b{int(b)}#{f['dir_index']}" if g is not None else f"*ep_b{int(b)}"
            # ADC maps keep the highest b-value in the private tag on Siemens and GE.
            b_for_tag = None if (f.get("adc") and pl.vendor == "PHILIPS") else b
            acq_s = sp.params["dyn_start"] + f["time"] if sp.kind == "dce" else sp.start_s
            ds.AcquisitionTime = _tm(pl.study_time_s + acq_s)
            ds.ContentTime = _tm(pl.study_time_s + acq_s + 30)
            ds.AcquisitionNumber = str(f["tp"] + 1 if "tp" in f else 1)
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

        return self.write_classic(ds, sp, frames, stored, path, per_frame)

    def _write_mosaic(self, sp: _SeriesPlan, frames, path: str) -> int:
        """Siemens raw diffusion directions: one mosaic file (all slices tiled) per direction."""
        pl = self.plan
        st = sp.stacks[0]
        n = st.n_slices
        grid = int(math.ceil(math.sqrt(n)))
        gain = self._gain(sp, frames)
        stored = []
        for f in frames:
            vol = self._to_stored(sp, f["img"], gain, 1.0)
            mos = np.zeros((grid * st.rows, grid * st.cols), dtype=vol.dtype)
            for k in range(n):
                r, c = divmod(k, grid)
                mos[r * st.rows:(r + 1) * st.rows, c * st.cols:(c + 1) * st.cols] = vol[k]
            stored.append(mos)
        ds = self._base(sp, T.MR_IMAGE_STORAGE)
        self._mr_params(ds, sp, frames[0]["b"])

        def per_frame(ds: Dataset, i: int, f: dict[str, Any]) -> None:
            b = f["b"]
            ds.SequenceName = f"*ep_b{int(b)}#{f['dir_index']}" if b > 0 else f"*ep_b{int(b)}"
            ds.AcquisitionTime = _tm(pl.study_time_s + sp.start_s + 4.0 * i)
            ds.ContentTime = ds.AcquisitionTime
            ds.AcquisitionNumber = str(i)
            # Siemens convention: the position of the whole mosaic as one big image
            # centred on the first slice's centre.
            ipp1 = st.ipp(0)
            big_r, big_c = grid * st.rows, grid * st.cols
            ipp = (ipp1 - st.row_dir * st.ps_col * (big_c - st.cols) / 2.0
                   - st.col_dir * st.ps_row * (big_r - st.rows) / 2.0)
            ds.ImagePositionPatient = _ds_list(ipp)
            ds.SliceLocation = _fmt(round(float(ipp1 @ st.normal), 6))
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
            wc, ww = _window(stored[i - 1])
            ds.WindowCenter, ds.WindowWidth = _fmt(wc), _fmt(ww)

        return self.write_classic(ds, sp, frames, stored, path, per_frame)

    def _write_enhanced(self, sp: _SeriesPlan, frames, path: str) -> int:
        """One Enhanced MR Image Storage file holding all frames (Philips T2w or DWI)."""
        pl = self.plan
        prm = sp.params
        st = sp.stacks[0]
        gain = self._gain(sp, frames)
        slope = float(np.round(pl.opts["philips_slope"] * 1.17, 6))
        stored = np.stack([self._to_stored(sp, f["img"], gain, slope) for f in frames])
        ds = self._base(sp, T.ENHANCED_MR_IMAGE_STORAGE)
        is_dwi = sp.kind == "dwi"
        ds.AcquisitionDateTime = pl.study_date + _tm(pl.study_time_s + sp.start_s)
        ds.ContentTime = _tm(pl.study_time_s + sp.start_s + 60)
        ds.SpacingBetweenSlices = _fmt(st.spacing)
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
        if prm.get("ti"):
            mod.InversionTimes = [float(prm["ti"])]
        fov = Dataset()
        fov.InPlanePhaseEncodingDirection = "COLUMN"
        fov.MRAcquisitionFrequencyEncodingSteps = st.cols
        fov.MRAcquisitionPhaseEncodingStepsInPlane = st.rows
        fov.PercentSampling = "100"
        fov.PercentPhaseFieldOfView = "100"
        av = Dataset()
        av.NumberOfAverages = str(prm.get("nex", 1))
        es = EnhancedSeries(
            image_type=["ORIGINAL", "PRIMARY", "DIFFUSION" if is_dwi else "T2", "NONE"],
            acquisition_type="2D", sequence_name="DwiSE" if is_dwi else "TSE", echo_pulse="SPIN",
            multiple_spin_echo="NO" if is_dwi else "YES", echo_planar="YES" if is_dwi else "NO",
            fat_suppression="FAT" if is_dwi and not prm.get("ti") else "NONE",
            contrast="DIFFUSION" if is_dwi else "T2", complex_component="MAGNITUDE",
            tr=prm["tr"], flip=prm["flip"], etl=prm.get("etl", 1), dims=("b",) if is_dwi else (),
            timing_extra=dict(RFEchoTrainLength=1 if is_dwi else int(prm.get("etl", 1)),
                              GradientEchoTrainLength=int(prm.get("etl", 1)) if is_dwi else 0),
            shared_extra=[("MRModifierSequence", mod), ("MRFOVGeometrySequence", fov),
                          ("MRAveragesSequence", av)],
        )
        b_index = {b: i + 1 for i, b in enumerate(prm.get("bvalues", ()))}
        acq = pl.study_date + _tm(pl.study_time_s + sp.start_s)
        efs = []
        for i, f in enumerate(frames):
            wc, ww = _window(stored[i])
            efs.append(EnhancedFrame(
                k=f["k"], acq_datetime=acq, temporal_index=1,
                dim_values=[1, f["k"] + 1] + ([b_index[f["b"]]] if is_dwi else []), echo_time=prm["te"],
                intercept="0", slope=_fmt(slope), window_center=_fmt(wc * slope), window_width=_fmt(ww * slope),
                b=f["b"] if is_dwi else None))
        return self.write_enhanced(ds, sp, es, efs, stored, path)
