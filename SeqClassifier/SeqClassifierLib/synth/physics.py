"""Signal equations (spin echo, spoiled gradient echo, bSSFP), contrast kinetics (Parker AIF, extended Tofts) and noise."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from SeqClassifierLib.synth.phantom import Tissue, _N_TISSUES, _Props

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


def _rician(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    n1 = rng.standard_normal(img.shape, dtype=np.float32)
    n2 = rng.standard_normal(img.shape, dtype=np.float32)
    return np.sqrt((img + sigma * n1) ** 2 + (sigma * n2) ** 2)


def _ref_level(img: np.ndarray) -> float:
    v = img[img > 0.05 * float(img.max())] if img.size else img
    return float(np.percentile(v, 75)) if v.size else 1.0
