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
* `atomic_dir` (context manager): the same for a folder; an existing final folder is replaced.
* `remove_stale_tmp`, `tmp_owner`, `TMP_SUFFIX`: find and remove the temporaries of killed runs.

Files are left with mode 0644 (``mkstemp`` creates them 0600), folders 0755. Parent folders are created.
This module imports only the standard library.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "TMP_SUFFIX",
    "atomic_path",
    "write_bytes",
    "write_text",
    "write_json",
    "copy_file",
    "atomic_dir",
    "tmp_owner",
    "remove_stale_tmp",
]

TMP_SUFFIX = ".tmp"


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_dir_beside(final)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
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
