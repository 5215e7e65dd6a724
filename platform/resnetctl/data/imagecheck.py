"""Whether a file is a usable image: cheap checks of its first and last bytes for every file,
a full decode with PIL where the split is small enough to afford it."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, NamedTuple

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


def _problem(head: bytes, size: int, tail: Callable[[int], bytes]) -> str | None:
    """Why a file of `size` bytes starting with `head` is not a usable image (None: it passes
    the cheap checks); `tail(n)` returns its last n bytes."""
    if size == 0:
        return "empty file"
    fmt = _sniff(head)
    if fmt is None:
        return f"not an image (unrecognised leading bytes {head[:4].hex()})"
    tail_len = {"jpeg": _JPEG_TAIL, "png": _PNG_TAIL}.get(fmt, 0)
    if tail_len:
        marker = b"\xff\xd9" if fmt == "jpeg" else b"IEND"
        if marker not in tail(tail_len):
            return f"truncated {fmt.upper()} (no end marker)"
    return None


def check_image(path: Path, *, full_decode: bool) -> str | None:
    """Why `path` is not a usable image, or None when it passes.

    Cheap checks (always): non-empty, magic bytes of a known format, JPEG ends with its
    end-of-image marker, PNG ends with its IEND chunk. With `full_decode`, PIL decodes the image.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:

            def tail(n: int) -> bytes:
                fh.seek(max(0, size - n))
                return fh.read()

            problem = _problem(fh.read(16), size, tail)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if problem is None and full_decode:
        return _pil_decode_error(path)
    return problem


class ImageCheck(NamedTuple):
    """What `check_image_bytes` found: why the image is unusable, or its size."""

    problem: str | None
    size: tuple[int, int] | None  # (height, width) when usable


def check_image_bytes(data: bytes) -> ImageCheck:
    """`check_image` of a file already read into memory, always with the full decode (a JPEG
    is decoded at reduced scale: every byte of it is still read and checked)."""
    problem = _problem(data[:16], len(data), lambda n: data[-n:])
    if problem is not None:
        return ImageCheck(problem, None)
    size: list[tuple[int, int]] = []
    problem = _pil_decode_error(io.BytesIO(data), draft=True, size=size)
    return ImageCheck(problem, size[0] if problem is None else None)


def _pil_decode_error(
    source: Path | BinaryIO, *, draft: bool = False, size: list[tuple[int, int]] | None = None
) -> str | None:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(source) as im:
                if size is not None:
                    size.append((im.height, im.width))
                if draft and im.format == "JPEG":
                    # Decoding at 1/8 scale runs the whole entropy-coded stream (where damage
                    # shows) but skips most of the inverse DCT and colour conversion.
                    im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
    except Image.UnidentifiedImageError:  # its message names the file object, not the file
        return "cannot be decoded (UnidentifiedImageError: no image format recognised)"
    except Exception as exc:  # PIL raises many exception types for broken files
        return f"cannot be decoded ({type(exc).__name__}: {exc})"
    return None
