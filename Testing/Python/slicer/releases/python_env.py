"""Stand-ins for Slicer's Python package installation, one per release, over a pretend environment.

Written from the sources (no Slicer code here):

* 5.8.1 / 5.10.0 ``Base/Python/slicer/util.py``: ``pip_install(requirements)`` (a string is
  ``shlex.split``, a list used as is) -> ``_executePythonModule("pip", ["install", ...])`` ->
  ``launchConsoleProcess([PythonSlicer, "-m", "pip", ...], useStartupEnvironment=False)`` +
  ``logProcessOutput`` (raises ``CalledProcessError``); no ``slicer.packaging``.
* 5.12.3 ``Base/Python/slicer/packaging.py``: ``pip_ensure`` (l. 329) checks each requirement,
  asks (``prompt_install``), notes versions, ``pip_install(..., constraints=, show_progress=)``,
  and with ``prompt_restart`` reports only *imported* packages whose version changed;
  ``slicer.util.pip_install`` forwards to ``slicer.packaging.pip_install``.
* fepegar/SlicerPyTorch ``PyTorchUtils/PyTorchUtils.py``: ``PyTorchUtilsLogic.torchInstalled()``
  (static) and ``installTorch(askConfirmation, forceComputationBackend, torchVersionRequirement,
  torchvisionVersionRequirement)`` returning the torch module, None when declined.

:class:`PythonEnvironment` is the pretend site-packages + ``sys.modules`` + package index; its
``pip`` resolves like pip's default "only-if-needed" strategy: an installed version that fits
stays, otherwise the newest release that fits the specifier, the constraints and the Python.
"""

from __future__ import annotations

import io
import shlex
import subprocess
import types

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version


def canonical(name):
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


class PythonEnvironment:
    """``dists``: name -> version; ``top_level``: name -> import names; ``modules``: imported names;
    ``index``: name -> [(version, requires_python, [dependency requirement strings])]."""

    def __init__(self, python_version, dists, index, modules=(), top_level=None):
        self.python_version = python_version
        self.dists = {canonical(k): v for k, v in dists.items()}
        self.index = {canonical(k): v for k, v in index.items()}
        self.modules = set(modules)
        self.top_level = {canonical(k): set(v) for k, v in (top_level or {}).items()}
        self.pip_runs = []   # (args, return code)
        self.log = []

    # what the installer reads
    def versions(self):
        return dict(self.dists)

    def imported(self, name):
        names = self.top_level.get(canonical(name), {canonical(name).replace("-", "_")})
        return bool(names & self.modules)

    def version_of(self, name):
        import importlib.metadata

        try:
            return self.dists[canonical(name)]
        except KeyError:
            raise importlib.metadata.PackageNotFoundError(name) from None

    # pip
    def pip(self, args):
        """``pip install`` with these arguments; returns (return code, output lines)."""
        args = list(args)
        constraints = {}
        reqs = []
        i = 0
        while i < len(args):
            if args[i] in ("-c", "--constraint"):
                with open(args[i + 1], encoding="utf-8") as fh:
                    for line in fh:
                        if line.strip():
                            r = Requirement(line.strip())
                            constraints[canonical(r.name)] = r.specifier
                i += 2
                continue
            reqs.append(Requirement(args[i]))
            i += 1
        out = []
        plan = dict(self.dists)
        try:
            for r in reqs:
                self._resolve(r, constraints, plan, out)
        except LookupError as exc:
            out.append(f"ERROR: ResolutionImpossible: {exc}")
            self.pip_runs.append((args, 1))
            return 1, out
        changed = sorted(n for n in plan if plan[n] != self.dists.get(n))
        self.dists = plan
        out.append("Successfully installed " + " ".join(f"{n}-{plan[n]}" for n in changed))
        self.pip_runs.append((args, 0))
        return 0, out

    def _resolve(self, req, constraints, plan, out):
        name = canonical(req.name)
        spec = req.specifier & constraints.get(name, SpecifierSet())
        have = plan.get(name)
        if have is not None and spec.contains(have, prereleases=True):
            out.append(f"Requirement already satisfied: {name}=={have}")
            return
        for version, requires_python, deps in sorted(self.index.get(name, []), key=lambda e: Version(e[0]),
                                                     reverse=True):
            if not spec.contains(version, prereleases=True):
                continue
            if requires_python and not SpecifierSet(requires_python).contains(self.python_version):
                continue
            trial = dict(plan)
            trial[name] = version
            try:
                for dep in deps:
                    self._resolve(Requirement(dep), constraints, trial, out)
            except LookupError:
                continue  # pip backtracks to an older release of this one
            out.append(f"Collecting {name}=={version}")
            plan.update(trial)
            return
        raise LookupError(f"no release of {name} matches {spec} on Python {self.python_version}")


class _Process:
    """What ``launchConsoleProcess`` returns (a Popen with text stdout)."""

    def __init__(self, env, command):
        self.args = command
        assert command[1:4] == ["-m", "pip", "install"], command
        self.returncode, lines = env.pip(command[4:])
        self.stdout = io.StringIO("".join(line + "\n" for line in lines))

    def wait(self):
        return self.returncode


