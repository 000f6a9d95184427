"""API keys: kept as SHA-256 hashes, checked in constant time, required by write endpoints."""

from __future__ import annotations

import hashlib
import hmac
import re

from fastapi import HTTPException, Request

_HASHED = re.compile(r"^sha256:([0-9a-fA-F]{64})$")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyRing:
    """The accepted keys, as hashes only; a key given as `sha256:<hex>` is taken as its hash."""

    def __init__(self, keys: tuple[str, ...] | list[str]) -> None:
        self._hashes: list[bytes] = []
        for key in keys:
            m = _HASHED.match(key)
            self._hashes.append((m.group(1).lower() if m else hash_key(key)).encode())

    def __len__(self) -> int:
        return len(self._hashes)

    def accepts(self, key: str) -> bool:
        """Whether `key` is one of ours; every stored hash is compared, in constant time each."""
        presented = hash_key(key).encode()
        found = False
        for stored in self._hashes:
            found |= hmac.compare_digest(presented, stored)
        return found


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


def check_key(request: Request) -> None:
    keys: KeyRing = request.app.state.keys
    key = presented_key(request)
    if key is None:
        raise HTTPException(
            401,
            "this endpoint needs an API key: send it in the X-API-Key header "
            "(or as 'Authorization: Bearer <key>')",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if len(keys) == 0:
        raise HTTPException(
            403,
            "this service has no API keys configured (SWINFACE_API_KEYS or --keys-file), "
            "so nothing that needs one is allowed",
        )
    if not keys.accepts(key):
        raise HTTPException(403, "the API key is not valid")


def require_write_key(request: Request) -> None:
    """Dependency of the endpoints that change galleries."""
    check_key(request)


def require_read_key(request: Request) -> None:
    """Dependency of the read endpoints: a key only when the service protects reads."""
    if request.app.state.settings.protect_reads:
        check_key(request)
