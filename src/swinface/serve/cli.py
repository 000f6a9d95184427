"""`swinface serve`: settings from the command line, then uvicorn."""

from __future__ import annotations

import argparse
import logging
import secrets
import sys

log = logging.getLogger(__name__)


def settings_from_args(args: argparse.Namespace):
    from swinface.gallery.index import DEFAULT_FAISS_MIN
    from swinface.serve.settings import ServeSettings, default_data_dir, read_keys

    keys = read_keys(args.keys_file)
    if not keys:
        # No key configured: one for this run only, so that galleries are never open to all.
        key = secrets.token_urlsafe(24)
        keys = (key,)
        print(
            f"no API key configured (SWINFACE_API_KEYS or --keys-file); "
            f"write endpoints accept this one for this run: {key}",
            file=sys.stderr,
        )
    return ServeSettings(
        data_dir=args.data or default_data_dir(),
        store=args.store,
        api_keys=keys,
        protect_reads=args.protect_reads,
        max_body_bytes=int(args.max_body_mb * 2**20),
        # The shared --max-pixels option; a service always keeps a limit (0 is refused).
        max_pixels=args.max_pixels if args.max_pixels is not None else ServeSettings.max_pixels,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        cors_origins=tuple(args.cors_origin),
        faiss_min=args.faiss_min if args.faiss_min is not None else DEFAULT_FAISS_MIN,
        verify_threshold=args.threshold,
    )


def serve(args: argparse.Namespace, analyzer) -> int:
    import uvicorn

    from swinface.serve.app import create_app

    settings = settings_from_args(args)
    app = create_app(analyzer, settings)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: put TLS (a reverse proxy) in front of it", args.host)
    print(f"swinface serve: http://{args.host}:{args.port}/ (docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
