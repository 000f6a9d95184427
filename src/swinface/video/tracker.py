"""A small multi-face tracker: box overlap and motion, confirmed by identity embeddings.

The tracker is a state machine over (time, boxes, embeddings); it knows
nothing of decoding or models. Each frame:

1. every live track predicts its box at the frame's time (constant velocity,
   an alpha-beta filter: the steady-state Kalman filter of that model);
2. detections are matched to tracks seen within `max_gap` by IoU with the
   predicted box, a match accepted only if the embeddings agree
   (`match_similarity`); the assignment is optimal (Hungarian, SciPy's
   `linear_sum_assignment` when SciPy is installed, greedy otherwise);
3. what is left is matched by embedding alone (`reid_similarity`): a face that
   left and came back, one that moved too far between analysed frames, or any
   face after a scene cut, where positions say nothing;
4. unmatched detections start new tracks; tracks unseen for longer than
   `max_gap` seconds close (those seen fewer than `min_frames` times are
   dropped as spurious). A track closes only once it has been looked for and
   missed: when analysis is slower than `max_gap` (a loaded machine watching a
   live stream), tracks are kept rather than broken at every frame.

SwinFace's embeddings make step 2's check and step 3 cheap: the same person
scores high cosine similarity across frames, two people low.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

_INVALID = 1e6


@dataclass(frozen=True)
class TrackerConfig:
    """Tracker settings; similarities are cosine similarities of unit embeddings."""

    iou_threshold: float = 0.2  # least IoU with a track's predicted box for a motion match
    match_similarity: float = 0.3  # least similarity that confirms a motion match
    reid_similarity: float = 0.5  # least similarity to link a face by appearance alone
    max_gap: float = 2.0  # seconds a track may go unseen before it closes
    min_frames: int = 2  # tracks seen fewer times are dropped as false detections
    alpha: float = 0.7  # how much a new box corrects the predicted position
    beta: float = 0.3  # how much it corrects the velocity
    bank_size: int = 16  # embeddings a track remembers for matching

    def __post_init__(self) -> None:
        if self.max_gap < 0:
            raise ValueError(f"max_gap must be >= 0 seconds, not {self.max_gap}")
        if self.min_frames < 1:
            raise ValueError(f"min_frames must be at least 1, not {self.min_frames}")
        for name in ("iou_threshold", "alpha", "beta"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], not {getattr(self, name)}")


@dataclass
class TrackState:
    """A track as the tracker sees it: where it is, how it moves, what it looks like."""

    id: int
    centre: np.ndarray  # (2,) x, y
    size: np.ndarray  # (2,) w, h
    velocity: np.ndarray  # (2,) pixels per second
    last_time: float
    first_time: float
    hits: int = 1
    misses: int = 0  # frames since the last hit in which the track was looked for, not found
    bank: deque = field(default_factory=deque)  # recent unit embeddings

    def predict(self, t: float) -> np.ndarray:
        """The box (x1, y1, x2, y2) expected at time `t`."""
        # Extrapolate at most one second: beyond that a constant velocity is a guess.
        dt = min(max(t - self.last_time, 0.0), 1.0)
        c = self.centre + self.velocity * dt
        return np.concatenate([c - self.size / 2, c + self.size / 2])

    def similarity(self, embedding: np.ndarray) -> float:
        """Best cosine similarity between `embedding` and the track's remembered ones."""
        return float(max(float(e @ embedding) for e in self.bank))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (N, 4) with every box of `b` (M, 4), boxes as x1, y1, x2, y2."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def assign(cost: np.ndarray) -> list[tuple[int, int]]:
    """Row-column pairs of least total cost, pairs costing `_INVALID` or more left out."""
    if cost.size == 0:
        return []
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:  # SciPy is optional: a greedy pass is close on the few faces of a frame
        pairs, used_r, used_c = [], set(), set()
        for flat in np.argsort(cost, axis=None, kind="stable"):
            r, c = divmod(int(flat), cost.shape[1])
            if cost[r, c] >= _INVALID:
                break
            if r not in used_r and c not in used_c:
                pairs.append((r, c))
                used_r.add(r)
                used_c.add(c)
        return pairs
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] < _INVALID]


@dataclass
class Update:
    """The tracker's answer for one frame."""

    ids: list[int]  # the track id of each detection, in the detections' order
    closed: list[TrackState]  # tracks that ended (seen at least `min_frames` times)
    dropped: list[TrackState]  # tracks that ended too short to count


