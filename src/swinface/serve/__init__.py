"""`swinface serve`: the REST API, the web page and identity galleries, in one process."""

from swinface.serve.settings import ServeSettings, read_keys

__all__ = ["ServeSettings", "create_app", "read_keys"]


def create_app(*args, **kwargs):
    """See `swinface.serve.app.create_app` (imported on use: FastAPI is an optional dependency)."""
    from swinface.serve.app import create_app as _create_app

    return _create_app(*args, **kwargs)
