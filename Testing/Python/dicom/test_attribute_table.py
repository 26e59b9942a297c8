"""One attribute table: tags, header fields, enhanced fields, attribute groups and feature names follow from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from SeqClassifierLib.dicom import attribute_table as AT
from SeqClassifierLib.dicom import header as H
from SeqClassifierLib.dicom import tags as T
from SeqClassifierLib.inputs import attributes as G
from SeqClassifierLib.inputs import features as F

REPO = Path(__file__).resolve().parents[3]


def test_every_row_is_a_constant_and_read_rows_are_the_header_tags():
    for a in AT.ATTRIBUTES:
        assert int(getattr(T, AT.constant_name(a))) == a.tag, a.keyword
    assert {int(t) for t in T.HEADER_TAGS} == {a.tag for a in AT.ATTRIBUTES if a.read}
    assert len({a.keyword for a in AT.ATTRIBUTES}) == len(AT.ATTRIBUTES) == len({a.tag for a in AT.ATTRIBUTES})


def test_the_fast_reader_keys_values_by_the_constants_themselves():
    """Values are stored under the very objects of .tags that every reader looks them up with: an
    equal copy would make each lookup call pydicom's Python-level BaseTag.__eq__ (15 % of discovery)."""
    from SeqClassifierLib.dicom import fast_decode

    constants = {int(getattr(T, AT.constant_name(a))): getattr(T, AT.constant_name(a)) for a in AT.ATTRIBUTES}
    for tag in T.HEADER_TAGS + T.PIXEL_TAGS:
        assert tag is constants[int(tag)]
        assert fast_decode._CANON[int(tag)] is tag
    assert all(tag is constants[int(tag)] for tag in H._HEADER_FIELDS.values())


def test_header_fields_groups_and_features_come_from_the_rows():
    header_rows = [a for a in AT.ATTRIBUTES if a.header]
    assert list(H._HEADER_FIELDS) == [a.keyword for a in header_rows]
    assert H._NUMBER_FIELDS == {a.keyword for a in header_rows if a.kind == AT.Kind.NUMBER}
    assert H._LIST_FIELDS == {a.keyword for a in header_rows if a.kind == AT.Kind.LIST}
    assert set(H._ENHANCED_FIELDS) == {a.keyword for a in header_rows if a.enhanced}
    for a in header_rows:
        if a.group:
            assert a.keyword in G.group(a.group).header_keys
        if a.feature is not None:
            assert {a.feature.name, "miss:" + a.feature.short} <= set(F.FEATURE_NAMES)
    # a group that names a row the table does not mark as a header field would drop nothing
    assert all(a.group in G.GROUP_NAMES for a in AT.ATTRIBUTES if a.group)


_ADD_A_ROW = textwrap.dedent("""
    import json, sys
    from SeqClassifierLib.dicom import attribute_table as AT
    # the one hand edit: a row in the table (before anything reads it)
    AT.ATTRIBUTES = AT.ATTRIBUTES + (AT.Attribute(
        "PercentSampling", 0x00180093, AT.Kind.NUMBER, header=True, group="sequence",
        feature=AT.NumericFeature("psamp", lambda v: v / 100.0, "PercentSampling / 100", 75)),)
    from SeqClassifierLib.dicom import tags as T, header as H
    from SeqClassifierLib.dicom.discovery import discover_series
    from SeqClassifierLib.inputs import attributes as G, features as F
    from SeqClassifierLib.model.card import load_card
    from SeqClassifierLib.model.classifier import check_feature_schema, default_model_path
    d = discover_series(sys.argv[1], workers=1)
    (record,) = d.series
    x = dict(zip(F.FEATURE_NAMES, map(float, F.extract_features(record))))
    try:
        check_feature_schema(load_card(default_model_path()), "shipped.json")
        refusal = ""
    except ValueError as exc:
        refusal = str(exc)
    print(json.dumps({
        "constant": int(T.PERCENT_SAMPLING), "read": int(T.PERCENT_SAMPLING) in {int(t) for t in T.HEADER_TAGS},
        "header_field": "PercentSampling" in H._HEADER_FIELDS, "number": "PercentSampling" in H._NUMBER_FIELDS,
        "group": "PercentSampling" in G.group("sequence").header_keys,
        "prefixes": [p for p in G.group("sequence").feature_prefixes if "psamp" in p],
        "names": [n for n in F.FEATURE_NAMES if "psamp" in n], "value": record.header.get("PercentSampling"),
        "feature": x.get("num:psamp"), "missing": x.get("miss:psamp"), "refusal": refusal}))
""")


def test_adding_an_attribute_is_one_row(tmp_path):
    """A row added to the table (in a fresh interpreter: nothing else is edited) is read from every header,
    kept as a header field, dropped with its group, becomes a feature, and the shipped model's card is then
    refused naming the two new features."""
    import corpus

    if not corpus.GOOD_SERIES.is_dir():
        pytest.skip(f"real test data not found at {corpus.DATA}")
    corpus.copy_good(tmp_path / "good", 1)
    env = dict(os.environ, PYTHONPATH=str(REPO / "SeqClassifier"))
    out = subprocess.run([sys.executable, "-c", _ADD_A_ROW, str(tmp_path / "good")], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["constant"] == 0x00180093 and got["read"] and got["header_field"] and got["number"] and got["group"]
    assert got["prefixes"] == ["num:psamp", "miss:psamp"] and got["names"] == ["num:psamp", "miss:psamp"]
    assert got["value"] == 100.0 and got["feature"] == 1.0 and got["missing"] == 0.0  # ProstateX: 100 %
    assert "2 added in this SeqClassifier (num:psamp, miss:psamp)" in got["refusal"], got["refusal"]
    assert "PercentSampling" not in H._HEADER_FIELDS  # this process's table is untouched