class Tracker:
    """Gives each face a track id that follows the person; see the module docstring."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.tracks: dict[int, TrackState] = {}
        self._next_id = 1

    def update(
        self, t: float, boxes: np.ndarray, embeddings: np.ndarray, *, cut: bool = False
    ) -> Update:
        """Match one frame's detections (`boxes` (N, 4), unit `embeddings` (N, D)) at time `t`.

        `cut`: the frame starts a new scene, so positions are not compared.
        """
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        embeddings = np.asarray(embeddings, np.float32)
        embeddings = embeddings.reshape(len(boxes), -1) if len(boxes) else np.zeros((0, 1))
        closed, dropped = self._expire(t)
        tracks = list(self.tracks.values())
        sims = np.array([[tr.similarity(e) for e in embeddings] for tr in tracks]).reshape(
            len(tracks), len(boxes)
        )
        ids: list[int | None] = [None] * len(boxes)
        free_tracks, free_dets = set(range(len(tracks))), set(range(len(boxes)))
        if not cut and tracks and len(boxes):
            predicted = np.stack([tr.predict(t) for tr in tracks])
            iou = iou_matrix(predicted, boxes)
            ok = (iou >= self.config.iou_threshold) & (sims >= self.config.match_similarity)
            cost = np.where(ok, (1 - iou) + (1 - sims), _INVALID)
            for r, c in assign(cost):
                self._observe(tracks[r], t, boxes[c], embeddings[c], reset=False)
                ids[c] = tracks[r].id
                free_tracks.discard(r)
                free_dets.discard(c)
        if free_tracks and free_dets:  # appearance alone: re-identification
            rows, cols = sorted(free_tracks), sorted(free_dets)
            sub = sims[np.ix_(rows, cols)]
            cost = np.where(sub >= self.config.reid_similarity, 1 - sub, _INVALID)
            for r, c in assign(cost):
                track = tracks[rows[r]]
                self._observe(track, t, boxes[cols[c]], embeddings[cols[c]], reset=True)
                ids[cols[c]] = track.id
                free_dets.discard(cols[c])
        matched = {i for i in ids if i is not None}
        for track in tracks:
            if track.id not in matched:
                track.misses += 1
        for c in sorted(free_dets):
            ids[c] = self._start(t, boxes[c], embeddings[c]).id
        return Update([int(i) for i in ids], closed, dropped)

    def close_all(self) -> Update:
        """End every open track (the video ended or the watch stopped)."""
        closed, dropped = self._expire(float("inf"))
        return Update([], closed, dropped)

    def _expire(self, t: float) -> tuple[list[TrackState], list[TrackState]]:
        closed, dropped = [], []
        ended = [
            tid
            for tid, tr in self.tracks.items()
            if t - tr.last_time > self.config.max_gap and (tr.misses > 0 or t == float("inf"))
        ]
        for tid in ended:
            track = self.tracks.pop(tid)
            (closed if track.hits >= self.config.min_frames else dropped).append(track)
        return closed, dropped

    def _start(self, t: float, box: np.ndarray, embedding: np.ndarray) -> TrackState:
        centre, size = (box[:2] + box[2:]) / 2, box[2:] - box[:2]
        track = TrackState(self._next_id, centre, size, np.zeros(2), t, t)
        track.bank = deque([embedding], maxlen=self.config.bank_size)
        self.tracks[track.id] = track
        self._next_id += 1
        return track

    def _observe(
        self, track: TrackState, t: float, box: np.ndarray, embedding: np.ndarray, *, reset: bool
    ) -> None:
        centre, size = (box[:2] + box[2:]) / 2, box[2:] - box[:2]
        dt = t - track.last_time
        if reset or dt <= 0:  # re-identified: the old motion says nothing about the new place
            track.centre, track.velocity = centre, np.zeros(2)
        else:
            predicted = track.centre + track.velocity * min(dt, 1.0)
            residual = centre - predicted
            track.centre = predicted + self.config.alpha * residual
            track.velocity = track.velocity + self.config.beta * residual / dt
        track.size = size if reset else track.size + self.config.alpha * (size - track.size)
        track.last_time = t
        track.hits += 1
        track.misses = 0
        track.bank.append(embedding)
