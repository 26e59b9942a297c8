"""The dependency installer under the stand-ins of Slicer 5.8, 5.10 and 5.12 (python_env.py).

ModuleLogic.ensureDependencies runs against each release's ``slicer.util``/``slicer.packaging``
and the PyTorch extension's PyTorchUtils, over a pretend site-packages whose pip resolves
against a pretend index (Python 3.9.10 on 5.8, 3.12.10 on 5.10/5.12, as each release builds).
"""

from __future__ import annotations

import json
import sys

import pytest
from packaging.requirements import Requirement

import python_env
import standins

PYTHON = {"5.8": "3.9.10", "5.10": "3.12.10", "5.12": "3.12.10"}
PYDICOM = {"5.8": "2.4.4", "5.10": "2.4.4", "5.12": "3.0.2"}  # SuperBuild/External_python-pydicom.cmake


def _index(safetensors_deps=None):
    deps = safetensors_deps or {}
    return {
        "torch": [("2.5.1", ">=3.9", ["numpy"])],
        "torchvision": [("0.20.1", ">=3.9", ["torch"])],
        "numpy": [("1.26.4", ">=3.9", []), ("2.0.2", ">=3.9", []), ("2.3.0", ">=3.10", [])],
        "pydicom": [("2.4.4", ">=3.6", []), ("3.0.2", ">=3.10", [])],
        "safetensors": [("0.4.5", ">=3.7", deps.get("0.4.5", [])), ("0.7.0", ">=3.9", deps.get("0.7.0", [])),
                        ("0.8.0", ">=3.10", deps.get("0.8.0", []))],
        "timm": [("1.0.30", ">=3.8", ["torch", "torchvision"])],
        "open-clip-torch": [("3.3.0", ">=3.9", ["torch", "timm"])],
    }


@pytest.fixture(params=standins.RELEASES)
def installing(request, monkeypatch):
    """(release, env, slicer stand-in, logic) with the release's packaging APIs installed."""
    rel = request.param
    monkeypatch.setitem(sys.modules, "DICOMLib", standins.dicomlib_module(rel))
    sys.modules.pop("SeqClassifierSlicer.logic", None)
    from SeqClassifierSlicer import dependencies, installer
    from SeqClassifierSlicer import logic as logic_module

    def make(index=None):
        env = python_env.PythonEnvironment(
            PYTHON[rel], {"numpy": "1.26.4", "pydicom": PYDICOM[rel], "packaging": "24.0"}, index or _index(),
            modules={"numpy", "pydicom", "packaging"})
        ns = python_env.slicer_for(rel, env)
        monkeypatch.setattr(logic_module, "slicer", ns)
        if rel == "5.12":
            monkeypatch.setitem(sys.modules, "slicer.packaging", ns.packaging)
        else:
            monkeypatch.delitem(sys.modules, "slicer.packaging", raising=False)
        monkeypatch.setitem(sys.modules, "PyTorchUtils", python_env.pytorchutils_module(env, ns))
        monkeypatch.setattr(installer, "installed_versions", env.versions)
        monkeypatch.setattr(installer, "is_imported", env.imported)
        monkeypatch.setattr(dependencies, "installed_version", env.version_of)
        monkeypatch.setattr(dependencies, "running_python", lambda: env.python_version)
        logic = logic_module.ModuleLogic(_module_dir())
        monkeypatch.setattr(logic, "torchInstalled", lambda: "torch" in env.dists)
        python_env.ProgressDialog.shown = []
        return env, ns, logic

    yield rel, make
    sys.modules.pop("SeqClassifierSlicer.logic", None)


def _module_dir():
    import SeqClassifierSlicer
    import os

    return os.path.dirname(os.path.dirname(os.path.abspath(SeqClassifierSlicer.__file__)))


def test_shipped_model_installs_light_on_every_release(installing):
    rel, make = installing
    env, ns, logic = make()
    installed = logic.ensureDependencies(askConfirmation=True)
    names = {Requirement(line).name for line in installed}
    assert names == {"safetensors"}  # numpy and pydicom as bundled fit; no timm/open_clip/tqdm
    asked = [a for a in env.pip_runs]
    assert all(not any(n in " ".join(args) for n in ("timm", "open_clip", "tqdm")) for args, _ in asked)
    # the release of each that exists for this Python
    assert env.dists["safetensors"] == ("0.7.0" if rel == "5.8" else "0.8.0")
    assert env.dists["torch"] == "2.5.1"  # through PyTorchUtils (the PyTorch extension)
    report = logic.lastInstallReport
    assert {c[0] for c in report.changes} == {"torch", "torchvision", "safetensors"} and report.loaded == []
    # every change is told, on every release; nothing loaded changed: no restart asked
    notice = [text for kind, _t, text in ns.shown if kind == "warning"]
    assert len(notice) == 1 and "safetensors (new) -> " in notice[0] and "Restart" not in notice[0]
    assert python_env.ProgressDialog.shown, "no progress shown while pip ran"
    # the loaded packages were pinned for pip (constraints), the requirements asked explicitly
    args = env.pip_runs[-1][0]
    assert args[0] == "-c" and Requirement(args[-1]).name == "safetensors"
    assert logic.ensureDependencies() == [] and len(env.pip_runs) == 2  # nothing left to do


