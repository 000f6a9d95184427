"""GET /healthz (the process answers), /readyz (the model is loaded), /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from swinface.serve.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(request: Request):
    runner = request.app.state.service.runner
    if runner.ready.is_set():
        return Health(status="ready")
    detail = runner.warmup_error or "the model is loading"
    return JSONResponse(Health(status="not ready", detail=detail).model_dump(), status_code=503)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
