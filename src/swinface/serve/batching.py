"""Dynamic batching: photos from many requests run through the model together.

One `BatchRunner` (one thread) per device takes what is waiting, up to
`max_batch` photos, waiting at most `max_wait_ms` for a batch to fill, and
runs them through `FaceAnalyzer.analyze_many`, which shares model batches
across photos. The queue is bounded: when it is full a request is refused at
once (`QueueFull`, a 503 with Retry-After) rather than waiting without end.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from swinface.pipeline import FaceAnalyzer

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The batch queue has no room; the client should retry later."""


@dataclass(frozen=True)
class DetectorOptions:
    score_threshold: float | None = None
    min_face: float | None = None
    max_faces: int | None = None


@dataclass(frozen=True)
class _Key:
    aligned: bool
    options: DetectorOptions


@dataclass
class _Item:
    image: np.ndarray
    key: _Key
    future: Future


class BatchRunner:
    """A bounded queue of photos and the thread that analyses them in batches."""

    def __init__(
        self,
        analyzer: FaceAnalyzer,
        *,
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        max_queue: int = 64,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self.analyzer = analyzer
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.on_batch = on_batch  # (photos, faces) after every batch, for metrics
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._analyzers: dict[_Key, FaceAnalyzer] = {}
        self.ready = threading.Event()
        self.warmup_error: str | None = None

    # -- per-request analyzers sharing one model runner and detector session

    def _analyzer_for(self, key: _Key) -> FaceAnalyzer:
        found = self._analyzers.get(key)
        if found is not None:
            return found
        variant = copy.copy(self.analyzer)  # shares the model runner; the original is untouched
        variant.aligned = key.aligned
        if (
            not key.aligned
            and self.analyzer.detector is not None
            and key.options != DetectorOptions()
        ):
            detector = copy.copy(self.analyzer.detector)  # shares the loaded ONNX session
            o = key.options
            if o.score_threshold is not None:
                detector.score_threshold = float(o.score_threshold)
            if o.min_face is not None:
                detector.min_face_size = float(o.min_face)
            if o.max_faces is not None:
                detector.max_faces = int(o.max_faces)
            variant.detector = detector
        if len(self._analyzers) < 64:  # a bounded cache of option sets
            self._analyzers[key] = variant
        return variant

    def has_room(self, photos: int) -> bool:
        """Whether `photos` more would fit in the queue now (`submit` decides for sure)."""
        return len(self._queue) + photos <= self.max_queue

    @property
    def depth(self) -> int:
        return len(self._queue)

    def submit(
        self,
        images: list[np.ndarray],
        *,
        aligned: bool = False,
        options: DetectorOptions | None = None,
    ) -> list[Future]:
        """Queue photos (all or none); their futures give `PhotoResult`s. Raises `QueueFull`."""
        if not aligned and self.analyzer.detector is None:
            raise ValueError("this service runs on aligned faces only: pass aligned=true")
        key = _Key(aligned, options or DetectorOptions())
        items = [_Item(image, key, Future()) for image in images]
        with self._cond:
            if self._stopping:
                raise QueueFull("the service is shutting down")
            if len(self._queue) + len(items) > self.max_queue:
                raise QueueFull(
                    f"the queue is full ({len(self._queue)} of {self.max_queue} photos waiting)"
                )
            self._queue.extend(items)
            self._cond.notify()
        return [item.future for item in items]

    # -- the runner thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="swinface-batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _warm_up(self) -> None:
        """Load the detector, export or compile the model, before saying ready."""
        try:
            blank = np.full((64, 64, 3), 128, np.uint8)
            self._analyzer_for(_Key(self.analyzer.detector is None, DetectorOptions()))
            list(self.analyzer.analyze_many([blank]))
            crops = np.zeros((1, 112, 112, 3), np.uint8)
            self.analyzer.runner.analyze(crops)
        except Exception as err:  # reported by /readyz
            log.exception("warm-up failed")
            self.warmup_error = str(err)
            return
        self.ready.set()

    def _take(self) -> list[_Item]:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return []
            deadline = time.monotonic() + self.max_wait
            while len(self._queue) < self.max_batch and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            n = min(self.max_batch, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _loop(self) -> None:
        self._warm_up()
        while True:
            batch = self._take()
            if not batch:
                return
            groups: dict[_Key, list[_Item]] = {}
            for item in batch:
                groups.setdefault(item.key, []).append(item)
            done: list[tuple[_Item, object]] = []
            for key, items in groups.items():
                try:
                    results = list(self._analyzer_for(key).analyze_many([i.image for i in items]))
                except Exception as err:  # the requests get the error; the runner goes on
                    log.exception("batch failed")
                    for item in items:
                        item.future.set_exception(err)
                    continue
                done += zip(items, results, strict=True)
            if self.on_batch is not None:  # counted before anyone is answered
                self.on_batch(len(batch), sum(len(r.faces) for _, r in done))
            for item, result in done:
                item.future.set_result(result)
