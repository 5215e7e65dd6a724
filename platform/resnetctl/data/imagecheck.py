"""Whether a file is a usable image: cheap checks of its first and last bytes for every file,
a full decode with PIL where the split is small enough to afford it."""

from __future__ import annotations

import warnings
from pathlib import Path

# Entropy-coded JPEG data never contains FF D9 (0xFF bytes are stuffed), so an end-of-image marker
# near the end of the file is a reliable sign the file was not truncated; the slack tolerates the
# padding some encoders append after the marker.
_JPEG_TAIL = 1024
_PNG_TAIL = 64


def _sniff(head: bytes) -> str | None:
    """The image format named by a file's first bytes, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] in (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6"):
        return "pnm"
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head.startswith(b"\xff\x4f\xff\x51"):
        return "jp2"
    return None


def check_image(path: Path, *, full_decode: bool) -> str | None:
    """Why `path` is not a usable image, or None when it passes.

    Cheap checks (always): non-empty, magic bytes of a known format, JPEG ends with its
    end-of-image marker, PNG ends with its IEND chunk. With `full_decode`, PIL decodes the image.
    """
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty file"
        with path.open("rb") as fh:
            head = fh.read(16)
            fmt = _sniff(head)
            if fmt is None:
                return f"not an image (unrecognised leading bytes {head[:4].hex()})"
            tail_len = {"jpeg": _JPEG_TAIL, "png": _PNG_TAIL}.get(fmt, 0)
            if tail_len:
                fh.seek(max(0, size - tail_len))
                tail = fh.read()
                marker = b"\xff\xd9" if fmt == "jpeg" else b"IEND"
                if marker not in tail:
                    return f"truncated {fmt.upper()} (no end marker)"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if full_decode:
        return _pil_decode_error(path)
    return None


def _pil_decode_error(path: Path) -> str | None:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                im.load()
    except Exception as exc:  # PIL raises many exception types for broken files
        return f"cannot be decoded ({type(exc).__name__}: {exc})"
    return None
