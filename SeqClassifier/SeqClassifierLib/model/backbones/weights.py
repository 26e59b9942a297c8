"""Pretrained weights of a backbone: where the file is, whether it is the right one, how it is read.

Pretrained weights are never fetched implicitly by timm / open_clip.
:func:`resolve_pretrained_weights` looks for the file in this order:

1. an explicit local file (``pretrained="/path/to/model.safetensors"``);
2. the local Hugging Face cache (``HF_HUB_CACHE`` / ``HF_HOME`` /
   ``~/.cache/huggingface/hub``, ``models--org--name/snapshots/*/<file>``),
   without any network access;
3. SeqClassifier's own download cache (``<cache_dir>/<backbone>/<file>``,
   default ``$SEQCLASSIFIER_CACHE/weights`` or ``~/.cache/seqclassifier/weights``);
4. a download of the declared URL (skipped when ``SEQCLASSIFIER_OFFLINE=1``),
   streamed to a temporary file next to its destination and verified against
   the declared SHA-256 *before* it is moved into the cache;
5. otherwise :class:`WeightsNotFoundError`, whose message names the file and
   the folders to put it in.

Weight files are read only through ``safetensors`` or
``torch.load(..., weights_only=True)``: a weights file can never execute code.
:func:`load_pretrained_into` maps a timm / open_clip checkpoint onto a
:class:`~.backbone.Backbone`.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Union

import torch
from torch import nn

from SeqClassifierLib.config import CACHE_ENV, OFFLINE_ENV, offline as _offline, weights_cache_dir  # one place for every setting
from SeqClassifierLib.model.backbones.registry import BackboneConfig, PretrainedSource, get_backbone_config

from SeqClassifierLib.model.backbones.backbone import Backbone

__all__ = [
    "ResolvedWeights",
    "WeightsNotFoundError",
    "WeightsIntegrityError",
    "resolve_pretrained_weights",
    "load_weights_file",
    "load_pretrained_into",
    "hf_cache_dirs",
    "hf_cache_file_path",
    "default_cache_dir",
    "sha256_file",
    "OFFLINE_ENV",
    "CACHE_ENV",
]

log = logging.getLogger(__name__)


PathLike = Union[str, "os.PathLike[str]"]
ProgressCallback = Callable[[int, Optional[int]], None]

# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are needed but no file could be found or downloaded."""


class WeightsIntegrityError(RuntimeError):
    """A weights file does not have the SHA-256 it is declared (or pinned) to have."""


# --------------------------------------------------------------------------------------
# Weight resolution
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedWeights:
    """A located weights file: its path, SHA-256 and where it was found
    (``"file"``, ``"hf_cache"``, ``"cache"`` or ``"download"``)."""

    path: Path
    sha256: str
    source: str


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """This package's weights cache: ``$SEQCLASSIFIER_CACHE/weights`` or
    ``~/.cache/seqclassifier/weights`` (``$XDG_CACHE_HOME`` respected)."""
    return weights_cache_dir()


def hf_cache_dirs() -> list:
    """Candidate Hugging Face hub cache directories, most specific first, following
    huggingface_hub's conventions (``HF_HUB_CACHE``, legacy ``HUGGINGFACE_HUB_CACHE``,
    ``HF_HOME/hub``, ``XDG_CACHE_HOME/huggingface/hub``, ``~/.cache/huggingface/hub``)."""
    candidates = []
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            candidates.append(Path(os.environ[var]).expanduser())
    if os.environ.get("HF_HOME"):
        candidates.append(Path(os.environ["HF_HOME"]).expanduser() / "hub")
    if os.environ.get("XDG_CACHE_HOME"):
        candidates.append(Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "huggingface" / "hub")
    candidates.append(Path.home() / ".cache" / "huggingface" / "hub")
    unique = []
    for c in candidates:
        if c not in unique:
            unique.append(c)
    return unique


def _hf_repo_folder(hub_id: str) -> str:
    return "models--" + hub_id.replace("/", "--")


def hf_cache_file_path(hub_id: str, filename: str, revision: str = "main") -> Path:
    """Where a file can be placed by hand so that it is found in the (primary)
    Hugging Face cache: ``<hub cache>/models--org--name/snapshots/<revision>/<filename>``.
    Any snapshot folder name is accepted by the lookup."""
    return hf_cache_dirs()[0] / _hf_repo_folder(hub_id) / "snapshots" / revision / filename


def _find_in_hf_cache(hub_id: str, filename: str) -> Optional[Path]:
    """Look up ``filename`` of repository ``hub_id`` in the local HF caches.

    Prefers the snapshot that ``refs/main`` points at, then the most recently
    modified snapshot.  Purely local: no network access.
    """
    for cache in hf_cache_dirs():
        repo_dir = cache / _hf_repo_folder(hub_id)
        if not repo_dir.is_dir():
            continue
        ref = repo_dir / "refs" / "main"
        if ref.is_file():
            commit = ref.read_text(encoding="utf-8").strip()
            candidate = repo_dir / "snapshots" / commit / filename
            if candidate.is_file():
                return candidate
        hits = [Path(p) for p in glob.glob(str(repo_dir / "snapshots" / "*" / filename))]
        hits = [p for p in hits if p.is_file()]
        if hits:
            hits.sort(key=lambda p: p.stat().st_mtime, reverse=True)
            return hits[0]
    return None


