"""Study context: what a series' siblings in the same study say about it.

A stage between discovery and features.  A real prostate protocol can store
its DCE as 70 series of one time point each, a 3D spoiled gradient echo with
the same echo and repetition time as the variable-flip-angle T1 maps acquired
just before it, and with no contrast or timing attribute at all.  One such
series alone is indistinguishable from a T1 map; the study is not: the DCE
series share geometry and sequence parameters and differ only in acquisition
time, the T1 maps share them and differ only in flip angle.

:func:`study_contexts` groups the series of each study (patient + study UID)
by an *acquisition signature* -- geometry (slice normal, matrix, pixel
spacing, slice positions) and sequence (ScanningSequence, EchoTime,
RepetitionTime) -- and records what varies inside each group:

``dynamic``      the same flip angle and b-values, only the acquisition time
                 (or, when times were removed, only the series number) varies,
                 at least :data:`MIN_DYNAMIC` series in a regular time chain;
``flip_angle``   only the flip angle varies (variable-flip-angle T1 mapping);
``diffusion``    only the b-value varies (e.g. a DTI b0 volume stored as its
                 own series next to the diffusion-weighted one);
``multi_echo``   only the echo time varies (geometry and TR shared).

A series without b-values of its own that shares geometry, echo and
repetition time with a diffusion series (b > 0) is *diffusion-linked*: ADC,
FA, trace and calculated-b series are derived that way, whatever their names
and ImageType say.  Inside one series, the number of images per slice
position (time points, b-values or echoes of a 4D series) is kept too.

The context is computed from the series that were given.  When only one
series of a study is given, :attr:`SeriesContext.available` is False and the
features say so (the model was trained with and without context).
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

from SeqClassifierLib.records import SeriesKey, SeriesRecord

#: Fewest series of one signature and flip angle that make a dynamic acquisition (times known) ...
MIN_DYNAMIC = 3
#: ... and when every time was removed (ordered by series number only): a variable-flip-angle set of
#: 2-5 series whose flip angles were stripped must not read as a dynamic acquisition.
MIN_DYNAMIC_WITHOUT_TIMES = 6
#: Images per slice position from which a series without b-values is itself a dynamic acquisition (4D).
MIN_4D_REPEATS = 5
#: A gap between consecutive time points longer than this many median steps ends a dynamic chain.
GAP_FACTOR = 3.0
#: Longest median time step (s) of a dynamic acquisition (prostate DCE: a few seconds to ~30 s);
#: repeated anatomical scans and the series of a T1-mapping set are a minute or more apart.
MAX_DYNAMIC_STEP = 45.0


@dataclass(frozen=True)
class SeriesContext:
    """What the study says about one series (see the module docstring)."""

    #: Another series of the same study was given.
    available: bool = False
    #: Series of the study that were given (this one included).
    n_study_series: int = 1
    #: Series sharing this one's geometry and sequence signature (this one included).
    same_signature: int = 1
    #: ``dynamic``, ``flip_angle``, ``diffusion``, ``multi_echo`` or "" (none).
    kind: str = ""
    #: Series in that group (this one included).
    group_size: int = 1
    #: 0-based position in the group (time order for dynamic, flip order for flip_angle).
    rank: int = 0
    #: Median time between dynamic time points, seconds (None when unknown).
    time_step_s: Optional[float] = None
    #: No acquisition/series/content time was found for this series.
    time_missing: bool = False
    #: No b > 0 of its own, but geometry, TE and TR of a diffusion series of the study.
    diffusion_linked: bool = False
    #: Highest b-value of the linked diffusion series (0 when not linked).
    source_b_max: float = 0.0
    #: Images per slice position inside this series (time points, b-values or echoes of a 4D series).
    repeats: int = 1
    #: ``before`` / ``after``: same geometry and sequence as a dynamic group of the study, not one of its
    #: time points, acquired before its first / after its last one (a pre-contrast T1 map or reference,
    #: a static post-contrast scan); "" otherwise.
    dynamic_relation: str = ""

    @property
    def group(self) -> str:
        """The group in words for people, e.g. ``dynamic, 70 time points`` ("" when none)."""
        parts = []
        if self.kind == "dynamic":
            step = f", every {self.time_step_s:.0f} s" if self.time_step_s else ""
            parts.append(f"dynamic, {self.group_size} time points{step}")
        elif self.kind == "flip_angle":
            parts.append(f"flip-angle set, {self.group_size} series")
        elif self.kind == "diffusion":
            parts.append(f"diffusion set, {self.group_size} series")
        elif self.kind == "multi_echo":
            parts.append(f"multi-echo set, {self.group_size} series")
        if self.dynamic_relation:
            parts.append(f"acquired {self.dynamic_relation} a dynamic series of the same geometry and sequence")
        if self.diffusion_linked:
            parts.append(f"derived from a diffusion series (b up to {self.source_b_max:g})")
        if self.repeats > 1:
            parts.append(f"{self.repeats} images per slice position")
        return "; ".join(parts)

    @property
    def note(self) -> str:
        """What a reader should know about the context itself ("" when complete)."""
        if not self.available:
            return "no study context: no other series of this study was given"
        return ""


def _time_seconds(value: Any) -> Optional[float]:
    """Seconds since midnight of a DICOM TM value (``HHMMSS.ffffff`` or ``HH:MM:SS``)."""
    if value is None:
        return None
    text = str(value).strip().replace(":", "")
    m = re.match(r"^(\d{2})(\d{2})?(\d{2})?(\.\d+)?$", text)
    if not m:
        return None
    h, mi, s = int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)
    if h > 23 or mi > 59 or s > 60:
        return None
    return h * 3600 + mi * 60 + s + (float(m.group(4)) if m.group(4) else 0.0)


def series_time(record: SeriesRecord) -> Optional[float]:
    """When a series was acquired (AcquisitionTime, else ContentTime, else SeriesTime), seconds."""
    for key in ("AcquisitionTime", "ContentTime", "SeriesTime"):
        t = _time_seconds(record.header.get(key))
        if t is not None:
            return t
    return None


#: A header number beyond this magnitude is treated as missing (1e308 is finite, but rounding it to a
#: step overflows; no acquisition parameter, spacing or position comes near it).
MAX_MAGNITUDE = 1e9


def _finite(v: Any) -> Optional[float]:
    """``v`` as a float when it is a finite, plausible number, else None (missing)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        f = float(v)
        if math.isfinite(f) and abs(f) <= MAX_MAGNITUDE:
            return f
    return None


