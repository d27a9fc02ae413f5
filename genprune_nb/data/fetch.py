"""Download one URL to one file: resumable, verified, atomic, and refused when offline.

The bytes go to ``.<name>.part`` next to the destination. A partial file left by an interrupted download is
continued with an HTTP ``Range`` request where the server honours it (status 206), else the download restarts.
The finished file is verified by the caller's check (a sha256), removed if it fails, and only then renamed into
place with ``os.replace``. ``GENPRUNE_OFFLINE=1`` (the CLI's ``--offline``) refuses every URL but ``file://``.
"""
from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

from ..errors import GenpruneError
from ..progress import tqdm

OFFLINE_ENV = "GENPRUNE_OFFLINE"
_CHUNK = 1 << 20
_TIMEOUT_S = 60


class DownloadError(GenpruneError, OSError):
    """A download failed or was refused; the message names the URL and the file it was writing."""


def offline() -> bool:
    """True when downloads are off: ``$GENPRUNE_OFFLINE`` set to anything but empty or ``0``."""
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")


def is_remote(url: str) -> bool:
    """True for a URL that needs the network (anything but ``file://``)."""
    return urllib.parse.urlsplit(url).scheme != "file"


def partial_path(dest: str | os.PathLike) -> Path:
    """Where the bytes of ``dest`` collect while they download."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.part")


def _open(url: str, start: int):
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        return urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # the partial file may already hold every byte
            return None
        raise


def _resumed(resp, start: int) -> bool:
    """True if ``resp`` continues at byte ``start`` (206 with a matching Content-Range), False if it starts over."""
    return (start > 0 and getattr(resp, "status", None) == 206
            and (resp.headers.get("Content-Range") or "").startswith(f"bytes {start}-"))


def fetch_url(
    url: str,
    dest: str | os.PathLike,
    check: Callable[[Path], None] | None = None,
    *,
    progress: bool = True,
    desc: str | None = None,
) -> Path:
    """Download ``url`` to ``dest``; ``check(path)`` raises if the downloaded bytes are wrong. Returns ``dest``.

    On a network error the partial file stays for the next call to continue; on a failed check it is removed.
    """
    dest = Path(dest)
    if offline() and is_remote(url):
        raise DownloadError(f"downloads are off ({OFFLINE_ENV}=1 or --offline): not fetching {url} to {dest}")
    part = partial_path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.is_file() else 0
    try:
        resp = _open(url, start)
        if resp is not None:
            with resp:
                resumed = _resumed(resp, start)
                offset = start if resumed else 0
                length = int(resp.headers.get("Content-Length") or 0)
                received = 0
                with open(part, "ab" if resumed else "wb") as out, tqdm(
                    total=offset + length or None, initial=offset, unit="B", unit_scale=True,
                    desc=desc or dest.name, disable=not progress,
                ) as bar:
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                if received < length:  # http.client ends a cut-off body quietly
                    raise ConnectionError(f"the connection closed after {received} of {length} bytes")
    except (OSError, http.client.HTTPException) as e:  # URLError and timeouts are OSErrors
        kept = f"; {part} ({part.stat().st_size} B) is kept to resume" if part.is_file() else ""
        raise DownloadError(f"download of {url} to {dest} failed: {getattr(e, 'reason', e)}{kept}") from e
    try:
        if check is not None:
            check(part)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest
