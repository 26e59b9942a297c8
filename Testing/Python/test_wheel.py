"""The pip wheel carries the library and its model: build, inspect, install apart from the source, classify.

The wheel is built from a copy of the sources in a temporary folder (an in-tree build writes
``build/`` and ``*.egg-info`` into the checkout), installed with ``pip install --target`` and run
with ``python -S`` and ``PYTHONPATH=<target>:<the venv's site-packages>`` from an empty folder, so
that neither the checkout nor an editable install of it can be imported: what classifies the 18
real series is what the wheel holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("setuptools")  # the wheel is built without build isolation, so with the venv's setuptools

REPO = Path(__file__).resolve().parents[2]
LIB = REPO / "SeqClassifier" / "SeqClassifierLib"
ASSETS = "SeqClassifierLib/model/assets/seqclassifier_default"

pytestmark = pytest.mark.slow(reason="builds, installs and runs the wheel (about 10 s; less than a minute)")


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SEQCLASSIFIER_MODEL", "PYTHONHOME")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1", PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def _run(args: list, cwd: Path, env: dict, returncode: int = 0, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == returncode, f"{args[:4]} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("wheel-src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(LIB, src / "SeqClassifier" / "SeqClassifierLib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("wheel-dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)],
         cwd=src, env=_env())
    (whl,) = dist.glob("seqclassifier-*.whl")
    return whl


def test_wheel_carries_every_module_the_model_and_its_card(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        card = json.loads(z.read(ASSETS + ".json"))
        weights = z.read(ASSETS + ".safetensors")
    sources = {"SeqClassifierLib/" + p.relative_to(LIB).as_posix() for p in LIB.rglob("*.py")
               if "__pycache__" not in p.parts}
    missing = sorted(sources - names)
    assert not missing, f"the wheel lacks {missing[:10]}"  # e.g. a subpackage without __init__.py
    packages = {p.parent.relative_to(LIB).as_posix() for p in LIB.rglob("__init__.py")}
    assert {"model/backbones", "model", "inputs", "training", "app", "dicom", "curation", "synth"} <= packages
    assert card["weights_file"] == "seqclassifier_default.safetensors"
    assert hashlib.sha256(weights).hexdigest() == card["weights_sha256"]
    assert weights == (LIB / "model" / "assets" / "seqclassifier_default.safetensors").read_bytes()
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_installed_wheel_classifies_the_real_series_apart_from_the_source(wheel, tmp_path, prostatex,
                                                                          prostatex_labels):
    target = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
         cwd=tmp_path, env=_env())
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    # -S: no site module, so no .pth file (an editable install of the checkout) is read; torch & co.
    # come from the venv's site-packages named explicitly after the installed wheel.
    env = _env(PYTHONPATH=os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]]),
               SEQCLASSIFIER_CACHE=str(tmp_path / "cache"))
    where = _run([sys.executable, "-S", "-c",
                  "import SeqClassifierLib.app.cli as c, SeqClassifierLib.model.classifier as m; "
                  "print(c.__file__); print(m.default_model_path())"], cwd=elsewhere, env=env)
    cli_file, model_file = where.stdout.split("\n")[:2]
    assert Path(cli_file).is_relative_to(target) and Path(model_file).is_relative_to(target), where.stdout
    # exit status 2 (EXIT_SKIPPED): the data folder's labels.csv is not DICOM and is reported skipped
    out = _run([sys.executable, "-S", "-m", "SeqClassifierLib.app.cli", "classify", str(prostatex), "--format", "json"],
               cwd=elsewhere, env=env, returncode=2)
    assert f"skipped {prostatex / 'labels.csv'}: not a DICOM file" in out.stderr
    doc = json.loads(out.stdout)
    assert doc["model"]["trained"] and Path(doc["model"]["path"]).is_relative_to(target)
    expected = {row["SeriesInstanceUID"]: row["label"] for row in prostatex_labels}
    got = {s["series_uid"]: s["label"] for s in doc["series"]}
    assert len(got) == len(expected) == 18
    assert got == expected
