"""Identity galleries: subjects and their embeddings in SQLite or PostgreSQL, searched 1:N."""

from swinface.gallery.digest import weights_digest
from swinface.gallery.search import GallerySearcher, Match
from swinface.gallery.store import (
    AlreadyExists,
    DigestMismatch,
    GalleryError,
    GalleryInfo,
    GalleryStore,
    SQLiteStore,
    SubjectInfo,
    UnknownGallery,
    UnknownSubject,
    open_store,
)

__all__ = [
    "AlreadyExists",
    "DigestMismatch",
    "GalleryError",
    "GalleryInfo",
    "GallerySearcher",
    "GalleryStore",
    "Match",
    "SQLiteStore",
    "SubjectInfo",
    "UnknownGallery",
    "UnknownSubject",
    "open_store",
    "weights_digest",
]
