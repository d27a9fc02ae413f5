"""Atomic writes: a reader sees either the old content or the complete new one, never a half-written file.

A kill between any two filesystem operations leaves the path whole: a file is replaced in one rename; a directory
(which no rename can replace) is moved aside to ``.<name>.old`` first, and ``recover`` puts it back if the kill
came before the new one was in place. Every other leftover is a hidden ``.<name>.<random>.tmp`` that
``remove_leftovers`` deletes when its folder's writer starts again.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from ..errors import naming_write_failures

_TMP = re.compile(r"^\..+\.tmp$")
_ASIDE = re.compile(r"^\.(.+)\.old$")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """Flush a file, or every file of a directory, to disk before it is renamed into place."""
    for f in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def _aside(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def _temporary(path: Path) -> Path:
    """A fresh, unused hidden name next to ``path`` (nothing is created there)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.rmdir()
    return tmp


def recover(path: str | os.PathLike) -> None:
    """Finish a directory replacement that a kill interrupted.

    If ``path`` is missing, its old version (``.<name>.old``, moved aside just before the new one was to be
    renamed in) comes back; if ``path`` is there, the old version is garbage and goes.
    """
    path = Path(path)
    old = _aside(path)
    if not old.exists():
        return
    if path.exists() or path.is_symlink():
        discard(old)
    else:
        os.replace(old, path)
        _fsync_dir(path.parent)


def discard(path: str | os.PathLike) -> None:
    """Delete a file or directory so that a kill leaves either all of it or a hidden ``.tmp`` leftover."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        doomed = _temporary(path)
        os.replace(path, doomed)
        shutil.rmtree(doomed)
    else:
        path.unlink(missing_ok=True)


def remove_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Remove what killed writes left in ``folder`` (``.*.tmp``; ``.*.old`` after ``recover``); return those paths.

    Call it only where no other process is writing into ``folder``: their temporaries look the same.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(folder.iterdir()):
        if aside := _ASIDE.match(entry.name):
            recover(folder / aside.group(1))
        elif _TMP.match(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        else:
            continue
        removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one rename.

    Works for files and for directories (the caller creates what it needs at the yielded path); an existing
    directory is moved aside first and removed after, see ``recover``. On error the temporary is removed and
    ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover(path)  # a previous replacement's kill must not cost the old version below
    tmp = _temporary(path)  # the caller decides whether it is a file or a directory
    try:
        with naming_write_failures(path):  # a full disk reads "No space left on device: <path>"
            yield tmp
            _fsync_tree(tmp)
        if path.is_dir() and not path.is_symlink():
            # os.replace cannot replace a non-empty directory: move the old one aside first
            old = _aside(path)
            os.replace(path, old)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
            shutil.rmtree(old, ignore_errors=True)  # what stays is garbage that ``recover`` removes
        else:
            os.replace(tmp, path)
            _fsync_dir(path.parent)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
