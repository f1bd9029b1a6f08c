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
        check_regular_file(path, what)
        return tomllib.loads(Path(path).read_bytes().decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: cannot read {what}: nested too deeply") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc}") from None


def check_regular_file(path: Path, what: str) -> None:
    """Refuse a FIFO, socket or device where a file is expected (reading one would block or never end)."""
    import stat

    from .errors import ConfigError

    mode = os.stat(path).st_mode  # FileNotFoundError etc. pass through
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise ConfigError(f"{path}: cannot read {what}: {kind}")


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
        check_regular_file(path, what)
        obj = json.loads(Path(path).read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise
    except RecursionError:
        raise ConfigError(f"{path}: cannot read {what}: nested too deeply") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {type(exc).__name__}: {exc}"[:400]) from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: {what} must be a JSON object, got {type(obj).__name__}")
    return obj


def check_out_path(path: Path) -> None:
    """An output path must resolve (a symlink loop is a one-line error naming it, not a traceback)."""
    from .errors import ConfigError

    try:
        Path(path).resolve()
    except (RuntimeError, OSError) as exc:  # RuntimeError: pathlib's "Symlink loop from ..."
        raise ConfigError(f"--out {path}: cannot resolve the path ({exc})") from None


def check_writable_dir(path: Path) -> None:
    """Fail now, with the OS's reason naming the path, when ``path`` could not be created or written
    (a file where a folder should be, read-only, /proc, a name too long, a symlink loop), so that a
    command refuses before its work instead of after it. Creates nothing (a probe file in the
    deepest existing folder is removed at once), so processes sharing an output folder never meet."""
    import errno

    path = Path(path)
    check_out_path(path)
    existing = next(p for p in [path, *path.parents] if os.path.lexists(p))
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
        path_max = os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    too_long = any(len(os.fsencode(part)) > name_max for part in path.relative_to(existing).parts)
    if too_long or len(os.fsencode(str(path.absolute()))) >= path_max:
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), str(path))
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=existing)
    except OSError as exc:  # name what was asked for, not the probe
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    os.close(fd)
    os.unlink(probe)


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
