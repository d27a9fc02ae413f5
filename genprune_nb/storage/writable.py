"""Output folders are proven writable before any work starts, so a long job never fails at its first save; a
read-only data folder is told apart without writing to it (``writable``)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import GenpruneError


class OutputFolderError(GenpruneError, OSError):
    """An output folder cannot be created or written; the message names it."""


def require_writable(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``folder`` (with its parents) if missing and write and remove a file in it; return it as a Path.

    Permission bits alone do not tell (root ignores them, a read-only mount does not show in them), so the check
    writes. ``what`` names the folder's role in the error, e.g. "run dir" or "study folder".
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{what} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".write-check."):
            pass
    except OSError as e:
        where = f" ({e.filename})" if e.filename and Path(e.filename) != folder else ""
        raise OutputFolderError(f"{what} {folder} is not writable: {e.strerror or e}{where}") from e
    return folder


def writable(path: str | os.PathLike) -> bool:
    """True if files can be created in ``path`` (or, while it is missing, in its nearest existing parent).

    A folder without any write bit in its mode counts as read-only by intent, even for root, who could write it.
    """
    path = Path(path).absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path.is_dir() and bool(path.stat().st_mode & 0o222) and os.access(path, os.W_OK | os.X_OK)
