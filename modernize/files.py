"""File I/O: TOML reads with one-line errors, and atomic writes (a crash or Ctrl-C never
leaves a half-written file behind)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import WriteError


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
    """Write to a temp file in the same folder, fsync, then rename over ``path``; a failure is a
    ``WriteError`` naming ``path`` and leaves the old file as it was."""
    with _temp_beside(Path(path)) as (fh, tmp):
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        os.replace(tmp, path)


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
    With ``keep_previous`` the file being replaced is kept there until the new one is in place.
    Saved through a Python file object: a full disk is then an ``OSError`` (torch's own writer
    says "unexpected pos" in a RuntimeError), reported as a ``WriteError`` naming ``path``."""
    import torch

    path = Path(path)
    with _temp_beside(path) as (fh, tmp):
        try:
            torch.save(obj, fh)
        except RuntimeError as exc:  # torch's writer fails again on closing after the OSError
            if isinstance(exc.__context__, OSError):
                raise exc.__context__ from None
            raise
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        if keep_previous is not None and path.is_file():
            os.replace(path, keep_previous)
        os.replace(tmp, path)


_GUARDED: dict[str, tuple[tuple[int, int], str]] = {}
"""Folders that must not move while this process writes into them: absolute path -> (device,
inode) when guarded, and what to say when one did."""
_STAGED: dict[str, str] = {}
"""Staging folders of :func:`replace_entries` -> the folder they are for (errors name the latter)."""


def _shown(path: Path) -> Path:
    """The path a message names: a staged file by where it is going."""
    text = os.path.abspath(path)
    for stage, dest in _STAGED.items():
        if text == stage or text.startswith(stage + os.sep):
            return Path(dest + text[len(stage):])
    return Path(path)


def _check_guards(path: Path) -> None:
    """Refuse a write into a guarded folder that was moved or removed: writing would re-create
    it under the old name, beside the moved one."""
    text = os.path.abspath(path)
    for folder, (ident, hint) in list(_GUARDED.items()):
        if not text.startswith(folder + os.sep):
            continue
        try:
            st = os.stat(folder)
            same = (st.st_dev, st.st_ino) == ident
        except OSError:
            same = False
        if not same:
            raise WriteError(f"{folder}: moved or removed while this process was writing into it; "
                             f"stopped without writing {os.path.relpath(text, folder)}{hint}")


@contextlib.contextmanager
def guard_folder(folder: Path, hint: str = "") -> Iterator[None]:
    """While active, every atomic write into ``folder`` first checks that it is still the same
    folder (device and inode); one moved or removed stops the write with a ``WriteError``
    (``hint`` is appended: what to do with the moved folder)."""
    key = os.path.abspath(folder)
    st = os.stat(key)
    before = _GUARDED.get(key)
    _GUARDED[key] = ((st.st_dev, st.st_ino), hint)
    try:
        yield
    finally:
        if before is None:
            _GUARDED.pop(key, None)
        else:
            _GUARDED[key] = before


def check_guarded(folder: Path) -> None:
    """``WriteError`` when the guarded ``folder`` was moved or removed (a no-op if not guarded)."""
    _check_guards(Path(folder) / ".")


def _write_error(path: Path, exc: OSError) -> WriteError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return WriteError(f"{_shown(path)}: cannot write: {reason}; the file is left as it was")


@contextlib.contextmanager
def _temp_beside(path: Path) -> Iterator[tuple[Any, Path]]:
    """An open temp file beside ``path``, created with mode 0666 so the umask applies (as for
    any new file: ``mkstemp`` would make it 0600); removed unless renamed. Errors name ``path``."""
    path = Path(path)
    _check_guards(path)
    tmp = path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(errno.EEXIST, "no free temp name", str(path))
        with os.fdopen(fd, "wb") as fh:
            try:
                yield fh, tmp
            except BaseException:
                with contextlib.suppress(OSError):
                    fh.close()
                tmp.unlink(missing_ok=True)
                raise
    except WriteError:
        raise
    except OSError as exc:
        _check_guards(path)  # a folder moved during the write: say so, not "No such file"
        raise _write_error(path, exc) from None


@contextlib.contextmanager
def replace_entries(folder: Path) -> Iterator[Path]:
    """Write a set of files (and sub-folders) into a staging folder beside ``folder``, then put
    each in place of its namesake in ``folder``: all of them or, on any failure (a full disk),
    none, so a folder is never half old, half new. Other entries of ``folder`` stay."""
    folder = Path(os.path.abspath(folder))
    check_writable_dir(folder)
    stage = folder.with_name(f".{folder.name}.staging-{secrets.token_hex(4)}")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)  # a default output under a runs/ not made yet
        os.mkdir(stage)
    except OSError as exc:
        raise _write_error(folder, exc) from None
    _STAGED[str(stage)] = str(folder)
    try:
        yield stage
        _commit(stage, folder)
    finally:
        _STAGED.pop(str(stage), None)
        shutil.rmtree(stage, ignore_errors=True)


def _commit(stage: Path, folder: Path) -> None:
    """Move the staged entries into ``folder``; the old ones go aside first and come back if a
    move fails."""
    if not folder.exists():
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            os.rename(stage, folder)
            return
        except OSError as exc:
            raise _write_error(folder, exc) from None
    aside = stage.with_name(stage.name + ".old")
    moved: list[tuple[Path, Path | None]] = []  # (target now holding a new entry, its old one aside)
    try:
        os.mkdir(aside)
        for entry in sorted(stage.iterdir()):
            target = folder / entry.name
            old = aside / entry.name if os.path.lexists(target) else None
            if old is not None:
                os.rename(target, old)
            try:
                os.rename(entry, target)
            except OSError:
                if old is not None:
                    os.rename(old, target)
                raise
            moved.append((target, old))
    except OSError as exc:
        for target, old in reversed(moved):
            with contextlib.suppress(OSError):
                os.rename(target, stage / target.name)
                if old is not None:
                    os.rename(old, target)
        raise WriteError(f"{folder}: cannot replace its files ({exc.strerror or exc}); "
                         "the folder is left as it was") from None
    finally:
        shutil.rmtree(aside, ignore_errors=True)
