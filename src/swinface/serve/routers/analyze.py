"""POST /v1/analyze and /v1/verify."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import ValidationError

from swinface.pipeline import Face, PhotoResult, cosine_similarity
from swinface.serve.auth import require_read_key
from swinface.serve.batching import DetectorOptions
from swinface.serve.schemas import (
    FILE,
    FILES,
    AnalyzeJSON,
    AnalyzeResponse,
    DetectorFields,
    FaceRecord,
    ModelInfo,
    PhotoRecord,
    VerifyJSON,
    VerifyResponse,
    form_or_json_body,
)
from swinface.serve.service import FaceService, read_inputs

router = APIRouter(prefix="/v1", tags=["analysis"], dependencies=[Depends(require_read_key)])


def service(request: Request) -> FaceService:
    return request.app.state.service


def parse_fields(model: type, fields: dict, **extra):
    """Form or JSON fields into a typed model; 422 naming the field that is wrong."""
    values = {k: v for k, v in fields.items() if v not in ("", None)}
    try:
        return model.model_validate({**values, **extra})
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in err.errors()
        )
        raise HTTPException(422, problems) from None


def detector_options(fields: DetectorFields) -> DetectorOptions:
    return DetectorOptions(fields.score_threshold, fields.min_face, fields.max_faces)


def face_record(face: Face, embeddings: bool) -> FaceRecord:
    # `to_dict` writes strict JSON values: an aligned crop's landmarks are None.
    return FaceRecord(**face.to_dict(include_embedding=embeddings))


def photo_record(result: PhotoResult, embeddings: bool) -> PhotoRecord:
    if not result.ok:
        return PhotoRecord(source=result.source, error=result.error)
    return PhotoRecord(
        source=result.source,
        width=result.width,
        height=result.height,
        faces=[face_record(f, embeddings) for f in result.faces],
    )


def model_info(svc: FaceService) -> ModelInfo:
    return ModelInfo(weights=svc.weights_name, digest=svc.digest, verify_threshold=svc.threshold)


_IMAGE_BODY = form_or_json_body(
    {
        "images": FILES,
        "aligned": {"type": "boolean"},
        "embeddings": {"type": "boolean"},
        "score_threshold": {"type": "number"},
        "min_face": {"type": "number"},
        "max_faces": {"type": "integer"},
    },
    ["images"],
    AnalyzeJSON,
)


@router.post("/analyze", response_model=AnalyzeResponse, openapi_extra=_IMAGE_BODY)
async def analyze(request: Request) -> AnalyzeResponse:
    """Every face of one or more photos: box, landmarks, age, gender, expression, attributes.

    Send image files as multipart (field `images`, repeatable) or JSON with
    base64 strings in `images`. A photo that cannot be read gets its error in
    its record; the others are analysed.
    """
    svc = service(request)
    inputs = await read_inputs(request, ("images", "image"), svc.settings.max_images)
    if not inputs.uploads:
        raise HTTPException(422, "no image in the request: send files in the field 'images'")
    opts = parse_fields(AnalyzeJSON, inputs.fields, images=["-"])
    results = await svc.analyze(
        inputs.uploads, aligned=opts.aligned, options=detector_options(opts)
    )
    return AnalyzeResponse(
        model=model_info(svc), photos=[photo_record(r, opts.embeddings) for r in results]
    )


def main_face(result: PhotoResult, what: str) -> Face:
    if not result.ok:
        raise HTTPException(422, result.error)
    face = result.main_face()
    if face is None:
        raise HTTPException(422, f"{what} ({result.source}): no face found")
    return face


@router.post(
    "/verify",
    response_model=VerifyResponse,
    openapi_extra=form_or_json_body(
        {"a": FILE, "b": FILE, "aligned": {"type": "boolean"}}, ["a", "b"], VerifyJSON
    ),
)
async def verify(request: Request) -> VerifyResponse:
    """Are the main (largest) faces of photos `a` and `b` the same person, at the weights' threshold?"""
    svc = service(request)
    inputs = await read_inputs(request, ("a", "b"), 2)
    by_field = {u.field: u for u in inputs.uploads}
    if len(inputs.uploads) != 2 or set(by_field) != {"a", "b"}:
        raise HTTPException(422, "verify needs two images, one in field 'a' and one in field 'b'")
    opts = parse_fields(DetectorFields, inputs.fields)
    ra, rb = await svc.analyze([by_field["a"], by_field["b"]], aligned=opts.aligned)
    fa, fb = main_face(ra, "image a"), main_face(rb, "image b")
    similarity = cosine_similarity(fa.analysis.embedding, fb.analysis.embedding)
    return VerifyResponse(
        similarity=round(similarity, 4),
        threshold=svc.threshold,
        same=similarity >= svc.threshold,
        a=face_record(fa, False),
        b=face_record(fb, False),
    )
