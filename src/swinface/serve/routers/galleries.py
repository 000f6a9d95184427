"""Galleries: create, list, delete; enrol, list and delete subjects; 1:N search."""

from __future__ import annotations

import contextlib
import json

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from swinface.gallery import UnknownSubject
from swinface.gallery.store import check_name
from swinface.serve.auth import require_read_key, require_write_key
from swinface.serve.routers.analyze import parse_fields, service
from swinface.serve.schemas import (
    FILE,
    FILES,
    Candidate,
    EnrolJSON,
    EnrolResponse,
    FaceSearch,
    GalleryCreate,
    GalleryOut,
    SearchJSON,
    SearchResponse,
    SubjectOut,
    form_or_json_body,
)
from swinface.serve.service import read_inputs

router = APIRouter(prefix="/v1/galleries", tags=["galleries"])
READ = [Depends(require_read_key)]
WRITE = [Depends(require_write_key)]


def _gallery_out(info) -> GalleryOut:
    return GalleryOut(**info.__dict__)


def _subject_out(info) -> SubjectOut:
    return SubjectOut(**info.__dict__)


@router.post("", status_code=201, response_model=GalleryOut, dependencies=WRITE)
async def create_gallery(body: GalleryCreate, request: Request) -> GalleryOut:
    """Create an empty gallery (needs an API key)."""
    store = service(request).store
    return _gallery_out(await run_in_threadpool(store.create_gallery, body.name, body.metadata))


@router.get("", response_model=list[GalleryOut], dependencies=READ)
async def list_galleries(request: Request) -> list[GalleryOut]:
    store = service(request).store
    return [_gallery_out(g) for g in await run_in_threadpool(store.list_galleries)]


@router.get("/{gallery}", response_model=GalleryOut, dependencies=READ)
async def get_gallery(gallery: str, request: Request) -> GalleryOut:
    return _gallery_out(await run_in_threadpool(service(request).store.get_gallery, gallery))


@router.delete("/{gallery}", status_code=204, dependencies=WRITE)
async def delete_gallery(gallery: str, request: Request) -> Response:
    """Delete a gallery with all its subjects and embeddings (needs an API key)."""
    svc = service(request)
    await run_in_threadpool(svc.store.delete_gallery, gallery)
    await run_in_threadpool(svc.searcher.forget, gallery)
    return Response(status_code=204)


_ENROL_BODY = form_or_json_body(
    {
        "subject_id": {"type": "string"},
        "name": {"type": "string"},
        "metadata": {"type": "string", "description": "a JSON object"},
        "face_index": {"type": "integer"},
        "images": FILES,
    },
    ["subject_id", "images"],
    EnrolJSON,
)


@router.post(
    "/{gallery}/subjects",
    status_code=201,
    response_model=EnrolResponse,
    dependencies=WRITE,
    openapi_extra=_ENROL_BODY,
)
async def enrol(gallery: str, request: Request) -> EnrolResponse:
    """Enrol a subject from one or more photos: the largest face of each, or `face_index`.

    All photos are analysed before anything is written; one bad photo refuses
    the whole enrolment and nothing is stored.
    """
    svc = service(request)
    inputs = await read_inputs(request, ("images", "image"), svc.settings.max_images)
    fields = dict(inputs.fields)
    if isinstance(fields.get("metadata"), str):
        try:
            fields["metadata"] = json.loads(fields["metadata"])
        except ValueError:
            raise HTTPException(422, "metadata: not a JSON object") from None
    body = parse_fields(EnrolJSON, fields, images=["-"])
    if not inputs.uploads:
        raise HTTPException(422, "no image in the request: send photos in the field 'images'")
    check_name("subject_id", body.subject_id)
    # Fail fast, before the model runs: the gallery must exist and the id be free.
    try:
        await run_in_threadpool(svc.store.get_subject, gallery, body.subject_id)
        raise HTTPException(
            409,
            f"subject {body.subject_id!r} already exists in gallery {gallery!r}; "
            "delete it first to enrol it again",
        )
    except UnknownSubject:
        pass
    results = await svc.analyze(inputs.uploads, aligned=body.aligned)
    embeddings, boxes = [], []
    for result in results:
        if not result.ok:
            raise HTTPException(422, f"{result.error}; nothing was enrolled")
        if not result.faces:
            raise HTTPException(422, f"{result.source}: no face found; nothing was enrolled")
        if body.face_index is None:
            face = result.main_face()
        elif body.face_index < len(result.faces):
            face = result.faces[body.face_index]
        else:
            raise HTTPException(
                422,
                f"{result.source}: face_index {body.face_index} but the photo has "
                f"{len(result.faces)} face(s); nothing was enrolled",
            )
        embeddings.append(face.analysis.embedding)
        boxes.append([round(float(v), 1) for v in face.box])
    subject = await run_in_threadpool(
        lambda: svc.store.add_subject(
            gallery,
            body.subject_id,
            np.stack(embeddings),
            svc.digest,
            name=body.name,
            metadata=body.metadata,
        )
    )
    return EnrolResponse(subject=_subject_out(subject), faces=boxes)


