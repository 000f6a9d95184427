"""Shared fixtures: the conformance weights, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
# The shared packs (FER2013, UTKFace, CelebA): `$SWINFACE_TEST_DATA`, else `../shared/data`
# beside the checkout. Tests that need them skip, saying how to point at them, when absent.
SHARED_DATA = Path(
    os.environ.get("SWINFACE_TEST_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)
NEEDS_DATA = f"needs the shared face packs at {SHARED_DATA} (set SWINFACE_TEST_DATA)"


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Keep the tests' downloads and exported graphs out of the user's cache."""
    home = tmp_path_factory.mktemp("swinface_home")
    previous = os.environ.get("SWINFACE_HOME")
    os.environ["SWINFACE_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("SWINFACE_HOME", None)
    else:
        os.environ["SWINFACE_HOME"] = previous


@pytest.fixture(scope="session")
def reference_outputs() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "conformance" / "reference_outputs.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def published_checkpoint(tmp_path_factory) -> Path:
    """The deterministic conformance checkpoint, saved in the published layout."""
    from swinface.weights.synthetic import deterministic_checkpoint

    path = tmp_path_factory.mktemp("weights") / "conformance.pt"
    torch.save(deterministic_checkpoint(include_computed=True), path)
    return path


@pytest.fixture(scope="session")
def native_weights(tmp_path_factory, published_checkpoint) -> Path:
    """The same weights in the native safetensors format."""
    from swinface.weights import load_model_from_file, save_native

    path = tmp_path_factory.mktemp("weights") / "conformance.safetensors"
    save_native(
        load_model_from_file(published_checkpoint),
        path,
        name="conformance",
        metadata={"verify_threshold": "0.3"},
    )
    return path


@pytest.fixture(scope="session")
def conformance_model(published_checkpoint):
    from swinface.weights import load_model_from_file

    return load_model_from_file(published_checkpoint)
