"""The tracker alone, on made-up boxes and embeddings: no video, no model."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from swinface.video.tracker import Tracker, TrackerConfig, assign, iou_matrix


def _unit(person: int, dim: int = 32) -> np.ndarray:
    """One person's embedding: near the `person`-th axis, so two people are far apart."""
    v = np.random.default_rng(person).normal(scale=0.05, size=dim)
    v[person] += 1.0
    return (v / np.linalg.norm(v)).astype(np.float32)


def _box(x: float, y: float = 50, size: float = 40) -> list[float]:
    return [x, y, x + size, y + size]


def test_iou_matrix_on_worked_examples():
    iou = iou_matrix(
        np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    )
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0]])


def test_two_faces_crossing_keep_their_ids():
    a, b = _unit(1), _unit(2)
    tracker = Tracker()
    seen: dict[str, set[int]] = {"a": set(), "b": set()}
    for i in range(30):
        t = i / 10
        xa, xb = 10 + 8 * i, 250 - 8 * i
        boxes, embs, names = [_box(xa), _box(xb)], [a, b], ["a", "b"]
        if abs(xa - xb) < 30:  # a covers b while they overlap
            boxes, embs, names = [_box(xa)], [a], ["a"]
        update = tracker.update(t, np.array(boxes), np.array(embs))
        for name, tid in zip(names, update.ids, strict=True):
            seen[name].add(tid)
    assert len(seen["a"]) == 1 and len(seen["b"]) == 1 and seen["a"] != seen["b"]


def test_overlapping_box_with_another_face_gets_a_new_track():
    tracker = Tracker()
    first = tracker.update(0.0, np.array([_box(100)]), np.array([_unit(1)])).ids[0]
    second = tracker.update(0.1, np.array([_box(100)]), np.array([_unit(2)])).ids[0]
    assert first != second


def test_a_face_coming_back_within_the_gap_is_reidentified_and_closes_after_it():
    tracker = Tracker(TrackerConfig(max_gap=2.0))
    a = _unit(1)
    ids = [tracker.update(i / 10, np.array([_box(20)]), a[None]).ids[0] for i in range(5)]
    assert tracker.update(0.5, np.zeros((0, 4)), np.zeros((0, 32))).closed == []
    back = tracker.update(1.5, np.array([_box(300)]), a[None])  # elsewhere, 1 s later
    assert back.ids[0] == ids[0] and len(set(ids)) == 1
    assert tracker.update(2.0, np.zeros((0, 4)), np.zeros((0, 32))).closed == []
    closed = tracker.update(3.6, np.zeros((0, 4)), np.zeros((0, 32))).closed
    assert [c.id for c in closed] == [ids[0]] and closed[0].hits == 6


def test_a_face_back_after_more_than_the_gap_is_a_new_track():
    tracker = Tracker(TrackerConfig(max_gap=0.5))
    a = _unit(1)
    first = [tracker.update(i / 10, np.array([_box(20)]), a[None]).ids[0] for i in range(3)][0]
    tracker.update(0.3, np.zeros((0, 4)), np.zeros((0, 32)))  # looked for, not found
    update = tracker.update(1.5, np.array([_box(20)]), a[None])
    assert update.ids[0] != first and [c.id for c in update.closed] == [first]


def test_short_tracks_are_dropped_not_closed():
    tracker = Tracker(TrackerConfig(min_frames=3))
    tracker.update(0.0, np.array([_box(20)]), _unit(1)[None])
    tracker.update(0.1, np.array([_box(20)]), _unit(1)[None])
    end = tracker.close_all()
    assert end.closed == [] and len(end.dropped) == 1


def test_after_a_cut_position_means_nothing_and_appearance_decides():
    a, b = _unit(1), _unit(2)
    tracker = Tracker()
    id_a = tracker.update(0.0, np.array([_box(20)]), a[None]).ids[0]
    tracker.update(0.1, np.array([_box(20)]), a[None])
    # New scene: b where a was, a on the other side.
    ids = tracker.update(0.2, np.array([_box(20), _box(300)]), np.stack([b, a]), cut=True).ids
    assert ids[1] == id_a and ids[0] != id_a


def test_greedy_assignment_without_scipy_matches_hungarian_on_clear_cases(monkeypatch):
    cost = np.array([[0.1, 0.9, 1e6], [0.8, 0.2, 0.7], [1e6, 0.6, 0.3]])
    hungarian = assign(cost)
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)  # import fails: greedy path
    assert sorted(assign(cost)) == sorted(hungarian) == [(0, 0), (1, 1), (2, 2)]
    assert assign(np.full((2, 2), 1e6)) == []


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_gap"):
        TrackerConfig(max_gap=-1)
    with pytest.raises(ValueError, match="min_frames"):
        TrackerConfig(min_frames=0)


def test_slow_analysis_does_not_break_tracks():
    """Frames analysed further apart than max_gap: the track was never missed, so it goes on."""
    tracker = Tracker(TrackerConfig(max_gap=1.0))
    a = _unit(1)
    ids = [tracker.update(3.0 * i, np.array([_box(20 + 5 * i)]), a[None]).ids[0] for i in range(4)]
    assert len(set(ids)) == 1