def test_upgraded_loaded_package_is_reported_on_every_release(installing):
    rel, make = installing
    needs_numpy2 = ["numpy>=2"]
    env, ns, logic = make(_index({"0.4.5": needs_numpy2, "0.7.0": needs_numpy2, "0.8.0": needs_numpy2}))
    logic.ensureDependencies(askConfirmation=True)
    assert [code for _a, code in env.pip_runs][-2:] == [1, 0]  # pinned: impossible; then without pins
    new = "2.0.2" if rel == "5.8" else "2.3.0"  # numpy 2.3 needs Python >= 3.10
    assert env.dists["numpy"] == new
    report = logic.lastInstallReport
    assert report.loaded == ["numpy"] and report.relaxed and report.restart_needed
    warnings = [(title, text) for kind, title, text in ns.shown if kind == "warning"]
    assert len(warnings) == 1
    title, text = warnings[0]
    assert title == "Restart Slicer" and f"numpy 1.26.4 -> {new} (already loaded)" in text
    assert "Restart Slicer before classifying: numpy was already loaded" in text
    assert "safetensors (new) ->" in text  # the other changes are listed too


def test_constraints_keep_the_loaded_version_when_pip_can(installing):
    rel, make = installing
    env, ns, logic = make(_index({"0.7.0": ["numpy>=2"], "0.8.0": ["numpy>=2"]}))
    logic.ensureDependencies(askConfirmation=False)
    assert env.dists["numpy"] == "1.26.4" and env.dists["safetensors"] == "0.4.5"
    assert logic.lastInstallReport.loaded == [] and not logic.lastInstallReport.relaxed


def test_declining_installs_nothing(installing):
    rel, make = installing
    env, ns, logic = make()
    env.dists["torch"] = "2.5.1"
    ns.util.confirmOkCancelDisplay = lambda *a, **k: False
    with pytest.raises(RuntimeError, match="not installed|declined"):
        logic.ensureDependencies(askConfirmation=True)
    assert "safetensors" not in env.dists


def _card(tmp_path, backbone):
    card = json.loads(open(_module_dir() + "/SeqClassifierLib/model/assets/seqclassifier_default.json").read())
    card["model"]["backbone"] = backbone
    path = tmp_path / f"m_{backbone}.json"
    path.write_text(json.dumps(card))
    return path


def test_backbone_family_decides_the_extra_packages(installing, tmp_path):
    rel, make = installing
    from SeqClassifierSlicer import dependencies

    env, ns, logic = make()
    registry = dependencies._registry(_module_dir())
    timm_name = registry.list_backbones(family="timm")[0]
    clip_name = registry.list_backbones(family="open_clip")[0]
    names = lambda model: {Requirement(r).name for r in logic.requirementLines(model)}  # noqa: E731
    assert names(None) == {"pydicom", "numpy", "safetensors"}
    assert names(_card(tmp_path, "compact_cnn")) == {"pydicom", "numpy", "safetensors"}
    assert "timm" in names(_card(tmp_path, timm_name)) and "open_clip_torch" not in names(_card(tmp_path, timm_name))
    assert {"timm", "open_clip_torch"} <= names(_card(tmp_path, clip_name))
    logic.ensureDependencies(askConfirmation=False, model=str(_card(tmp_path, clip_name)))
    assert env.dists["open-clip-torch"] == "3.3.0" and "timm" in env.dists
    with pytest.raises(ValueError, match="not in the backbone registry"):
        logic.requirementLines(_card(tmp_path, "no_such_backbone"))


#: The first release of each that needs Python >= 3.10 (PyPI Requires-Python), which Slicer 5.8's
#: Python 3.9.10 cannot install, and the last one for 3.9.
FIRST_FOR_310 = {"pydicom": ("3.0.0", "2.4.4"), "safetensors": ("0.8.0", "0.7.0"), "numpy": ("2.1.0", "2.0.2")}


@pytest.mark.parametrize("python", ["3.9.10", "3.12.10"])
def test_requirement_ranges_exist_for_each_python(python):
    from SeqClassifierSlicer import dependencies

    lines = dependencies.model_requirements(_module_dir(), None, python_version=python)
    reqs = {Requirement(line).name: Requirement(line).specifier for line in lines}
    assert set(reqs) == {"pydicom", "numpy", "safetensors"}
    for name, (first_310, last_39) in FIRST_FOR_310.items():
        if python.startswith("3.9"):
            assert not reqs[name].contains(first_310) and reqs[name].contains(last_39), name
        else:
            assert reqs[name].contains(first_310), name
