"""The service: `create_app` builds the FastAPI app around an analyzer and a gallery store.

The model, the batch runner and the store are made once, in the app's
lifespan, and reached by the routers through `app.state`; nothing is global.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from swinface.gallery import GalleryError, GallerySearcher, open_store, weights_digest
from swinface.pipeline import FaceAnalyzer
from swinface.serve.auth import KeyRing
from swinface.serve.batching import BatchRunner
from swinface.serve.limits import BodyLimit
from swinface.serve.metrics import Metrics
from swinface.serve.routers import analyze, galleries, health
from swinface.serve.service import FaceService
from swinface.serve.settings import ServeSettings

log = logging.getLogger(__name__)

STATIC = Path(str(files("swinface.serve") / "static"))


def create_app(analyzer: FaceAnalyzer, settings: ServeSettings | None = None) -> FastAPI:
    """The API, the page at `/` and the metrics, around `analyzer` (not changed)."""
    from swinface import __version__

    settings = settings or ServeSettings()
    threshold = settings.verify_threshold
    if threshold is None:
        threshold = analyzer.verify_threshold
    if threshold is None:
        raise ValueError("these weights carry no verification threshold: pass --threshold")
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(settings.store, settings.data_dir)
        digest = weights_digest(analyzer.model)
        searcher = GallerySearcher(
            store, digest, index_dir=settings.data_dir / "indexes", faiss_min=settings.faiss_min
        )
        runner = BatchRunner(
            analyzer,
            max_batch=settings.max_batch,
            max_wait_ms=settings.max_wait_ms,
            max_queue=settings.max_queue,
            on_batch=metrics.on_batch,
        )
        metrics.queue_depth.set_function(lambda: runner.depth)
        runner.start()
        app.state.service = FaceService(
            analyzer, runner, store, searcher, settings, digest, float(threshold)
        )
        log.info("serving weights %s (digest %s)", app.state.service.weights_name, digest[:12])
        try:
            yield
        finally:
            runner.stop()
            searcher.persist_all()
            store.close()

    app = FastAPI(
        title="swinface",
        version=__version__,
        description="Face identity, expression, age and attributes; identity galleries.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.keys = KeyRing(settings.api_keys)
    app.state.metrics = metrics
    app.include_router(analyze.router)
    app.include_router(galleries.router)
    app.include_router(health.router)

    @app.exception_handler(GalleryError)
    async def gallery_error(request: Request, err: GalleryError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=err.status)

    @app.middleware("http")
    async def count(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "other")
        metrics.requests.labels(request.method, path, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - start)
        if response.status_code == 503 and path.startswith("/v1"):
            metrics.rejected.inc()
        return response

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
