"""Decoding any photo into one RGB uint8 array, with clear errors for files that cannot be read.

`load_image` accepts a path, bytes, a binary file object, a PIL image or a
numpy array, and always returns a C-contiguous ``(H, W, 3)`` uint8 RGB array:

- EXIF orientation is applied, so the pixels are the way a photo viewer shows them.
- Greyscale and palette images are expanded to RGB.
- Transparency (LA, RGBA, PA, palette with a transparent colour) is composited
  on a white background, the way a browser or viewer shows it; the colour
  under fully transparent pixels is often junk, so simply dropping alpha
  could show it.
- 16-bit images (I;16 PNG/TIFF, mode I) are scaled to 8 bits (65535 -> 255),
  not clipped.
- CMYK JPEGs are converted with Pillow's plain CMYK -> RGB formula; embedded
  ICC profiles are ignored (sRGB is assumed for every image).
- Photos with more than `max_pixels` pixels are refused from their header,
  before any pixel is decoded.
- Animated or multi-page files (GIF, TIFF) give their first frame.

Every failure raises `ImageError`, whose message names the file and the problem.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from pathlib import Path
from typing import IO, Any, TypeAlias

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from swinface.errors import SwinFaceError

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest photo `load_image` decodes by default: 50 megapixels, about 150 MB as RGB."""

ImageSource: TypeAlias = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes] | Any

# Pillow's decompression-bomb guard is a process-wide setting; this lock keeps
# our threads from interleaving while one of them has it switched off.
_PIL_LIMIT_LOCK = threading.Lock()


class ImageError(SwinFaceError, ValueError):
    """An image that cannot be read or used; the message names it and the problem."""


