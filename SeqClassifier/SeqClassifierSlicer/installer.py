"""Installing the module's Python requirements into Slicer, the same way on 5.8, 5.10 and 5.12.

* Every installed distribution's version is noted before and after (:func:`installed_versions`);
  every one that changed is reported with the restart notice (:func:`restart_notice`), marking
  those this process had already imported (their old code stays loaded until a restart).
  Slicer 5.12's ``pip_ensure`` prompts only for imported ones; 5.8/5.10's ``pip_install`` for none.
* pip gets a constraints file pinning every already-imported distribution the requirements do
  not name (:func:`constraint_lines`), so pip picks releases that fit what Slicer has loaded;
  when pip cannot, it runs once more without them and the changes are reported.
* 5.12: ``slicer.packaging.pip_ensure(..., constraints=, show_progress=True, prompt_restart=False)``
  (``Base/Python/slicer/packaging.py`` l. 329 at v5.12.3).  5.8/5.10 (no ``slicer.packaging``):
  ``python -m pip`` through ``slicer.util.launchConsoleProcess`` (what ``slicer.util.pip_install``
  runs, ``util.py`` l. 3899 at v5.8.1) with its output shown in a progress dialog.

Slicer is passed in (``slicer_module``), so the project's stand-ins of each release test this.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Callable, Iterable, Mapping, Optional

from . import compat, dependencies

log = logging.getLogger("SeqClassifier")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_versions() -> dict[str, str]:
    """``{canonical distribution name: version}`` of everything installed (caches invalidated)."""
    importlib.invalidate_caches()
    out = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out[canonical(name)] = dist.version
    return out


def top_level_modules(distribution: str) -> set[str]:
    """The top-level import names of an installed distribution (``top_level.txt``, else its files);
    :func:`dependencies.import_name` when its metadata tells neither.  (Python 3.9 has no
    ``importlib.metadata.packages_distributions``.)"""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return {dependencies.import_name(distribution)}
    text = dist.read_text("top_level.txt")
    names = {n.strip() for n in (text or "").splitlines() if n.strip()}
    if not names:
        for f in dist.files or ():
            first = str(f).replace("\\", "/").split("/", 1)[0]
            if first.endswith((".dist-info", ".egg-info", ".data")) or first in ("..", "__pycache__", "bin"):
                continue
            names.add(first[:-3] if first.endswith(".py") else first)
    return names or {dependencies.import_name(distribution)}


def is_imported(distribution: str, modules: Optional[Mapping[str, Any]] = None,
                top_level: Callable[[str], Iterable[str]] = top_level_modules) -> bool:
    modules = sys.modules if modules is None else modules
    return any(m in modules for m in top_level(distribution))


def changed_versions(before: Mapping[str, str],
                     after: Mapping[str, str]) -> list[tuple[str, Optional[str], Optional[str]]]:
    """``(name, old, new)`` of every distribution installed, removed or of another version."""
    names = sorted(set(before) | set(after))
    return [(n, before.get(n), after.get(n)) for n in names if before.get(n) != after.get(n)]


def constraint_lines(before: Mapping[str, str], requirements: Iterable[str],
                     imported: Callable[[str], bool]) -> list[str]:
    """``name==version`` for every installed, already-imported distribution not named in
    ``requirements`` (those may have to change: pip is asked for them explicitly)."""
    named = {canonical(dependencies.distribution_name(r)) for r in requirements}
    return [f"{n}=={v}" for n, v in sorted(before.items()) if n not in named and imported(n)]


class InstallReport:
    """What an installation changed: ``changes`` (name, old, new), ``loaded`` (names among them
    this process had imported), ``relaxed`` (pip had to run without the constraints)."""

    def __init__(self, changes, loaded, relaxed=False):
        self.changes = list(changes)
        self.loaded = list(loaded)
        self.relaxed = relaxed

    @property
    def restart_needed(self) -> bool:
        return bool(self.loaded)

    def __repr__(self) -> str:
        return f"InstallReport({len(self.changes)} changed, loaded={self.loaded})"


def restart_notice(report: InstallReport) -> str:
    """The lines shown after installing: every version change, and whether to restart."""
    if not report.changes:
        return ""

    def what(name, old, new):
        text = f"{name} {old or '(new)'} -> {new or '(removed)'}"
        return text + " (already loaded)" if name in report.loaded else text

    lines = ["Python packages changed: " + "; ".join(what(*c) for c in report.changes) + "."]
    if report.loaded:
        lines.append("Restart Slicer before classifying: " + ", ".join(report.loaded) + " " +
                     ("was" if len(report.loaded) == 1 else "were") + " already loaded and " +
                     ("has" if len(report.loaded) == 1 else "have") + " been updated.")
    if report.relaxed:
        lines.append("pip could not keep the versions Slicer had loaded; it installed other versions.")
    return "\n".join(lines)


def python_slicer(slicer_module: Any) -> str:
    """Slicer's ``PythonSlicer`` (what ``slicer.util._executePythonModule`` runs), else this Python."""
    return shutil.which("PythonSlicer") or sys.executable


