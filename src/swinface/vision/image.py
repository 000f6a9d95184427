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
from dataclasses import dataclass
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
# A caller's PIL image may still be unread (Image.open is lazy) and may be given more than
# once: two threads loading the same image at once corrupt its read. Loads of callers'
# images take turns; images this module opens itself are its own and load in parallel.
_CALLER_IMAGE_LOCK = threading.Lock()


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
        with _CALLER_IMAGE_LOCK:
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


def to_full_pixels(points: np.ndarray, factors: float | np.ndarray) -> np.ndarray:
    """(x, y) points in the pixels of an image reduced `factors` times (each of its
    pixels a k x k block; pixel centres at integers) as full-size pixels."""
    return ((np.asarray(points, np.float64) + 0.5) * factors - 0.5).astype(np.float32)


REDUCTIONS = (8, 4, 2, 1)
"""The factors a JPEG can be decoded down by (libjpeg's DCT scaling)."""


@dataclass(frozen=True)
class DecodedPhoto:
    """A photo's pixels, maybe decoded at a reduced size, and its full size.

    `pixels` is RGB uint8 ``(h, w, 3)``; `width` x `height` is the photo's own
    size (EXIF orientation applied), of which `pixels` may be 1/2, 1/4 or 1/8.
    """

    pixels: np.ndarray
    width: int
    height: int

    @property
    def factors(self) -> np.ndarray:
        """Full-size pixels per decoded pixel along x and y: 1, 2, 4 or 8 (each decoded
        pixel averages a k x k block; the last, partial block does not change k)."""
        h, w = self.pixels.shape[:2]
        ratios = np.array([self.width / w, self.height / h], dtype=np.float64)
        return np.exp2(np.round(np.log2(ratios)))

    @property
    def reduced(self) -> bool:
        return self.pixels.shape[:2] != (self.height, self.width)

    def to_full(self, points: np.ndarray) -> np.ndarray:
        """(x, y) points in decoded pixels (pixel centres at integers) as full-size pixels."""
        return to_full_pixels(points, self.factors)

    def from_full(self, points: np.ndarray) -> np.ndarray:
        """(x, y) points in full-size pixels as decoded pixels."""
        f = self.factors
        return ((np.asarray(points, np.float64) + 0.5) / f - 0.5).astype(np.float32)


class Photo:
    """A photo to decode, at full size or reduced where its format allows.

    JPEGs (most photos) decode at 1/2, 1/4 or 1/8 of their size for a fraction
    of the cost of a full decode, which is what a detector working on at most
    640 pixels, and face crops of 112, need from a 12-megapixel photo. Other
    formats, arrays and PIL images give their full size whatever is asked.
    Every decode is checked like `load_image` (size limit before decoding,
    clear `ImageError`s); encoded bytes are read once and kept for a second,
    finer decode.
    """

    def __init__(self, source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        if max_pixels is not None and max_pixels <= 0:
            raise ValueError(f"max_pixels must be positive or None, not {max_pixels}")
        self.max_pixels = max_pixels
        self._source = source
        self._data: bytes | None = None
        self._decoded: dict[int, DecodedPhoto] = {}
        if isinstance(source, bytes | bytearray | memoryview):
            self.name, self._data = "<bytes>", bytes(source)
        elif isinstance(source, str | os.PathLike):
            self.name = str(source)
        elif hasattr(source, "encoded_bytes"):
            self.name, self._data = str(source), source.encoded_bytes()
        elif hasattr(source, "read") and not isinstance(source, Image.Image):
            self.name = str(getattr(source, "name", "") or "<file object>")
            data = source.read()
            if not isinstance(data, bytes | bytearray | memoryview):
                raise ImageError(f"{self.name}: opened in text mode; open it with 'rb'")
            self._data = bytes(data)
        else:  # arrays and PIL images: decoded already
            self.name = ""
        if self._data is not None and not self._data:
            raise ImageError(f"{self.name}: empty (0 bytes), not an image")

    @property
    def encoded(self) -> bool:
        """Whether this is an encoded file or bytes, which may decode reduced."""
        return self._data is not None or isinstance(self._source, str | os.PathLike)

    def decode(self, reduce: int = 1) -> DecodedPhoto:
        """The pixels at about 1/`reduce` of the full size (1, 2, 4 or 8; JPEG only),
        rounded up along each side; the full size comes from the same decode."""
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce: one of {REDUCTIONS}, not {reduce}")
        return self._decode(reduce=reduce if self.encoded else 1)

    def decode_for(self, min_side: int | None) -> DecodedPhoto:
        """The most reduced decode whose longer side is still at least `min_side`
        pixels (`reduction_for`), the factor chosen from the header of the same
        read; the full size when `min_side` is None."""
        if min_side is None or not self.encoded:
            return self.decode()
        return self._decode(min_side=min_side)

    def _decode(self, *, reduce: int = 1, min_side: int | None = None) -> DecodedPhoto:
        if min_side is None and reduce in self._decoded:
            return self._decoded[reduce]
        if not self.encoded:
            rgb = load_image(self._source, max_pixels=self.max_pixels)
            photo = DecodedPhoto(rgb, rgb.shape[1], rgb.shape[0])
        elif self._data is not None:
            reduce, photo = self._decode_from(io.BytesIO(self._data), reduce, min_side)
        else:
            reduce, photo = self._decode_path(Path(self._source), reduce, min_side)
        return self._decoded.setdefault(reduce, photo)

    def _decode_path(
        self, path: Path, reduce: int, min_side: int | None
    ) -> tuple[int, DecodedPhoto]:
        if reduce > 1 or min_side is not None:
            try:
                with path.open("rb") as f:
                    return self._decode_from(f, reduce, min_side)
            except OSError:
                pass  # load_image says why the file cannot be read
        rgb = _load_path(path, self.max_pixels)  # the same checks and messages
        return 1, DecodedPhoto(rgb, rgb.shape[1], rgb.shape[0])

    def _decode_from(
        self, fp: IO[bytes], reduce: int, min_side: int | None
    ) -> tuple[int, DecodedPhoto]:
        """The reduction used, and the pixels with the photo's full (width, height),
        EXIF orientation applied."""
        im = _open(fp, self.name)
        with im:
            width, height = im.size
            _check_size(im.size, self.name, self.max_pixels)
            if min_side is not None:
                reduce = reduction_for(im.size, min_side)
            if _quarter_turned(im):
                width, height = height, width
            if reduce > 1 and im.format == "JPEG":
                im.draft(None, (max(1, im.width // reduce), max(1, im.height // reduce)))
            else:
                reduce = 1
            _load_pixels(im, self.name)
            return reduce, DecodedPhoto(_pil_to_rgb(im, self.name), width, height)


def _quarter_turned(im: Image.Image) -> bool:
    """Whether EXIF orientation turns the photo a quarter (its sides swap), as
    `ImageOps.exif_transpose` will; unreadable EXIF turns nothing there either."""
    try:
        return im.getexif().get(0x0112) in (5, 6, 7, 8)  # 0x0112: Orientation
    except Exception:  # broken EXIF: _exif_transpose leaves the photo as it is
        return False


def reduction_for(size: tuple[int, int] | None, min_side: int | None) -> int:
    """The largest JPEG reduction (8, 4, 2 or 1) keeping the longer side of a photo
    of `size` at least `min_side` pixels; 1 when either is unknown."""
    if size is None or min_side is None:
        return 1
    longer = max(size)
    for k in REDUCTIONS:
        if -(-longer // k) >= min_side:
            return k
    return 1