@router.get("/{gallery}/subjects", response_model=list[SubjectOut], dependencies=READ)
async def list_subjects(gallery: str, request: Request) -> list[SubjectOut]:
    store = service(request).store
    return [_subject_out(s) for s in await run_in_threadpool(store.list_subjects, gallery)]


@router.get("/{gallery}/subjects/{subject_id}", response_model=SubjectOut, dependencies=READ)
async def get_subject(gallery: str, subject_id: str, request: Request) -> SubjectOut:
    store = service(request).store
    return _subject_out(await run_in_threadpool(store.get_subject, gallery, subject_id))


@router.delete("/{gallery}/subjects/{subject_id}", status_code=204, dependencies=WRITE)
async def delete_subject(gallery: str, subject_id: str, request: Request) -> Response:
    """Delete a subject: its embeddings and everything stored for it, for good."""
    await run_in_threadpool(service(request).store.delete_subject, gallery, subject_id)
    return Response(status_code=204)


@router.post(
    "/{gallery}/search",
    response_model=SearchResponse,
    dependencies=READ,
    openapi_extra=form_or_json_body(
        {"image": FILE, "top_k": {"type": "integer"}}, ["image"], SearchJSON
    ),
)
async def search(gallery: str, request: Request) -> SearchResponse:
    """For every face of a photo, the top-k subjects; `identity` is null (unknown) below the threshold."""
    svc = service(request)
    inputs = await read_inputs(request, ("image",), 1)
    if len(inputs.uploads) != 1:
        raise HTTPException(422, "search needs one photo, in the field 'image'")
    body = parse_fields(SearchJSON, inputs.fields, image="-")
    top_k = min(body.top_k, svc.settings.max_top_k)
    await run_in_threadpool(svc.store.get_gallery, gallery)  # 404 before the model runs
    [result] = await svc.analyze(inputs.uploads, aligned=body.aligned)
    if not result.ok:
        raise HTTPException(422, result.error)
    faces = result.faces
    if not faces:
        return SearchResponse(gallery=gallery, threshold=svc.threshold, faces=[])
    queries = np.stack([f.analysis.embedding for f in faces])
    matches = await run_in_threadpool(svc.searcher.search, gallery, queries, top_k)
    names = await run_in_threadpool(
        _names, svc, gallery, {m.subject_id for r in matches for m in r}
    )
    out = []
    for face, found in zip(faces, matches, strict=True):
        candidates = [
            Candidate(
                subject_id=m.subject_id,
                name=names.get(m.subject_id, m.subject_id),
                similarity=round(m.similarity, 4),
                same=m.similarity >= svc.threshold,
            )
            for m in found
        ]
        best = candidates[0] if candidates and candidates[0].same else None
        out.append(
            FaceSearch(
                box=[round(float(v), 1) for v in face.box],
                identity=best.subject_id if best else None,
                name=best.name if best else None,
                candidates=candidates,
            )
        )
    return SearchResponse(gallery=gallery, threshold=svc.threshold, faces=out)


def _names(svc, gallery: str, subject_ids: set[str]) -> dict[str, str]:
    names = {}
    for sid in subject_ids:
        with contextlib.suppress(UnknownSubject):  # deleted between the search and now
            names[sid] = svc.store.get_subject(gallery, sid).name
    return names
