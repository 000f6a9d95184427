"""Run in a fresh process by test_onnx_cache.py: ask the ONNX cache for a model's graph.

Both processes build the same weights, wait for each other, then ask at once.
Each reports how many exports it ran and its outputs on fixed faces.
"""

from __future__ import annotations

import os


def ask_for_graph(home: str, barrier, results) -> None:
    os.environ["SWINFACE_HOME"] = home
    import numpy as np
    import torch

    import swinface.export as export
    from swinface.backends import OnnxBackend
    from swinface.model import create_model

    exports = []
    real = export.export_onnx

    def counted(*args, **kwargs):
        exports.append(os.getpid())
        return real(*args, **kwargs)

    export.export_onnx = counted
    torch.manual_seed(0)
    model = create_model("swinface_nano").eval()
    faces = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 112, 112, 3), np.uint8))
    barrier.wait(timeout=300)
    try:
        backend = OnnxBackend(model)
        out = backend(faces)
        results.put(("ok", len(exports), str(backend.path), out.embedding.numpy()))
    except Exception as err:  # reported to the test, which fails with it
        results.put(("error", len(exports), f"{type(err).__name__}: {err}", None))
