"""Take chosen regular files out of a tar archive (any compression), refusing unsafe names and links.

Only the members asked for are read, by exact name, and each is written under the destination folder at its
asked-for relative path, never at a path the archive chooses. A name that is absolute or climbs with ``..``, and a
member that is a link, a device or a folder, is refused with an error naming it. Each file is written to a
partial file, checked by the caller, then renamed into place.
"""
from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath
from typing import Callable, Mapping

from ..errors import GenpruneError
from .fetch import partial_path


class ArchiveError(GenpruneError, ValueError):
    """An archive lacks a member, or a member or its destination is unsafe; the message names it."""


def safe_relpath(name: str, what: str = "path") -> str:
    """``name`` as a clean relative POSIX path (``./`` dropped); refused if absolute, empty or climbing ``..``."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and ":" in path.parts[0]):
        raise ArchiveError(f"{what} {name!r} is absolute")
    parts = [p for p in path.parts if p != "."]
    if ".." in parts:
        raise ArchiveError(f"{what} {name!r} climbs out of its folder with '..'")
    if not parts:
        raise ArchiveError(f"{what} {name!r} is empty")
    return "/".join(parts)


def _kind(info: tarfile.TarInfo) -> str:
    if info.issym():
        return f"a symbolic link to {info.linkname!r}"
    if info.islnk():
        return f"a hard link to {info.linkname!r}"
    return "a folder" if info.isdir() else "not a regular file"


def extract(
    archive: str | os.PathLike,
    members: Mapping[str, str],
    root: str | os.PathLike,
    check: Callable[[Path, str], None] | None = None,
) -> list[Path]:
    """Write each archive member ``name`` to ``root / relpath`` for ``members = {name: relpath}``; return the paths.

    ``check(partial_file, relpath)`` may raise to refuse a file's bytes (nothing is then left for that file).
    """
    root = Path(root)
    wanted = {safe_relpath(name, "archive member"): safe_relpath(rel, "destination") for name, rel in members.items()}
    written: dict[str, Path] = {}
    with tarfile.open(archive, "r:*") as tar:
        for info in tar:
            name = "/".join(p for p in PurePosixPath(info.name).parts if p != ".")
            if name not in wanted:
                continue
            if not info.isreg():
                raise ArchiveError(f"{archive}: member {info.name!r} is {_kind(info)}; only regular files are taken")
            rel = wanted[name]
            dest = root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            part = partial_path(dest)
            try:
                with tar.extractfile(info) as src, open(part, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                if check is not None:
                    check(part, rel)
                os.replace(part, dest)
            finally:
                part.unlink(missing_ok=True)
            written[name] = dest
    missing = sorted(set(wanted) - set(written))
    if missing:
        more = f", ... ({len(missing)} in all)" if len(missing) > 3 else ""
        raise ArchiveError(f"{archive} lacks member(s) {', '.join(missing[:3])}{more}")
    return [written[name] for name in wanted]
