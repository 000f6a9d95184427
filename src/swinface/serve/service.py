"""What the routers share: decoding uploads within the limits, batched analysis, the gallery."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from swinface.gallery import GallerySearcher, GalleryStore
from swinface.pipeline import FaceAnalyzer, PhotoResult
from swinface.serve.batching import BatchRunner, DetectorOptions, QueueFull
from swinface.serve.settings import ServeSettings

JSON_TYPES = ("application/json",)
FORM_TYPES = ("multipart/form-data",)


@dataclass
class Upload:
    """One image sent by a client: its name (for messages) and its bytes."""

    name: str
    data: bytes
    field: str = ""  # the form or JSON field it came in


@dataclass
class Inputs:
    """A request's images and its other fields, whichever way they were sent."""

    uploads: list[Upload]
    fields: dict[str, Any]


def _decode_base64(text: Any, name: str) -> bytes:
    if not isinstance(text, str):
        raise HTTPException(422, f"{name}: expected a base64 string")
    if text.startswith("data:") and "," in text:  # a data URL from a browser
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(422, f"{name}: not valid base64") from None


async def read_inputs(request: Request, image_fields: tuple[str, ...], max_images: int) -> Inputs:
    """Images from a multipart form (files) or JSON (base64 strings); other fields as given.

    An empty body is a 400, another content type a 415, both naming what is wanted.
    """
    body = await request.body()
    if not body:
        raise HTTPException(400, "the request body is empty: send images as multipart or JSON")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    uploads: list[Upload] = []
    fields: dict[str, Any] = {}
    if ctype in FORM_TYPES:
        try:
            form = await request.form(max_files=max_images, max_fields=64)
        except StarletteHTTPException as err:
            if "Too many files" in str(err.detail):
                raise HTTPException(
                    413, f"too many images: the limit is {max_images} per request"
                ) from None
            raise HTTPException(400, f"the multipart body cannot be read ({err.detail})") from None
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key in image_fields:
                    uploads.append(Upload(value.filename or key, await value.read(), key))
            else:
                fields[key] = value
    elif ctype in JSON_TYPES:
        try:
            payload = json.loads(body)
        except ValueError as err:
            raise HTTPException(400, f"the request body is not valid JSON ({err})") from None
        if not isinstance(payload, dict):
            raise HTTPException(400, "the JSON body must be an object")
        for key, value in payload.items():
            if key in image_fields:
                values = value if isinstance(value, list) else [value]
                for i, v in enumerate(values):
                    label = f"{key}[{i}]" if isinstance(value, list) else key
                    uploads.append(Upload(label, _decode_base64(v, label), key))
            else:
                fields[key] = value
    else:
        raise HTTPException(
            415,
            f"content type {ctype or '(none)'!r} is not accepted: send multipart/form-data "
            "(image files) or application/json (base64 images)",
        )
    if len(uploads) > max_images:
        raise HTTPException(413, f"{len(uploads)} images: the limit is {max_images} per request")
    return Inputs(uploads, fields)


class FaceService:
    """The model (through the batch runner), the gallery store and its searcher."""

    def __init__(
        self,
        analyzer: FaceAnalyzer,
        runner: BatchRunner,
        store: GalleryStore,
        searcher: GallerySearcher,
        settings: ServeSettings,
        digest: str,
        threshold: float,
    ) -> None:
        self.analyzer = analyzer
        self.runner = runner
        self.store = store
        self.searcher = searcher
        self.settings = settings
        self.digest = digest
        self.threshold = threshold

    @property
    def weights_name(self) -> str:
        info = getattr(self.analyzer.model, "weights_info", None)
        return info.name if info else "unnamed"

    def decode(self, upload: Upload) -> np.ndarray:
        """Pixels of an upload; 413 beyond the pixel limit, 422 for what is not a readable image."""
        from PIL import Image

        from swinface.vision import ImageError, load_image

        limit = self.settings.max_pixels
        if not upload.data:
            raise HTTPException(422, f"{upload.name}: empty (0 bytes), not an image")
        try:  # the header alone gives the size; refuse before decoding any pixels
            with Image.open(io.BytesIO(upload.data)) as im:
                width, height = im.size
        except Image.DecompressionBombError:
            width = height = limit  # larger than any limit we would accept
        except Exception:  # not an image: load_image says so precisely below
            width = height = 0
        if width * height > limit:
            raise HTTPException(
                413,
                f"{upload.name}: {width}x{height} pixels is over the limit of {limit} pixels "
                f"({limit / 1e6:.1f} megapixels) per image",
            )
        try:
            return load_image(upload.data, max_pixels=limit)
        except ImageError as err:
            raise HTTPException(422, str(err).replace("<bytes>", upload.name)) from None

    async def analyze(
        self,
        uploads: list[Upload],
        *,
        aligned: bool = False,
        options: DetectorOptions | None = None,
    ) -> list[PhotoResult]:
        """Decode (in worker threads) and analyse (in the shared batches) the uploads."""
        from starlette.concurrency import run_in_threadpool

        if not self.runner.has_room(len(uploads)):  # refuse before decoding anything
            raise HTTPException(
                503, "busy: the queue is full; retry shortly", headers={"Retry-After": "1"}
            )
        images = [await run_in_threadpool(self.decode, u) for u in uploads]
        try:
            futures = self.runner.submit(images, aligned=aligned, options=options)
        except QueueFull as err:
            raise HTTPException(
                503, f"busy: {err}; retry shortly", headers={"Retry-After": "1"}
            ) from None
        except ValueError as err:
            raise HTTPException(422, str(err)) from None
        results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        for upload, result in zip(uploads, results, strict=True):
            result.source = upload.name
        return list(results)
