"""Decoder of the Siemens protocol text (MrPhoenixProtocol, "ASCCONV") in a CSA header.

Siemens stores the whole acquisition protocol as ASCCONV text inside the CSA
series header (0029,1020).  Only the diffusion weightings are read here: an
anonymised diffusion series stripped of its per-image b-value tags still has
them in its protocol.  When to use this (creator check, which series) is the
vendor rule in :mod:`.vendors`.
"""

from __future__ import annotations

import re

from SeqClassifierLib.dicom.values import _valid_b

#: Lines of the Siemens protocol ("ASCCONV" text of MrPhoenixProtocol) that give the
#: diffusion weightings; the protocol leaves out entries whose value is 0.
_PHOENIX_N_WEIGHTINGS = re.compile(rb"^sDiffusion\.lDiffWeightings\s*=\s*(\d+)", re.M)
_PHOENIX_B_VALUE = re.compile(rb"^sDiffusion\.alBValue\[(\d+)\]\s*=\s*(\d+(?:\.\d*)?)", re.M)

#: More diffusion weightings than this in one protocol is a damaged text.
MAX_WEIGHTINGS = 64


def phoenix_b_values(csa_series_header: bytes) -> list[float]:
    """b-values of the diffusion weightings in a Siemens CSA series header (0029,1020)
    (its MrPhoenixProtocol "ASCCONV" text), sorted; [] when it describes none."""
    start = csa_series_header.find(b"### ASCCONV BEGIN")
    if start < 0:
        return []
    end = csa_series_header.find(b"### ASCCONV END", start)
    text = csa_series_header[start:end if end > 0 else None]
    m = _PHOENIX_N_WEIGHTINGS.search(text)
    if m is None:
        return []
    n = min(int(m.group(1)), MAX_WEIGHTINGS)
    given = {int(i): float(v) for i, v in _PHOENIX_B_VALUE.findall(text)}
    values = {_valid_b(given.get(i, 0.0)) for i in range(n)}
    return sorted(b for b in values if b is not None)