def _num(record: SeriesRecord, key: str) -> Optional[float]:
    return _finite(record.header.get(key))


def _round(v: Optional[float], step: float) -> Optional[float]:
    v = _finite(v)
    return None if v is None else round(v / step) * step


def _locations(record: SeriesRecord) -> list[float]:
    return sorted({round(f.location, 1) for f in record.frames if _finite(f.location) is not None})


def repeats_per_location(record: SeriesRecord) -> int:
    """Images per distinct slice position (1 for an ordinary 3D stack)."""
    locs = _locations(record)
    if not locs or not record.frames:
        return 1
    return max(1, int(round(len(record.frames) / len(locs))))


def _geometry_key(record: SeriesRecord) -> Optional[tuple]:
    if record.normal is None:
        return None
    locs = _locations(record)
    ps = record.header.get("PixelSpacing")
    try:
        ps0 = _finite(float(ps[0])) if isinstance(ps, (list, tuple)) and ps else None
    except (TypeError, ValueError):
        ps0 = None
    if not all(_finite(c) is not None for c in record.normal):
        return None
    normal = tuple(round(c, 2) + 0.0 for c in record.normal)
    span = (round(locs[0]), round(locs[-1])) if locs else None
    return (normal, _num(record, "Rows"), _num(record, "Columns"), _round(ps0, 0.05), len(locs), span)


