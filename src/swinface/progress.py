"""Progress on long loops: a bar on a terminal, plain periodic lines in a log.

tqdm redraws its bar with carriage returns, which fill a log file with
hundreds of half-lines. When stderr is not a terminal, `progress` prints a
plain line (``prepare celeba: 1200/5000 images (24%), 38.2/s, ~1m40s left``)
every `interval` seconds and one at the end instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")

__all__ = ["Progress", "progress", "status"]


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Counts work done; shows it as a tqdm bar (terminal) or periodic lines (anything else)."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "item",
        *,
        enabled: bool = True,
        interval: float = 10.0,
        stream: IO[str] | None = None,
        tty: bool | None = None,
        initial: int = 0,
    ) -> None:
        self.stream = stream or sys.stderr
        self.total, self.desc, self.unit = total, desc, unit
        self.count = self.initial = initial  # `initial`: work done before (a resumed run)
        self.interval = interval
        self.enabled = enabled
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self._bar: Any = None
        if enabled and tty:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=initial, desc=desc, unit=unit, file=self.stream, leave=False
            )
        self._start = self._last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if self.enabled and now - self._last >= self.interval:
            self._last = now
            self._line(now)

    def _line(self, now: float) -> None:
        elapsed = max(now - self._start, 1e-9)
        rate = (self.count - self.initial) / elapsed
        text = f"{self.desc}: {self.count}"
        if self.total:
            text += f"/{self.total} {self.unit}s ({100 * self.count / self.total:.0f}%)"
        else:
            text += f" {self.unit}s"
        text += f", {rate:.1f}/s"
        if self.total and rate > 0 and self.count < self.total:
            text += f", ~{_duration((self.total - self.count) / rate)} left"
        elif self.count and self.total and self.count >= self.total:
            text += f", {_duration(elapsed)}"
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and self.count and time.monotonic() - self._start >= self.interval:
            self._line(time.monotonic())  # a last line, only for runs long enough to have had any
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(
    items: Iterable[T],
    desc: str,
    unit: str = "item",
    *,
    total: int | None = None,
    enabled: bool = True,
    interval: float = 10.0,
) -> Iterator[T]:
    """Iterate `items`, reporting progress on stderr (see `Progress`)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, unit, enabled=enabled, interval=interval) as bar:
        for item in items:
            yield item
            bar.update()


def status(message: str) -> None:
    """One line on stderr saying what a slow step is doing (`loading the model ...`)."""
    print(f"swinface: {message}", file=sys.stderr, flush=True)
