"""File I/O: TOML reads with one-line errors, and atomic writes (a crash or Ctrl-C never
leaves a half-written file behind)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """Parse a TOML file; a syntax or read error is a ``ConfigError`` naming the file."""
    import tomllib

    from .errors import ConfigError

    try:
        return tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc}") from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from a run folder; unreadable, not UTF-8, not JSON or not an object is a
    ``ConfigError`` naming the file (``FileNotFoundError`` passes through)."""
    from .errors import ConfigError

    try:
        obj = json.loads(Path(path).read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {type(exc).__name__}: {exc}"[:400]) from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: {what} must be a JSON object, got {type(obj).__name__}")
    return obj


def atomic_torch_save(path: Path, obj: Any, keep_previous: Path | None = None) -> None:
    """``torch.save`` through a temp file and rename (checkpoints are never half-written).
    With ``keep_previous`` the file being replaced is kept there until the new one is in place."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        if keep_previous is not None and path.is_file():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
