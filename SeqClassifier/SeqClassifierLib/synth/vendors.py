"""Vendor vocabularies of the generator: scanners, software, study names, neuro series names and header conventions."""

from __future__ import annotations

from typing import Any

from SeqClassifierLib.synth.base import _study_rng

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


def _study_field_strength(seed: int, study_index: int, vendor: str) -> tuple[str, float]:
    rng = _study_rng(seed, study_index, 5)
    models = _VENDOR_INFO[vendor]["models"]
    name, fs = models[int(rng.integers(len(models)))]
    return name, fs


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
