"""Atomic writes: a file or a folder is built under a hidden temporary name beside its final place, then renamed.

Every writer of the package goes through this module, so a killed process never leaves a half-written file or
folder under its final name: readers see the old content or the new one, and a rerun that finds the final
name can trust it. What a killed process can leave is a hidden temporary ``<parent>/.<name>.<random>.tmp``
(file or folder); `remove_stale_tmp` cleans those up.

API:

* `atomic_path` (context manager): yields a temporary file path to write by any means (``torch.save``,
  ``PIL.Image.save``, ``zipfile``, ``matplotlib``...), renamed over the final path on success, removed on error.
  The temporary name ends in ``.tmp``: writers that guess the format from the suffix (PIL, matplotlib) must
  be given it explicitly.
* `write_bytes`, `write_text`, `write_json`, `copy_file`: one-call writers built on it.
* `write_stream`: a writer of a binary file object (``lambda f: torch.save(obj, f)``), atomically; the
  OSError of a failed write is what it raises even when the writer wraps it (torch's zip writer does).
* `atomic_dir` (context manager): the same for a folder; an existing final folder is replaced.
* `remove_stale_tmp`, `tmp_owner`, `TMP_SUFFIX`: find and remove the temporaries of killed runs.
* `is_disk_full`, `DISK_FULL_ERRNOS`: whether a write failed for lack of space (also torch's writer, which
  reports a full disk as a RuntimeError without errno).
* `snapshot_dirs`, `remove_new_empty_dirs`: after a failed command, remove the (empty) folders it created.

Files are left with mode 0644 (``mkstemp`` creates them 0600), folders 0755. Parent folders are created;
on error the ones this call created are removed again if empty. A write that fails for lack of space
(ENOSPC, EDQUOT, or torch's ``RuntimeError`` on a full file system) is re-raised as ``OSError(ENOSPC)``
whose ``filename`` is the *final* path, so the user reads which artifact did not fit, not a temporary name.
This module imports only the standard library.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "TMP_SUFFIX",
    "atomic_path",
    "write_bytes",
    "write_text",
    "write_json",
    "copy_file",
    "write_stream",
    "atomic_dir",
    "tmp_owner",
    "remove_stale_tmp",
    "DISK_FULL_ERRNOS",
    "is_disk_full",
    "snapshot_dirs",
    "remove_new_empty_dirs",
]

TMP_SUFFIX = ".tmp"
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# torch's PyTorchStreamWriter reports a failed write() as RuntimeError ("file write failed", "unexpected
# pos ..."); it is taken for a full disk only when the folder then has less than this many bytes free.
_NEARLY_FULL_BYTES = 1 << 20


def is_disk_full(err: BaseException, folder: str | Path) -> bool:
    """True if ``err`` (raised while writing into ``folder``) means the file system or quota is full.

    OSError with errno ENOSPC/EDQUOT; or a RuntimeError (torch.save's C++ writer drops the errno) while
    ``folder``'s file system has under 1 MiB available (a failed write fills the disk up to its last block).
    """
    if isinstance(err, OSError):
        return err.errno in DISK_FULL_ERRNOS
    if isinstance(err, RuntimeError):
        try:
            st = os.statvfs(folder)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize < _NEARLY_FULL_BYTES
    return False


def _disk_full_error(path: Path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _make_parents(folder: Path) -> list[Path]:
    """``folder.mkdir(parents=True, exist_ok=True)``; returns the folders it created, deepest first."""
    missing = []
    for p in (folder, *folder.parents):
        if p.exists():
            break
        missing.append(p)
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove each folder (deepest first) if it is empty; stop at the first that is not."""
    for p in folders:
        try:
            p.rmdir()
        except OSError:
            break


@contextmanager
def atomic_path(path: str | Path, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (``.<name>.<random>.tmp``, an existing empty file).

    On normal exit the temporary file is renamed over ``path`` (`os.replace`); if the body raises (any
    BaseException, KeyboardInterrupt included) it is removed and ``path`` keeps its old content.

    Args:
        path: the final file.
        fsync: flush the file's data to disk before the rename (survives a power loss, not only a kill).
    """
    path = Path(path)
    if path.is_dir():  # os.replace would fail naming the temporary; name what the user gave
        raise IsADirectoryError(errno.EISDIR, "is a directory; name the file to write", str(path))
    created = _make_parents(path.parent)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except BaseException as err:
        _remove_if_empty(created)
        if is_disk_full(err, path.parent):
            raise _disk_full_error(path) from None
        raise
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as err:
        full = is_disk_full(err, path.parent)  # judged before the temporary gives its space back
        tmp.unlink(missing_ok=True)
        _remove_if_empty(created)
        if full and not (isinstance(err, OSError) and err.filename == str(path)):
            raise _disk_full_error(path) from None
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8, atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(
    path: str | Path, obj: Any, *, indent: int | None = 2, sort_keys: bool = False, allow_nan: bool = True
) -> None:
    """Write ``json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan)`` plus a newline, atomically.

    ``allow_nan=False`` makes a NaN/inf raise ValueError (strict JSON) instead of writing ``NaN``.
    """
    write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan) + "\n")


def copy_file(src: str | Path, dst: str | Path) -> None:
    """Copy ``src`` to ``dst`` as a real file (never a link), atomically; FileNotFoundError naming ``src``."""
    if not Path(src).is_file():
        raise FileNotFoundError(f"{src}: file not found")
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


class _ErrnoKeepingFile:
    """A binary file that remembers the OSError of its failed write.

    torch's zip writer calls ``write`` and turns the OSError it raises (ENOSPC on a full disk) into
    ``RuntimeError('... unexpected pos ...')`` without errno; `write_stream` raises the remembered OSError
    instead, so a full disk is told apart from other failures without guessing from the space left (which
    another process may free in the meantime).
    """

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._f.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self._f.flush()


def write_stream(path: str | Path, write: Callable[[Any], None], *, fsync: bool = False) -> None:
    """Write ``path`` atomically with ``write(file)``, ``file`` a binary file object (e.g. ``lambda f:
    torch.save(obj, f)``); see `atomic_path` for ``fsync``. A failed write raises its own OSError (a full
    disk: ``OSError(ENOSPC)`` naming ``path``), also when ``write`` wrapped it in another exception."""
    with atomic_path(path, fsync=fsync) as tmp, open(tmp, "wb") as raw:
        f = _ErrnoKeepingFile(raw)
        try:
            write(f)
        except Exception:
            if f.error is not None:
                raise f.error from None
            raise


def _tmp_dir_beside(final: Path) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=TMP_SUFFIX, dir=final.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
    return tmp


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Build a folder under a hidden temporary name beside ``final``, then rename it into place.

    Yields the temporary folder (``<parent>/.<name>.<random>.tmp``). On normal exit an existing ``final``
    is replaced (renamed to another temporary name, then removed); if the body raises, the temporary folder
    is removed and ``final`` is untouched. A process killed inside the body leaves only hidden temporaries
    named after ``final`` (see `remove_stale_tmp`).
    """
    final = Path(final)
    created = _make_parents(final.parent)
    try:
        tmp = _tmp_dir_beside(final)
    except BaseException as err:
        _remove_if_empty(created)
        if is_disk_full(err, final.parent):
            raise _disk_full_error(final) from None
        raise
    try:
        yield tmp
    except BaseException as err:
        full = is_disk_full(err, final.parent)
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_if_empty(created)
        if full:
            # name the file as it would have been called inside `final`, not inside the temporary folder
            name = Path(getattr(err, "filename", None) or tmp)
            inside = name.relative_to(tmp) if name.is_relative_to(tmp) else None
            raise _disk_full_error(final / inside if inside and str(inside) != "." else final) from None
        raise
    if final.exists():
        old = _tmp_dir_beside(final)  # empty: rename(2) replaces an empty folder
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def tmp_owner(tmp_name: str) -> str | None:
    """Final name of a temporary ``.<name>.<random>.tmp`` (``<name>`` may contain dots); None if not one."""
    if not (tmp_name.startswith(".") and tmp_name.endswith(TMP_SUFFIX)):
        return None
    return tmp_name[1 : -len(TMP_SUFFIX)].rsplit(".", 1)[0]


def remove_stale_tmp(parent: str | Path, names: set[str] | None = None) -> list[Path]:
    """Remove hidden temporary files/folders (``.<name>.*.tmp``) left in ``parent`` by killed runs.

    Args:
        parent: the folder holding the final files/folders.
        names: only remove temporaries of these final names (e.g. the videos of this shard, so parallel
            shards writing into the same parent never delete each other's work in progress); None = all.

    Returns the removed paths.
    """
    parent = Path(parent)
    if not parent.is_dir():
        return []
    removed = []
    for entry in sorted(parent.iterdir()):
        owner = tmp_owner(entry.name)
        if owner is None or (names is not None and owner not in names):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def snapshot_dirs(path: str | Path) -> set[Path]:
    """The folders that exist now at and below ``path`` and above it (for `remove_new_empty_dirs`)."""
    path = Path(path).absolute()
    found = {p for p in path.parents if p.is_dir()}
    if path.is_dir():
        found.add(path)
        for parent, dirs, _ in os.walk(path):
            found.update(Path(parent) / d for d in dirs)
    return found


def remove_new_empty_dirs(path: str | Path, before: set[Path]) -> list[Path]:
    """Remove the empty folders at, below and above ``path`` that are not in ``before``, deepest first.

    ``before`` is `snapshot_dirs(path)` taken before a command ran, so only folders the failed command
    created are removed, and only when empty (a folder emptied by the removal of its children counts).

    Returns the removed folders.
    """
    path = Path(path).absolute()
    new_above = [p for p in path.parents if p not in before]
    top = new_above[-1] if new_above else path  # the highest folder the command may have created
    candidates = set(new_above)
    if top.is_dir():
        candidates.add(top)
        for parent, dirs, _ in os.walk(top):
            candidates.update(Path(parent) / d for d in dirs)
    removed = []
    for d in sorted({c for c in candidates if c not in before}, key=lambda c: len(c.parts), reverse=True):
        try:
            d.rmdir()  # fails (and is skipped) unless empty
        except OSError:
            continue
        removed.append(d)
    return removed
