"""Which weights made an embedding: a digest of the model's parameters.

Embeddings from different weights live in different spaces; the gallery
stores this digest with each one and refuses to compare across digests.
"""

from __future__ import annotations

import hashlib

import numpy as np


def weights_digest(model) -> str:
    """SHA-256 over the model's state (names, shapes, float32 values), in name order.

    It depends on the weights only, not on the file format they came in: the
    same weights as `.pt` or `.safetensors`, or half-stored, give one digest
    when their float32 values agree. Computed once at service start.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if not tensor.is_floating_point():
            continue
        values = tensor.detach().to("cpu").float().contiguous().numpy()
        h.update(name.encode())
        h.update(np.asarray(values.shape, np.int64).tobytes())
        h.update(values.tobytes())
    return h.hexdigest()