def _verify(path: Path, expected: Optional[str], what: str) -> str:
    actual = sha256_file(path)
    if expected and actual.lower() != expected.lower():
        raise WeightsIntegrityError(
            f"{what} {path} has SHA-256 {actual} but {expected.lower()} was expected; "
            "the file is corrupt or not the declared weights (delete it and try again)."
        )
    return actual


def _download(
    url: str,
    dest: Path,
    expected_sha256: Optional[str],
    progress: Optional[ProgressCallback],
    chunk_size: int = 1 << 20,
) -> str:
    """Stream ``url`` to a temporary file next to ``dest``, verify, then move it in.

    Returns the SHA-256 of the downloaded file.  On any failure (network error,
    hash mismatch) the temporary file is deleted and nothing is left at ``dest``.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=str(dest.parent))
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": "SeqClassifier"})
            with urllib.request.urlopen(request, timeout=60) as response:
                total = None
                headers = getattr(response, "headers", None)
                if headers is not None:
                    length = headers.get("Content-Length")
                    if length and str(length).isdigit():
                        total = int(length)
                done = 0
                if progress is not None:
                    progress(0, total)
                while True:
                    block = response.read(chunk_size)
                    if not block:
                        break
                    out.write(block)
                    h.update(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        if total is not None and done != total:
            raise OSError(f"download of {url} truncated: got {done} of {total} bytes")
        actual = h.hexdigest()
        if expected_sha256 and actual.lower() != expected_sha256.lower():
            raise WeightsIntegrityError(
                f"downloaded {url} has SHA-256 {actual} but {expected_sha256.lower()} was expected; "
                "the file was discarded."
            )
        os.replace(tmp, dest)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    return actual


def _not_found_message(config: BackboneConfig, src: PretrainedSource, cache_root: Path, reason: str) -> str:
    filename = src.filename or "<weights file>"
    lines = [f"Pretrained weights for backbone {config.name!r} were not found ({reason})."]
    where = []
    if src.hf_hub_id:
        lines.append(f"Get the file {filename!r} from the Hugging Face Hub repository {src.hf_hub_id!r}")
        if src.url:
            lines.append(f"  ({src.url})")
        where.append(
            f"  - put it into the Hugging Face cache at {hf_cache_file_path(src.hf_hub_id, filename)}\n"
            f"    (e.g. `huggingface-cli download {src.hf_hub_id} {filename}` on a machine with network "
            "access, then copy the cache folder), or"
        )
    elif src.url:
        lines.append(f"Get the file {filename!r} from {src.url}")
    else:
        lines.append(f"No download source is declared for {config.name!r}.")
    where.append(f"  - put it at {cache_root / config.name / filename}, or")
    where.append(f"  - pass the file explicitly: --pretrained /path/to/{filename}")
    lines.append("and do one of:")
    lines.extend(where)
    if src.sha256:
        lines.append(f"Its SHA-256 must be {src.sha256}.")
    return "\n".join(lines)


def resolve_pretrained_weights(
    config: Union[str, BackboneConfig],
    pretrained: Union[bool, PathLike] = True,
    cache_dir: Optional[PathLike] = None,
    *,
    sha256: Optional[str] = None,
    progress: Optional[ProgressCallback] = None,
    offline: Optional[bool] = None,
) -> ResolvedWeights:
    """Locate (and if necessary download) the weights file of a backbone.

    See the module docstring for the search order.  ``sha256`` overrides the
    declared hash; an explicit local file is only checked against an explicitly
    passed ``sha256`` (it may be the user's own weights).  ``offline`` defaults
    to the ``SEQCLASSIFIER_OFFLINE`` environment variable.
    """
    if isinstance(config, str):
        config = get_backbone_config(config)
    if pretrained is False or pretrained is None:
        raise ValueError("resolve_pretrained_weights called with pretrained=False")

    # (a) explicit local file
    if not isinstance(pretrained, bool):
        path = Path(os.fspath(pretrained)).expanduser()
        if not path.is_file():
            what = "is a folder, not a weights file" if path.is_dir() else "does not exist"
            raise WeightsNotFoundError(
                f"pretrained weights file {path} {what} (backbone {config.name!r}, folder {path.parent})"
            )
        return ResolvedWeights(path, _verify(path, sha256, "weights file"), "file")

    src = config.pretrained
    if src is None:
        raise WeightsNotFoundError(
            f"backbone {config.name!r} declares no pretrained weights; use pretrained=False "
            "or pass a weights file (--pretrained /path/to/file)"
        )
    expected = sha256 or src.sha256
    filename = src.filename
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()

    # (b) local Hugging Face cache
    if src.hf_hub_id and filename:
        hit = _find_in_hf_cache(src.hf_hub_id, filename)
        if hit is not None:
            return ResolvedWeights(hit, _verify(hit, expected, "cached weights file"), "hf_cache")

    # (b') this package's own download cache
    if filename:
        own = cache_root / config.name / filename
        if own.is_file():
            return ResolvedWeights(own, _verify(own, expected, "cached weights file"), "cache")

    # (c) download
    if offline is None:
        offline = _offline()
    reason = "no local copy"
    if src.url and filename and not offline:
        dest = cache_root / config.name / filename
        log.info("downloading pretrained weights for %s from %s to %s", config.name, src.url, dest)
        try:
            actual = _download(src.url, dest, expected, progress)
        except WeightsIntegrityError:
            raise
        except OSError as exc:  # URLError, HTTPError, timeouts are OSErrors
            reason = f"no local copy and the download from {src.url} failed: {exc}"
        else:
            if not expected:
                # Record the hash so the user can pin it (PretrainedSource.sha256 / sha256=...).
                try:
                    dest.with_name(dest.name + ".sha256").write_text(f"{actual}  {dest.name}\n", encoding="utf-8")
                except OSError:
                    pass
                log.warning(
                    "downloaded %s without a declared SHA-256; its SHA-256 is %s (pin it to verify future copies)",
                    dest, actual,
                )
            return ResolvedWeights(dest, actual, "download")
    elif offline and src.url:
        reason = f"no local copy and downloads are disabled ({OFFLINE_ENV}=1)"
    raise WeightsNotFoundError(_not_found_message(config, src, cache_root, reason))


# --------------------------------------------------------------------------------------
# Reading and mapping weight files
# --------------------------------------------------------------------------------------


def load_weights_file(path: PathLike) -> Dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` (preferred) or ``.bin/.pth/.pt``.

    Pickle-based files are read with ``torch.load(weights_only=True)`` only,
    which refuses anything but tensors and plain containers.  Common wrappers
    (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if suffix in (".bin", ".pth", ".pt"):
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
        for key in ("state_dict", "model", "module"):
            if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
                obj = obj[key]
        if not isinstance(obj, dict):
            raise ValueError(f"{path} does not contain a state dict")
        return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    raise ValueError(
        f"unsupported weights file type {path.suffix!r} ({path}); use .safetensors (preferred) or .bin/.pth"
    )


def _strip_prefix(state_dict: Mapping[str, torch.Tensor], prefixes) -> Dict[str, torch.Tensor]:
    out = dict(state_dict)
    for prefix in prefixes:
        if out and all(k.startswith(prefix) for k in out):
            out = {k[len(prefix):]: v for k, v in out.items()}
    return out


def _timm_filter(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """Apply the checkpoint filter of the timm module that defines ``model``
    (e.g. ``timm.models.vision_transformer.checkpoint_filter_fn``: original
    DINOv2 / CLIP layouts, position-embedding resampling to our input size)."""
    module = sys.modules.get(type(model).__module__)
    fn = getattr(module, "checkpoint_filter_fn", None)
    if fn is None:
        return state_dict
    return fn(state_dict, model)


def load_pretrained_into(backbone: Backbone, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Map ``state_dict`` onto ``backbone.body`` and load it.

    timm: strip ``module.``, apply timm's checkpoint filter; classifier weights
    (absent from our head-less model) are dropped.  open_clip: keep ``visual.*``
    keys with the prefix removed (the text tower is ignored) and run timm's
    filter on the ``trunk.*`` part.  Any model parameter left unfilled is an
    error; unexpected checkpoint keys are logged and ignored.
    """
    config = backbone.config
    body = backbone.body
    sd = _strip_prefix(state_dict, ("module.",))
    if config.family == "timm":
        sd = _timm_filter(sd, body)
    elif config.family == "open_clip":
        if any(k.startswith("visual.") for k in sd):
            sd = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
        trunk = getattr(body, "trunk", None)
        if trunk is not None:
            trunk_sd = {k[len("trunk."):]: v for k, v in sd.items() if k.startswith("trunk.")}
            rest = {k: v for k, v in sd.items() if not k.startswith("trunk.")}
            trunk_sd = _timm_filter(trunk_sd, trunk)
            sd = {**rest, **{"trunk." + k: v for k, v in trunk_sd.items()}}
    own = body.state_dict()
    unexpected = sorted(k for k in sd if k not in own)
    sd = {k: v for k, v in sd.items() if k in own}
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in sd.items()
        if tuple(v.shape) != tuple(own[k].shape)
    ]
    if mismatched:
        raise RuntimeError(
            f"pretrained weights do not fit backbone {config.name!r}: " + "; ".join(mismatched[:10])
        )
    missing = sorted(k for k in own if k not in sd)
    if missing:
        raise RuntimeError(
            f"pretrained weights for backbone {config.name!r} lack {len(missing)} tensors, e.g. "
            + ", ".join(missing[:10])
        )
    if unexpected:
        log.info("ignored %d checkpoint tensors not used by %s (e.g. %s)",
                 len(unexpected), config.name, ", ".join(unexpected[:5]))
    body.load_state_dict(sd, strict=True)
