"""SeqClassifier.json (the Slicer Extensions Index entry) and LICENSE, for the Extensions Index.

The schema is the Extensions Index's own (``schemas/slicer-extension-catalog-entry-schema-v1.0.2.json``
of Slicer/ExtensionsIndex, kept in Testing/Data/extensions_index).  It is checked with
``jsonschema`` (test extra) when installed, and always by :func:`_check`, which applies the
schema's rules that the entry can meet or break (required, additionalProperties, type, enum,
minimum/maximum, array items).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
ENTRY = REPO / "SeqClassifier.json"
SCHEMA = REPO / "Testing" / "Data" / "extensions_index" / "slicer-extension-catalog-entry-schema-v1.0.2.json"
TYPES = {"string": str, "boolean": bool, "integer": int, "array": list, "object": dict}


def _check(data, schema, where="entry"):
    """Errors of ``data`` against the subset of draft-07 the catalog schema uses."""
    errors = []
    kind = schema.get("type")
    if kind and not (isinstance(data, TYPES[kind]) and not (kind == "integer" and isinstance(data, bool))):
        return [f"{where}: not of type {kind}"]
    if "enum" in schema and data not in schema["enum"]:
        errors.append(f"{where}: {data!r} not one of {schema['enum']}")
    if "minimum" in schema and data < schema["minimum"] or "maximum" in schema and data > schema["maximum"]:
        errors.append(f"{where}: {data!r} out of range")
    if kind == "object":
        for key in schema.get("required", []):
            if key not in data:
                errors.append(f"{where}: required key {key!r} missing")
        props = schema.get("properties", {})
        for key, value in data.items():
            if key in props:
                errors += _check(value, props[key], f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}: unknown key {key!r}")
    if kind == "array" and "items" in schema:
        for i, item in enumerate(data):
            errors += _check(item, schema["items"], f"{where}[{i}]")
    return errors


def _cmake(name):
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    return re.search(r'set\(%s "([^"]*)"\)' % name, text).group(1)


def test_index_entry_is_valid_against_the_schema():
    entry = json.loads(ENTRY.read_text(encoding="utf-8"))
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert _check(entry, schema) == []
    # the entry names the schema version it follows
    assert entry["$schema"] == schema["$id"]
    try:
        import jsonschema
    except ImportError:
        return
    jsonschema.validate(entry, schema)


def test_the_hand_check_finds_what_the_schema_forbids():
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    entry = json.loads(ENTRY.read_text(encoding="utf-8"))
    assert any("required key 'scm_url'" in e for e in _check({k: v for k, v in entry.items() if k != "scm_url"},
                                                             schema))
    assert any("unknown key" in e for e in _check({**entry, "homepage": "x"}, schema))
    assert any("out of range" in e for e in _check({**entry, "tier": 7}, schema))
    assert any("not of type string" in e for e in _check({**entry, "build_dependencies": [1]}, schema))
    assert any("not one of" in e for e in _check({**entry, "scm_type": "svn"}, schema))


def test_index_entry_matches_the_extension_build():
    entry = json.loads(ENTRY.read_text(encoding="utf-8"))
    assert entry["category"] == _cmake("EXTENSION_CATEGORY")
    assert entry["build_dependencies"] == _cmake("EXTENSION_DEPENDS").split(";") == ["PyTorch"]
    assert _cmake("EXTENSION_HOMEPAGE").startswith(entry["scm_url"])


def test_license_is_the_apache_2_text():
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) > 150
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^license = "Apache-2.0"', pyproject, re.M)
