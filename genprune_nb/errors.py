"""The package's own errors: one base class, and write failures that name the file they were writing.

Every error the package raises on purpose (bad input, a damaged file, a busy run dir) derives from
``GenpruneError`` and says in its message which file, field or value is wrong, so the command line can print it
as one line without a traceback. Each concrete error keeps its ValueError / RuntimeError / FileNotFoundError base,
so code that catches those keeps working.
"""
from __future__ import annotations

import contextlib
import errno
import os
from typing import Iterator

# torch.save reports a failed write (a full disk, mostly) without errno or path; safetensors names the errno in text
_DISK_FULL_TEXT = ("No space left on device", "StorageFull")
_TORCH_WRITE_FAILED = "file write failed"


class GenpruneError(Exception):
    """An error the package raises on purpose; its message names the file, field or value at fault."""


@contextlib.contextmanager
def naming_write_failures(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise a write failure that does not say where it happened as an OSError naming ``path``.

    A full disk surfaces from ``write()``/``fsync()`` as an OSError without a file name, from safetensors as an
    error whose text mentions the errno, and from torch.save as a RuntimeError "file write failed"; the user should
    read "No space left on device: <path>" instead.
    """
    try:
        yield
    except OSError as e:
        if e.filename is not None or e.errno is None:
            raise
        raise OSError(e.errno, e.strerror or os.strerror(e.errno), os.fspath(path)) from e
    except Exception as e:
        text = str(e)
        if any(marker in text for marker in _DISK_FULL_TEXT):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path)) from e
        if _TORCH_WRITE_FAILED in text:
            raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (or another write failure)",
                          os.fspath(path)) from e
        raise
