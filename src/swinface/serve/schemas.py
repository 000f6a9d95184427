"""Request and response models of the API (pydantic); the OpenAPI docs are generated from them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class DetectorFields(BaseModel):
    aligned: bool = Field(False, description="images are face crops: skip detection")
    score_threshold: float | None = Field(None, ge=0, le=1, description="minimum detection score")
    min_face: float | None = Field(None, ge=0, description="minimum face size in pixels")
    max_faces: int | None = Field(None, ge=1, description="keep at most this many faces per photo")


class AnalyzeJSON(DetectorFields):
    images: list[str] = Field(..., min_length=1, description="base64-encoded image files")
    embeddings: bool = Field(False, description="include each face's 512-d embedding")


class VerifyJSON(BaseModel):
    a: str = Field(..., description="first image, base64")
    b: str = Field(..., description="second image, base64")
    aligned: bool = False


class FaceRecord(BaseModel):
    box: list[float] = Field(..., description="x1, y1, x2, y2 in photo pixels")
    landmarks: list[list[float]] | None = Field(
        None, description="eyes, nose tip, mouth corners (x, y); none for aligned crops"
    )
    detection_score: float
    age: float
    gender: str
    gender_probability: float
    expression: str
    expression_probabilities: dict[str, float]
    attributes: dict[str, float] = Field(..., description="CelebA attribute -> probability")
    embedding: list[float] | None = None


class PhotoRecord(BaseModel):
    source: str
    width: int | None = None
    height: int | None = None
    faces: list[FaceRecord] = []
    error: str | None = None


class ModelInfo(BaseModel):
    weights: str
    digest: str = Field(..., description="SHA-256 of the weights that made the embeddings")
    verify_threshold: float


class AnalyzeResponse(BaseModel):
    model: ModelInfo
    photos: list[PhotoRecord]


class VerifyResponse(BaseModel):
    similarity: float
    threshold: float
    same: bool
    a: FaceRecord
    b: FaceRecord


class GalleryCreate(BaseModel):
    name: str = Field(..., description="letters, digits, '_', '.', '-'; up to 128")
    metadata: dict[str, Any] = {}


class GalleryOut(BaseModel):
    name: str
    created: float
    subjects: int
    embeddings: int
    metadata: dict[str, Any] = {}


class SubjectOut(BaseModel):
    gallery: str
    subject_id: str
    name: str
    created: float
    embeddings: int
    metadata: dict[str, Any] = {}


class EnrolJSON(BaseModel):
    subject_id: str
    name: str = Field("", max_length=256, description="shown in results; default: subject_id")
    metadata: dict[str, Any] = {}
    images: list[str] = Field(..., min_length=1, description="base64-encoded photos")
    face_index: int | None = Field(
        None, ge=0, description="which face of each photo (in detection order); default: largest"
    )
    aligned: bool = False


class EnrolResponse(BaseModel):
    subject: SubjectOut
    faces: list[list[float]] = Field(..., description="the box of the face used in each photo")


class SearchJSON(BaseModel):
    image: str = Field(..., description="base64-encoded photo")
    top_k: int = Field(5, ge=1)
    aligned: bool = False


class Candidate(BaseModel):
    subject_id: str
    name: str
    similarity: float
    same: bool = Field(..., description="similarity at or above the threshold")


class FaceSearch(BaseModel):
    box: list[float]
    identity: str | None = Field(
        ..., description="the best subject when at or above the threshold; null: unknown"
    )
    name: str | None = None
    candidates: list[Candidate]


class SearchResponse(BaseModel):
    gallery: str
    threshold: float
    faces: list[FaceSearch]


class Health(BaseModel):
    status: str
    detail: str | None = None


FILE = {"type": "string", "format": "binary"}
FILES = {"type": "array", "items": FILE}


def form_or_json_body(fields: dict[str, dict], required: list[str], json_model: type) -> dict:
    """`openapi_extra` for a route that reads its body itself: the multipart form's fields
    (files and plain values) or the same request as JSON (`json_model`, base64 images)."""
    return {
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": fields, "required": required}
                },
                "application/json": {"schema": json_model.model_json_schema()},
            },
            "required": True,
        }
    }
