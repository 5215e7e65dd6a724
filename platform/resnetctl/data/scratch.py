"""Small files a DALI reader opens by path (an epoch's file list, a share's cut index files),
which leave nothing behind however the process ends: anonymous in-memory files (Linux's memfd,
named `/proc/self/fd/N` in this process, where the reader runs), gone with their owner or the
process; elsewhere files in a temp folder removed when the owner is collected."""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path


class ScratchFile:
    """One such file; `write` replaces its contents and returns the path to give a reader."""

    def __init__(self, name: str = "resnetctl-scratch") -> None:
        self._fd: int | None = None
        if hasattr(os, "memfd_create"):
            self._fd = os.memfd_create(name)
            weakref.finalize(self, os.close, self._fd)
            self.path = Path(f"/proc/self/fd/{self._fd}")
        else:
            folder = Path(tempfile.mkdtemp(prefix="resnetctl-scratch-"))
            weakref.finalize(self, shutil.rmtree, folder, True)
            self.path = folder / name

    def write(self, data: bytes) -> Path:
        """Replace the contents with `data`; returns the path to give the reader."""
        if self._fd is None:
            self.path.write_bytes(data)
        else:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
        return self.path