def _run_pip_with_progress(slicer_module: Any, args: list[str], requester: str) -> int:
    """5.8/5.10: ``PythonSlicer -m pip install ...`` with its output in a progress dialog."""
    util = slicer_module.util
    proc = util.launchConsoleProcess([python_slicer(slicer_module), "-m", "pip", "install", *args],
                                     useStartupEnvironment=False)
    dialog = None
    create = getattr(util, "createProgressDialog", None)
    if create is not None:
        dialog = create(windowTitle=f"{requester}: installing Python packages", labelText="Starting pip...",
                        maximum=0)
    try:
        while True:
            try:
                line = proc.stdout.readline()
            except UnicodeDecodeError:
                continue
            if not line:
                break
            line = line.rstrip()
            log.info("pip: %s", line)
            if dialog is not None and line:
                dialog.labelText = line[:200]
            app = getattr(slicer_module, "app", None)
            if app is not None and hasattr(app, "processEvents"):
                app.processEvents()
        proc.wait()
    finally:
        if dialog is not None:
            dialog.close()
    return proc.returncode


def _write_constraints(lines: list[str]) -> str:
    fd, path = tempfile.mkstemp(prefix="seqclassifier-constraints-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def _pip(slicer_module: Any, requirements: list[str], constraints: Optional[str], prompt: bool,
         requester: str) -> None:
    """One pip run; raises ``subprocess.CalledProcessError`` (or RuntimeError) when it fails."""
    pip_ensure = compat.pip_ensure_function(slicer_module)
    if pip_ensure is not None:  # 5.12
        pip_ensure(requirements, constraints=constraints, prompt_install=prompt, prompt_restart=False,
                   requester=requester, skip_in_testing=False, show_progress=True)
        return
    args = (["-c", constraints] if constraints else []) + list(requirements)
    code = _run_pip_with_progress(slicer_module, args, requester)
    if code != 0:
        raise subprocess.CalledProcessError(code, ["pip", "install", *args])


def install(slicer_module: Any, lines: list[str], prompt: bool, requester: str = "SeqClassifier",
            versions: Optional[Callable[[], Mapping[str, str]]] = None,
            imported: Optional[Callable[[str], bool]] = None,
            before: Optional[Mapping[str, str]] = None) -> InstallReport:
    """Install the requirement ``lines`` (markers already evaluated) and report what changed.

    ``prompt``: ask first (5.8/5.10 here; 5.12's ``pip_ensure`` asks itself).  ``versions`` and
    ``imported`` (distribution -> already imported?) default to this process's; ``before``: the
    versions noted earlier (before torch was installed), else now."""
    imported = imported or is_imported
    versions = versions or installed_versions
    requirements = [dependencies.specifier_text(line) for line in lines]
    if prompt and compat.pip_ensure_function(slicer_module) is None:
        text = ("SeqClassifier needs these Python packages, which will be downloaded and installed now "
                "(this may take a few minutes):\n\n" + "\n".join(requirements))
        if not slicer_module.util.confirmOkCancelDisplay(text, windowTitle="Install Python packages"):
            raise RuntimeError("Python packages required by SeqClassifier were not installed.")
        prompt = False
    before = dict(versions()) if before is None else dict(before)
    pins = constraint_lines(before, requirements, imported)
    constraints = _write_constraints(pins) if pins else None
    relaxed = False
    try:
        try:
            _pip(slicer_module, requirements, constraints, prompt, requester)
        except subprocess.CalledProcessError:
            if constraints is None:
                raise
            log.warning("SeqClassifier: pip could not install %s with the loaded versions kept (%s); "
                        "trying without constraints", " ".join(requirements), ", ".join(pins))
            relaxed = True
            _pip(slicer_module, requirements, None, False, requester)
    finally:
        if constraints:
            os.unlink(constraints)
    return report_since(before, versions, imported, relaxed)


def report_since(before: Mapping[str, str], versions: Optional[Callable[[], Mapping[str, str]]] = None,
                 imported: Optional[Callable[[str], bool]] = None, relaxed: bool = False) -> InstallReport:
    """What changed since ``before``; ``loaded``: the changed ones this process had imported."""
    imported = imported or is_imported
    versions = versions or installed_versions
    changes = changed_versions(before, versions())
    loaded = [name for name, old, _new in changes if old is not None and imported(name)]
    return InstallReport(changes, loaded, relaxed)


def report_changes(slicer_module: Any, report: InstallReport, prompt: bool, requester: str = "SeqClassifier") -> str:
    """Log the notice of ``report`` and, with ``prompt``, show it (every release)."""
    notice = restart_notice(report)
    if notice:
        (log.warning if report.restart_needed else log.info)("%s: %s", requester, notice)
        if prompt:
            slicer_module.util.warningDisplay(
                notice, windowTitle="Restart Slicer" if report.restart_needed else "Python packages installed")
    return notice


def install_torch(slicer_module: Any, prompt: bool, requirement: str = ">=2.1") -> None:
    """torch through the PyTorch extension (``PyTorchUtils.PyTorchUtilsLogic().installTorch``, which
    picks the build for the GPU driver), else PyPI's default build after asking."""
    try:
        PyTorchUtils = importlib.import_module("PyTorchUtils")
    except ImportError:
        PyTorchUtils = None
    if PyTorchUtils is not None:
        torch_logic = PyTorchUtils.PyTorchUtilsLogic()
        if not torch_logic.torchInstalled():
            if torch_logic.installTorch(askConfirmation=prompt, torchVersionRequirement=requirement) is None:
                raise RuntimeError("PyTorch is required; its installation was cancelled.")
        return
    if prompt and not slicer_module.util.confirmOkCancelDisplay(
            "SeqClassifier needs PyTorch and the PyTorch extension is not installed. Install the default "
            "PyTorch build from PyPI now? (Install the 'PyTorch' extension instead to get a build matched "
            "to your GPU.)", windowTitle="Install PyTorch"):
        raise RuntimeError("PyTorch is required; its installation was cancelled.")
    slicer_module.util.pip_install("torch" + requirement)
