"""Prometheus metrics of one app (its own registry, so several apps in a process do not clash)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "swinface_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "swinface_request_duration_seconds",
            "time from request to response",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "swinface_queue_depth", "photos waiting for the model", registry=self.registry
        )
        self.batch_size = Histogram(
            "swinface_batch_photos",
            "photos per model batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.faces = Counter("swinface_faces_analysed", "faces analysed", registry=self.registry)
        self.rejected = Counter(
            "swinface_rejected_busy",
            "requests refused with 503 (queue full)",
            registry=self.registry,
        )

    def on_batch(self, photos: int, faces: int) -> None:
        self.batch_size.observe(photos)
        self.faces.inc(faces)
