"""The protocol of one prostate mpMRI study: localizer, T2w, DWI/ADC, VFA T1 maps, PD reference, DCE."""

from __future__ import annotations

import dataclasses
import datetime as _dt

import numpy as np

from SeqClassifierLib.labels import Plane, SequenceLabel
from SeqClassifierLib.synth.base import VENDORS, _Size, _pick, _rint, _study_rng, _uid
from SeqClassifierLib.synth.geometry import _Stack, _plane_dirs
from SeqClassifierLib.synth.plan import _SeriesPlan, _StudyPlan
from SeqClassifierLib.synth.realism import (RATES, dce_name, draw_series_drops, post_name, t1_gre_name,
                                            vocabulary_name)
from SeqClassifierLib.synth.vendors import _CONTRAST_AGENTS, _VENDOR_INFO, _study_field_strength

def _plan_study(seed: int, index: int, vendor: str, occurrence: int, spec: _Size,
                phantom_center: np.ndarray, extras: bool = False, realism: bool = False) -> _StudyPlan:
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
    # Realistic header gaps draw from their own stream: without realism nothing else changes.
    rr = _study_rng(seed, index, 20)
    if realism:
        opts["dce_4d"] = bool(rr.random() >= RATES["dce_per_timepoint"])
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
    plain_t1 = t1_gre_name(rr, vendor) if realism and rr.random() < 0.3 else None
    if plain_t1:   # VFA maps and DCE named alike: only the flip angle tells them apart
        vfa_name = plain_t1
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
    if realism and not opts["dce_4d"]:   # real per-time-point DCE: many series
        n_t = _rint(rr, 8, 14) if spec.dce_times[1] > 4 else _rint(rr, 4, 6)
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
    if realism:
        dce_d = plain_t1 or dce_name(rr, vendor)
        if rr.random() < RATES["dce_flip_as_vfa"]:
            dce_prm["flip"] = float(max(flips))
    if opts["dce_4d"]:
        S.append(_SeriesPlan("dce", SequenceLabel.DCE, Plane.AXIAL, dce_d, dce_d, "dce_4d",
                             f"dynamic contrast-enhanced, {n_t} time points in one series", [dce_stack],
                             dict(dce_prm, tps=list(range(n_t)))))
    else:
        suffix = _pick(rng, ["same", "num", "ph"])
        for k in range(n_t):
            d = {"same": dce_d, "num": f"{dce_d}_{k + 1}", "ph": f"{dce_d} Ph{k + 1}"}[suffix]
            if "{tt}" in dce_d:
                d = dce_d.replace("{tt}", f"{float(times[k]) + 0.5 * dt_s:.1f}")
            S.append(_SeriesPlan("dce", SequenceLabel.DCE, Plane.AXIAL, d, dce_d, "dce_per_timepoint",
                                 f"dynamic contrast-enhanced, time point {k + 1}/{n_t}", [dce_stack],
                                 dict(dce_prm, tps=[k])))

    if realism and rr.random() < RATES["t1_post"]:   # one static post-contrast T1: OTHER
        d = post_name(rr, vendor)
        late = float(times[-1]) + float(rr.uniform(60, 240))
        S.append(_SeriesPlan("t1post", SequenceLabel.OTHER, Plane.AXIAL, d, d, "t1_post",
                             "single post-contrast T1 (OTHER: not dynamic)", [dataclasses.replace(dce_stack)],
                             dict(dce_prm, times=np.array([late]), tps=[0], flip=float(rr.choice([10.0, 12.0, 15.0])),
                                  agent=agent if rr.random() < RATES["t1_post_agent"] else None)))
        S[-1].params["dce_times"] = times

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
                    "pd": 30, "dce": 0, "t1post": 60}[sp.kind]
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
        sp.family = sp.family or sp.variant
        if not sp.misleading:
            continue
        generic = ["", f"series {sp.series_number}", "AX", "MR", "Series", "new series"]
        wrong = [n for lab, ns in names_by_label.items() if lab != sp.label for n in ns]
        choice = _pick(rng, generic) if rng.random() < 0.5 else _pick(rng, wrong)
        sp.note = f"{sp.note}; misleading description (true variant {sp.variant})"
        sp.description = choice
        sp.protocol = choice
        sp.variant = "misleading_description"
    if realism:
        _realistic_headers(rr, S, vendor)
    plan.series = S
    return plan


def _realistic_headers(rr: np.random.Generator, S: list[_SeriesPlan], vendor: str) -> None:
    """Study- and series-level header gaps and real names (labels unchanged)."""
    study: set[str] = set()
    if rr.random() < RATES["private_strip"]:
        study.add("private")
    dce: set[str] = set()
    if rr.random() < RATES["dce_no_contrast_timing"]:
        dce |= {"contrast", "timing"}
        if rr.random() < RATES["dce_acqnum_const"]:
            dce.add("acqnum_const")
    elif rr.random() < RATES["dce_agent_drop"]:
        dce.add("contrast")
    diff_std = rr.random() < RATES["diff_std_drop"]
    calc_it = vendor == "SIEMENS" and rr.random() < RATES["calc_imagetype_calc"]
    for sp in S:
        sp.params = dict(sp.params)       # DWI, calculated b and ADC shared one dict
        drops: set[str] = set()
        if sp.kind == "dce":
            drops |= dce
            sp.family = "dce_per_timepoint" if len(sp.params["tps"]) == 1 else "dce_4d"
            if dce & {"timing"}:
                sp.family += "_no_timing"
        if sp.kind in ("dwi", "dwi3scan", "calc", "mosaic") and diff_std:
            drops.add("diff_std")
        if sp.kind == "adc" and rr.random() < RATES["adc_imagetype_plain"]:
            sp.params["set"] = {"ImageType": list(_pick(rr, [["DERIVED", "PRIMARY", "DIFFUSION"],
                                                              ["DERIVED", "SECONDARY"], ["DERIVED", "PRIMARY"]]))}
        if sp.kind == "calc" and calc_it:
            sp.params["set"] = {"ImageType": ["DERIVED", "PRIMARY", "DIFFUSION", "CALC_BVALUE", "TRACEW", "DIS2D"]}
        sp.params["drops"] = drops
        if (not sp.misleading and sp.kind in ("t2", "dwi", "calc", "adc")
                and rr.random() < RATES["name_vocabulary"]):
            name = vocabulary_name(rr, vendor, sp.label)
            if name:
                sp.description = sp.protocol = name.replace("{tt}", "30.0")
                sp.note += "; name from the IDC vocabulary"
        if not sp.misleading:
            draw_series_drops(rr, sp, study)
        else:
            sp.params["drops"] |= study