class ProgressDialog:
    shown = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.labels = []
        ProgressDialog.shown.append(self)

    @property
    def labelText(self):
        return self.labels[-1] if self.labels else ""

    @labelText.setter
    def labelText(self, text):
        self.labels.append(text)

    def close(self):
        self.closed = True


def slicer_for(release, env, answers=True):
    """A ``slicer`` namespace with ``util`` (and ``packaging`` on 5.12) of ``release`` over ``env``.

    ``answers``: what the user clicks in confirmation dialogs; shown texts are in ``.shown``."""
    shown = []
    util = types.SimpleNamespace()
    app = types.SimpleNamespace(testingEnabled=lambda: False, processEvents=lambda: None)

    def confirmOkCancelDisplay(text, windowTitle=None, detailedText=None, **kw):
        shown.append(("confirm", windowTitle, text + ("\n" + detailedText if detailedText else "")))
        return answers

    def warningDisplay(text, windowTitle=None, **kw):
        shown.append(("warning", windowTitle, text))

    def launchConsoleProcess(args, useStartupEnvironment=True, updateEnvironment=None, cwd=None):
        return _Process(env, list(args))

    def _executePythonModule(module, args):  # 5.8.1 util.py: launch + logProcessOutput
        proc = launchConsoleProcess(["PythonSlicer", "-m", module, *args], useStartupEnvironment=False)
        for line in proc.stdout:
            env.log.append(line.rstrip())
        if proc.wait() != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args)

    def pip_install_58(requirements):
        args = shlex.split(requirements) if isinstance(requirements, str) else list(requirements)
        _executePythonModule("pip", ["install", *args])

    util.confirmOkCancelDisplay = confirmOkCancelDisplay
    util.confirmYesNoDisplay = confirmOkCancelDisplay
    util.warningDisplay = warningDisplay
    util.launchConsoleProcess = launchConsoleProcess
    util._executePythonModule = _executePythonModule
    util.createProgressDialog = lambda parent=None, value=0, maximum=100, labelText="", windowTitle="", **kw: \
        ProgressDialog(maximum=maximum, windowTitle=windowTitle, labelText=labelText)
    ns = types.SimpleNamespace(util=util, app=app, shown=shown, release=release)
    if release != "5.12":
        util.pip_install = pip_install_58
        return ns

    packaging = types.ModuleType("slicer.packaging")

    def pip_install(requirements, constraints=None, no_deps_requirements=None, skip_packages=None,
                    blocking=True, show_progress=True, requester=None, parent=None, logCallback=None,
                    completedCallback=None):
        args = shlex.split(requirements) if isinstance(requirements, str) else list(requirements)
        if constraints:
            args = ["-c", str(constraints)] + args
        if show_progress:
            ProgressDialog(windowTitle=f"{requester} - Installing Python packages", maximum=0)
        _executePythonModule("pip", ["install", *args])

    def pip_ensure(requirements, constraints=None, skip_packages=None, prompt_install=True, prompt_restart=True,
                   requester=None, skip_in_testing=True, show_progress=True):
        reqs = [Requirement(r) for r in (requirements.split() if isinstance(requirements, str) else requirements)]
        missing = [r for r in reqs if canonical(r.name) not in env.dists
                   or not r.specifier.contains(env.dists[canonical(r.name)], prereleases=True)]
        if not missing:
            return None
        if skip_in_testing and app.testingEnabled():
            return None
        if prompt_install and not util.confirmOkCancelDisplay(f"{len(missing)} Python packages need to be installed.",
                                                         f"{requester} - Install Python Packages",
                                                         detailedText="\n".join(str(r) for r in missing)):
            raise RuntimeError("User declined package installation")
        before = env.versions()
        pip_install([str(r) for r in missing], constraints=constraints, blocking=True, show_progress=show_progress,
                    requester=requester)
        if prompt_restart:
            updated = [n for n, v in before.items() if env.dists.get(n) not in (None, v) and env.imported(n)]
            if updated:
                util.confirmYesNoDisplay(f"{len(updated)} updated packages were already loaded",
                                       f"{requester} - Restart Recommended")
        return None

    packaging.pip_install = pip_install
    packaging.pip_ensure = pip_ensure
    util.pip_install = pip_install
    ns.packaging = packaging
    return ns


def pytorchutils_module(env, slicer_ns):
    """``PyTorchUtils`` of the PyTorch extension over ``env``."""
    mod = types.ModuleType("PyTorchUtils")

    class PyTorchUtilsLogic:
        calls = []

        @staticmethod
        def torchInstalled():
            return "torch" in env.dists

        def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,
                         torchvisionVersionRequirement=None):
            PyTorchUtilsLogic.calls.append((askConfirmation, torchVersionRequirement))
            if askConfirmation and not slicer_ns.util.confirmOkCancelDisplay("PyTorch will be downloaded"):
                return None
            slicer_ns.util._executePythonModule("pip", ["install", "torch" + (torchVersionRequirement or ""),
                                                        "torchvision" + (torchvisionVersionRequirement or "")])
            return types.SimpleNamespace(__version__=env.dists["torch"])

    mod.PyTorchUtilsLogic = PyTorchUtilsLogic
    return mod