def _sequence_key(record: SeriesRecord, with_te: bool = True) -> tuple:
    ss = record.header.get("ScanningSequence") or []
    ss = tuple(sorted(str(x).upper() for x in ss)) if isinstance(ss, (list, tuple)) else (str(ss).upper(),)
    te = _round(_num(record, "EchoTime"), 0.1) if with_te else None
    return (ss, te, _round(_num(record, "RepetitionTime"), 0.1))


def max_b_value(record: SeriesRecord) -> float:
    """The highest b-value of a series (0 when it has none)."""
    bs = [b for b in record.b_values if _finite(b) is not None]
    return max(bs) if bs else 0.0


def _order_key(record: SeriesRecord, t: Optional[float]) -> tuple:
    return (t if t is not None else math.inf, record.series_number if record.series_number is not None else 0,
            record.key)


def _dynamic_chain(members: list[SeriesRecord], times: dict[SeriesKey, Optional[float]]) -> tuple[list[SeriesRecord], Optional[float]]:
    """The longest regular run in time of ``members`` (same signature and flip), and its median step."""
    ordered = sorted(members, key=lambda r: _order_key(r, times[r.key]))
    ts = [times[r.key] for r in ordered]
    if any(t is None for t in ts):
        return ordered, None  # times removed: repeated identical acquisitions, ordered by series number
    steps = [b - a for a, b in zip(ts, ts[1:])]
    positive = [s for s in steps if s > 0]
    if not positive:
        return ordered, None
    median = statistics.median(positive)
    limit = GAP_FACTOR * median + 5.0
    best: list[SeriesRecord] = []
    run = [ordered[0]]
    for rec, step in zip(ordered[1:], steps):
        if step <= limit:
            run.append(rec)
        else:
            best = run if len(run) > len(best) else best
            run = [rec]
    best = run if len(run) > len(best) else best
    chain_ts = [times[r.key] for r in best]
    chain_steps = [b - a for a, b in zip(chain_ts, chain_ts[1:]) if b - a > 0]
    return best, (statistics.median(chain_steps) if chain_steps else None)


def _study_key(record: SeriesRecord) -> tuple[str, str]:
    return (record.patient_id or "", record.study_uid or "")


def study_contexts(records: Iterable[SeriesRecord]) -> dict[SeriesKey, SeriesContext]:
    """The :class:`SeriesContext` of every record, keyed by its :class:`~SeqClassifierLib.records.SeriesKey`
    (a SeriesInstanceUID repeated under another patient or study never shares or takes its context)."""
    records = list(records)
    by_study: dict[tuple[str, str], list[SeriesRecord]] = defaultdict(list)
    for r in records:
        by_study[_study_key(r)].append(r)
    out: dict[SeriesKey, SeriesContext] = {}
    for study in by_study.values():
        out.update(_contexts_of_study(study))
    return out


