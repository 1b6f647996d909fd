"""Checkpoints written atomically, read with errors that say what is wrong.

A checkpoint is one file, `torch.save`d to a temporary name in the same folder, flushed to disk,
then renamed over the old one: a write killed half-way leaves the previous checkpoint whole.
Loading uses `weights_only=True` (no arbitrary code from a checkpoint) and checks the format
version, the keys and the run's configuration before anything is restored.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "config_differences", "load_checkpoint", "save_checkpoint"]

# Bumped when the payload's layout changes; older files are refused with a clear error.
CHECKPOINT_FORMAT = 1
REQUIRED_KEYS = ("format", "config", "update", "model", "optimiser", "curriculum", "data_rng", "torch_rng")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, of another format, or of another run's configuration."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` to `path` atomically: to a temporary file, fsync, then rename over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": CHECKPOINT_FORMAT, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one, never half
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


def load_checkpoint(path: Path, *, config: dict | None = None) -> dict[str, Any]:
    """Read a checkpoint; raise `CheckpointError` naming the file and the problem.

    Args:
        path: the checkpoint file.
        config: the run's configuration (as saved in its config.json); a checkpoint written
            under another configuration is refused, naming the fields that differ.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError, OSError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated and cannot be read "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(payload).__name__}, not a diffvm checkpoint")
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {payload.get('format')!r}; "
                              f"this diffvm reads format {CHECKPOINT_FORMAT}")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    if config is not None and payload["config"] != config:
        raise CheckpointError(f"checkpoint {path} was written by a run with another configuration: "
                              f"{', '.join(config_differences(payload['config'], config))}")
    return payload


def config_differences(saved: Any, current: Any, where: str = "") -> list[str]:
    """Dotted names of the configuration fields that differ, with both values."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current), key=str):
            name = f"{where}.{key}" if where else str(key)
            if key not in saved or key not in current:
                out.append(f"{name} is {'missing in the checkpoint' if key not in saved else 'not in the run'}")
            else:
                out += config_differences(saved[key], current[key], name)
        return out
    return [] if saved == current else [f"{where}: checkpoint {saved!r}, run {current!r}"]