def load_image(source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode `source` into an RGB uint8 ``(H, W, 3)`` C-contiguous array.

    `source` may be a path (str or PathLike), the encoded bytes, a binary file
    object, a PIL image or a numpy array (see `to_rgb_array` for arrays).
    `max_pixels` (``None`` for no limit) caps width x height of encoded images
    and PIL images; it is checked before decoding.
    """
    if max_pixels is not None and max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive or None, not {max_pixels}")
    if isinstance(source, np.ndarray):
        return to_rgb_array(source, name="<numpy array>")
    if isinstance(source, Image.Image):
        name = getattr(source, "filename", "") or "<PIL image>"
        _check_size(source.size, name, max_pixels)
        _load_pixels(source, name)
        return _pil_to_rgb(source, name)
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if not data:
            raise ImageError("<bytes>: empty (0 bytes), not an image")
        return _decode(io.BytesIO(data), "<bytes>", max_pixels)
    if isinstance(source, str | os.PathLike):
        return _load_path(Path(source), max_pixels)
    if hasattr(source, "encoded_bytes"):  # an image kept inside a pack, read when needed
        data, name = source.encoded_bytes(), str(source)
        if not data:
            raise ImageError(f"{name}: empty (0 bytes), not an image")
        return _decode(io.BytesIO(data), name, max_pixels)
    if hasattr(source, "read"):
        name = str(getattr(source, "name", "") or "<file object>")
        return _decode(source, name, max_pixels)
    raise TypeError(
        "load_image expects a path, bytes, a binary file object, a PIL image or a numpy "
        f"array, not {type(source).__name__}"
    )


def _load_path(path: Path, max_pixels: int | None) -> np.ndarray:
    try:
        if not path.exists():
            raise ImageError(f"{path}: no such file")
        if path.is_dir():
            raise ImageError(f"{path}: is a directory, not an image file")
        if path.stat().st_size == 0:
            raise ImageError(f"{path}: empty file (0 bytes), not an image")
        with path.open("rb") as f:
            return _decode(f, str(path), max_pixels)
    except PermissionError as err:
        raise ImageError(f"{path}: cannot be read (permission denied)") from err
    except IsADirectoryError as err:  # a race with the check above, or an odd filesystem
        raise ImageError(f"{path}: is a directory, not an image file") from err
    except OSError as err:
        raise ImageError(f"{path}: cannot be read ({err.strerror or err})") from err


def _limit_message(name: str, width: int, height: int, max_pixels: int) -> str:
    return (
        f"{name}: image is {width}x{height} = {width * height / 1e6:.1f} megapixels, "
        f"over the limit of {max_pixels / 1e6:.1f} megapixels; to read it, raise the limit "
        "(command line: --max-pixels N, 0 for none; Python: max_pixels=N, None for none)"
    )


def _check_size(size: tuple[int, int], name: str, max_pixels: int | None) -> None:
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(_limit_message(name, width, height, max_pixels))


def _open(fp: IO[bytes], name: str) -> Image.Image:
    """`Image.open`: reads the header only, so the size can be checked before decoding."""
    try:
        # Pillow's decompression-bomb guard (a warning above ~89 Mpx, an error above
        # twice that) is switched off for the header parse only: our own `max_pixels`
        # check replaces it with an error that says how to raise the limit.
        with _PIL_LIMIT_LOCK:
            pil_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                return Image.open(fp)
            finally:
                Image.MAX_IMAGE_PIXELS = pil_limit
    except UnidentifiedImageError as err:
        raise ImageError(f"{name}: not an image (unrecognised or unsupported file format)") from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageError(f"{name}: not a readable image ({err})") from err


def _decode(fp: IO[bytes], name: str, max_pixels: int | None) -> np.ndarray:
    im = _open(fp, name)
    with im:
        _check_size(im.size, name, max_pixels)
        _load_pixels(im, name)
        return _pil_to_rgb(im, name)


def _load_pixels(im: Image.Image, name: str) -> None:
    """Decode the pixels now, so a damaged file fails here with a clear message."""
    try:
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as err:
        # Pillow reports a cut-off file as OSError("image file is truncated ...").
        raise ImageError(f"{name}: the image data is truncated or corrupt ({err})") from err


def _exif_transpose(im: Image.Image, name: str) -> Image.Image:
    try:
        return ImageOps.exif_transpose(im)
    except Exception as err:  # broken EXIF must not lose an otherwise good photo
        log.warning("%s: ignoring unreadable EXIF orientation (%s)", name, err)
        return im


def _pil_to_rgb(im: Image.Image, name: str) -> np.ndarray:
    """A decoded PIL image of any mode as RGB uint8, EXIF orientation applied."""
    if im.width == 0 or im.height == 0:
        raise ImageError(f"{name}: image has no pixels ({im.width}x{im.height})")
    try:
        im = _exif_transpose(im, name)
        mode = im.mode
        if mode == "RGB":
            return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))
        if mode.startswith("I;16") or mode == "I":
            # Pillow's own convert("L") clips 16-bit values at 255 instead of scaling.
            return to_rgb_array(_sixteen_bit(np.asarray(im)), name=name)
        if mode == "F":
            return to_rgb_array(np.asarray(im, dtype=np.float32), name=name)
        if (mode == "P" and "transparency" in im.info) or mode in ("PA", "LA", "La", "RGBa"):
            im = im.convert("RGBA")
        if im.mode == "RGBA":
            return _on_white(np.asarray(im, dtype=np.uint8))
        return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
    except ImageError:
        raise
    except (OSError, ValueError) as err:
        raise ImageError(f"{name}: cannot convert {im.mode} image to RGB ({err})") from err


def _sixteen_bit(values: np.ndarray) -> np.ndarray:
    """16-bit samples (mode I values are clipped to 0..65535) as uint16."""
    return np.clip(values, 0, 65535).astype(np.uint16)


def _on_white(rgba: np.ndarray) -> np.ndarray:
    """Composite an RGBA uint8 array on a white background."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return np.ascontiguousarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))


def _to_uint8(values: np.ndarray, name: str) -> np.ndarray:
    """Samples of any supported dtype as uint8 on the 0..255 scale."""
    if values.dtype == np.uint8:
        return values
    if values.dtype == np.bool_:
        return values.astype(np.uint8) * 255
    if values.dtype == np.uint16:
        # Exact rounding of v * 255 / 65535, so 65535 -> 255 and 257 -> 1.
        return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if np.issubdtype(values.dtype, np.floating):
        if values.size and not np.isfinite(values).all():
            raise ImageError(f"{name}: float image contains NaN or infinite values")
        if values.size and (values.min() < -1e-3 or values.max() > 1.0 + 1e-3):
            raise ImageError(
                f"{name}: float image values must lie in [0, 1], found "
                f"[{values.min():.4g}, {values.max():.4g}]; divide by 255 or pass uint8"
            )
        return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    if np.issubdtype(values.dtype, np.integer):
        if values.size and (values.min() < 0 or values.max() > 255):
            raise ImageError(
                f"{name}: {values.dtype} image values must lie in 0..255, found "
                f"{values.min()}..{values.max()}; pass uint16 for 16-bit images"
            )
        return values.astype(np.uint8)
    raise ImageError(f"{name}: unsupported array dtype {values.dtype}")


def to_rgb_array(array: np.ndarray, *, name: str = "<numpy array>") -> np.ndarray:
    """A numpy image as RGB uint8 ``(H, W, 3)``, C-contiguous.

    Accepts grey ``(H, W)`` or ``(H, W, 1)``, RGB ``(H, W, 3)`` and RGBA
    ``(H, W, 4)`` (composited on white), in uint8, uint16 (scaled, 65535 -> 255),
    bool, other integers within 0..255, or floats within [0, 1]. Arrays are
    taken to be RGB, not OpenCV's BGR.
    """
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageError(
            f"{name}: expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image array, "
            f"got shape {a.shape}"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(f"{name}: image has no pixels (shape {a.shape})")
    a = _to_uint8(a, name)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    elif a.shape[2] == 4:
        return _on_white(a)
    return np.ascontiguousarray(a)