def _contexts_of_study(study: Sequence[SeriesRecord]) -> dict[SeriesKey, SeriesContext]:
    n = len(study)
    times = {r.key: series_time(r) for r in study}
    fields: dict[SeriesKey, dict[str, Any]] = {
        r.key: dict(available=n > 1, n_study_series=n, time_missing=times[r.key] is None,
                           repeats=repeats_per_location(r)) for r in study}

    signatures: dict[tuple, list[SeriesRecord]] = defaultdict(list)
    for r in study:
        geo = _geometry_key(r)
        if geo is not None:
            signatures[(geo, _sequence_key(r))].append(r)
    for (geo, seq), members in signatures.items():
        for r in members:
            fields[r.key]["same_signature"] = len(members)
        if len(members) < 2:
            continue
        in_group: set[SeriesKey] = set()
        chains: list[list[SeriesRecord]] = []
        # dynamic: same flip and b-values, a regular chain in time
        by_flip: dict[tuple, list[SeriesRecord]] = defaultdict(list)
        for r in members:
            by_flip[(_round(_num(r, "FlipAngle"), 0.5), max_b_value(r))].append(r)
        for sub in by_flip.values():
            if len(sub) < MIN_DYNAMIC:
                continue
            chain, step = _dynamic_chain(sub, times)
            timed = all(times[r.key] is not None for r in chain)
            if len(chain) < (MIN_DYNAMIC if timed else MIN_DYNAMIC_WITHOUT_TIMES) or \
                    (step is not None and step > MAX_DYNAMIC_STEP):
                continue
            for rank, r in enumerate(chain):
                fields[r.key].update(kind="dynamic", group_size=len(chain), rank=rank, time_step_s=step)
                in_group.add(r.key)
            chains.append(chain)
        # a 4D dynamic series (many images per position, no b-values) anchors its signature too
        four_d = [r for r in members if r.key not in in_group and max_b_value(r) == 0
                  and repeats_per_location(r) >= MIN_4D_REPEATS]
        chains += [[r] for r in four_d]
        anchors = {r.key for chain in chains for r in chain}
        # pre- and post-dynamic series of the same signature (whatever their flip angle)
        for chain in chains:
            first, last = chain[0], chain[-1]
            for r in members:
                if r.key in anchors:
                    continue
                before = _order_key(r, times[r.key]) < _order_key(first, times[first.key])
                after = _order_key(last, times[last.key]) < _order_key(r, times[r.key])
                if before or after:
                    fields[r.key]["dynamic_relation"] = "before" if before else "after"
        rest = [r for r in members if r.key not in in_group and r not in four_d]
        # flip-angle set: one series per flip angle, the rest equal
        flips = {_round(_num(r, "FlipAngle"), 0.5) for r in rest} - {None}
        bmaxes = {max_b_value(r) for r in rest}
        if len(flips) >= 2 and len(flips) == len(rest) and len(bmaxes) == 1:
            ordered = sorted(rest, key=lambda r: (_num(r, "FlipAngle") or 0.0, r.key))
            for rank, r in enumerate(ordered):
                fields[r.key].update(kind="flip_angle", group_size=len(ordered), rank=rank)
        elif len(bmaxes) >= 2 and len(flips) <= 1:
            ordered = sorted(rest, key=lambda r: (max_b_value(r), r.key))
            for rank, r in enumerate(ordered):
                fields[r.key].update(kind="diffusion", group_size=len(ordered), rank=rank)

    # multi-echo: geometry, sequence and TR shared, only TE varies
    by_tr: dict[tuple, list[SeriesRecord]] = defaultdict(list)
    for r in study:
        geo = _geometry_key(r)
        if geo is not None and not fields[r.key].get("kind"):
            by_tr[(geo, _sequence_key(r, with_te=False), _round(_num(r, "FlipAngle"), 0.5))].append(r)
    for members in by_tr.values():
        tes = {_round(_num(r, "EchoTime"), 0.1) for r in members} - {None}
        if len(members) >= 2 and len(tes) == len(members):
            ordered = sorted(members, key=lambda r: (_num(r, "EchoTime") or 0.0, r.key))
            for rank, r in enumerate(ordered):
                fields[r.key].update(kind="multi_echo", group_size=len(ordered), rank=rank)

    # diffusion-linked: no b > 0 of its own, geometry + TE + TR of a diffusion series
    diffusion_by_sig: dict[tuple, float] = {}
    for r in study:
        geo = _geometry_key(r)
        if geo is not None and max_b_value(r) > 0:
            key = (geo, _sequence_key(r))
            diffusion_by_sig[key] = max(diffusion_by_sig.get(key, 0.0), max_b_value(r))
    for r in study:
        geo = _geometry_key(r)
        if geo is None or max_b_value(r) > 0:
            continue
        source = diffusion_by_sig.get((geo, _sequence_key(r)))
        if source:
            fields[r.key].update(diffusion_linked=True, source_b_max=source)
    return {key: SeriesContext(**f) for key, f in fields.items()}
