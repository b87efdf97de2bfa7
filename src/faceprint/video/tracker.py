"""Follow faces from one detection frame to the next.

Detection runs on a few frames a second, so a face can move a good part of its width between
two looks: motion alone (box overlap, even with a prediction) loses or swaps faces at that
rate. The tracker therefore uses both:

* box overlap (IoU) between each track's predicted box (constant velocity from its last two
  sightings) and the detections: the usual, free case;
* face vectors (plain SFace, cosine similarity), asked for lazily through a callback and only
  when needed: for a new face (it may be a lost track coming back), where boxes are ambiguous
  (two tracks or two faces overlap), and once every ``embed_interval`` seconds on a followed
  track, to check that the face under the box is still the same person (if not, the track
  splits: a person walking in front of another does not inherit that person's track).

Tracks that go unseen are followed by position for ``max_coast`` seconds, then can only be
taken up again by their face vector, until ``reid_window`` seconds have passed: then they are
finished and handed back to the caller. Times are milliseconds of video; boxes are
``(x, y, width, height)`` in pixels of the original frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

VectorsOf = Callable[[list[int]], np.ndarray]
"""Unit face vectors (N x D) of the detections at the given indexes."""


@dataclass(frozen=True)
class TrackerSettings:
    iou_min: float = 0.2
    """A track's predicted box and a detection overlapping this much (IoU) may be one face."""
    iou_near: float = 0.05
    """Overlapping this much, they are near: where a track is near two faces or a face near two
    tracks (people crossing), face vectors take part in the assignment."""
    max_coast: float = 1.0
    """Seconds a track may go unseen and still be followed by position."""
    reid_window: float = 5.0
    """Seconds an unseen track may still be taken up again by its face vector."""
    embed_interval: float = 1.0
    """Seconds between the face vectors checked on a followed track."""
    same_face: float = 0.5
    """Cosine similarity from which a new face is taken for an unseen track coming back."""
    other_face: float = 0.3
    """Cosine similarity below which the face under a track's box is someone else."""
    appearance_weight: float = 0.5
    """Weight of face similarity against box overlap when boxes are ambiguous."""
    min_hits: int = 2
    """Sightings before a track counts (one-frame detections are mostly false)."""
    keep_vectors: int = 8
    """Face vectors kept per track (the first and the latest ones)."""


@dataclass
class Track:
    id: int
    first_ms: int
    last_ms: int
    box: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float64))
    """Centre velocity, pixels per millisecond."""
    hits: int = 1
    vectors: list[np.ndarray] = field(default_factory=list)
    last_vector_ms: int = -(10**12)
    data: dict = field(default_factory=dict)
    """What the caller keeps with the track (observations, best views)."""

    def predicted(self, now_ms: int, horizon_ms: float) -> np.ndarray:
        dt = min(max(now_ms - self.last_ms, 0), horizon_ms)
        box = self.box.astype(np.float64).copy()
        box[:2] += self.velocity * dt
        return box

    def similarity(self, vector: np.ndarray) -> float:
        """Best cosine similarity of ``vector`` to this track's vectors (-1 with none)."""
        if not self.vectors:
            return -1.0
        return float(np.max(np.stack(self.vectors) @ vector))

    def add_vector(self, vector: np.ndarray, now_ms: int, keep: int) -> None:
        self.vectors.append(vector)
        if len(self.vectors) > keep:
            del self.vectors[1]  # keep the first (entry) view and the latest ones
        self.last_vector_ms = now_ms

    def update(self, box: np.ndarray, now_ms: int) -> None:
        dt = now_ms - self.last_ms
        if dt > 0:
            moved = (_centre(box) - _centre(self.box)) / dt
            self.velocity = moved if self.hits == 1 else 0.5 * self.velocity + 0.5 * moved
        self.box = box.astype(np.float64)
        self.last_ms = now_ms
        self.hits += 1


class Tracker:
    """Assigns each detection frame's faces to tracks; see the module's docstring."""

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self.tracks: list[Track] = []
        self._next_id = 0

    def step(self, now_ms: int, boxes: np.ndarray, vectors_of: VectorsOf, cut: bool = False
             ) -> list[tuple[Track, int]]:
        """Assign the detections ``boxes`` (N x 4) seen at ``now_ms``; returns (track, detection
        index) for every detection (new tracks included). After a shot ``cut`` no face is
        followed by position."""
        vectors = _LazyVectors(vectors_of, len(boxes))
        s = self.settings
        live = [] if cut else [t for t in self.tracks if now_ms - t.last_ms <= s.max_coast * 1000]
        pairs = self._by_position(live, now_ms, boxes, vectors)
        pairs = [p for p in pairs if self._still_same(p[0], p[1], now_ms, vectors)]
        taken = {t.id for t, _ in pairs}
        placed = {j for _, j in pairs}
        for j in sorted(set(range(len(boxes))) - placed, key=lambda k: -boxes[k, 2]):
            track = self._by_face(now_ms, vectors.get(j), taken)
            if track is None:
                track = self._new_track(now_ms, boxes[j], vectors.get(j))
            else:
                track.update(boxes[j], now_ms)
                track.add_vector(vectors.get(j), now_ms, s.keep_vectors)
            taken.add(track.id)
            pairs.append((track, j))
        for track, j in pairs:
            if track.last_ms != now_ms:
                track.update(boxes[j], now_ms)
        return pairs

    def finished(self, now_ms: int) -> list[Track]:
        """Tracks unseen for longer than the re-identification window (removed from the tracker)."""
        limit = self.settings.reid_window * 1000
        done = [t for t in self.tracks if now_ms - t.last_ms > limit]
        if done:
            self.tracks = [t for t in self.tracks if now_ms - t.last_ms <= limit]
        return done

    def close(self) -> list[Track]:
        """Every remaining track (the video ended)."""
        done, self.tracks = self.tracks, []
        return done

    def _by_position(self, live: list[Track], now_ms: int, boxes: np.ndarray,
                     vectors: _LazyVectors) -> list[tuple[Track, int]]:
        if not live or not len(boxes):
            return []
        s = self.settings
        predicted = np.stack([t.predicted(now_ms, s.max_coast * 1000) for t in live])
        score = iou_matrix(predicted, boxes)
        allowed = score >= s.iou_min
        for j in _ambiguous(score >= s.iou_near):
            vector = vectors.get(j)
            for i, track in enumerate(live):
                if allowed[i, j] and track.vectors:
                    sim = track.similarity(vector)
                    allowed[i, j] = sim >= s.other_face
                    score[i, j] += s.appearance_weight * sim
        return [(live[i], j) for i, j in _greedy(score, allowed)]

    def _still_same(self, track: Track, j: int, now_ms: int, vectors: _LazyVectors) -> bool:
        """Check the face under a followed track's box now and then; False: someone else."""
        s = self.settings
        if now_ms - track.last_vector_ms < s.embed_interval * 1000 and not vectors.has(j):
            return True
        vector = vectors.get(j)
        if track.vectors and track.similarity(vector) < s.other_face:
            return False
        track.add_vector(vector, now_ms, s.keep_vectors)
        return True

    def _by_face(self, now_ms: int, vector: np.ndarray, taken: set[int]) -> Track | None:
        """The unseen track (within the re-identification window) most like ``vector``."""
        s = self.settings
        best, best_sim = None, s.same_face
        for track in self.tracks:
            if track.id in taken or track.last_ms == now_ms or now_ms - track.last_ms > s.reid_window * 1000:
                continue
            sim = track.similarity(vector)
            if sim >= best_sim:
                best, best_sim = track, sim
        return best

    def _new_track(self, now_ms: int, box: np.ndarray, vector: np.ndarray) -> Track:
        track = Track(id=self._next_id, first_ms=now_ms, last_ms=now_ms, box=box.astype(np.float64))
        track.add_vector(vector, now_ms, self.settings.keep_vectors)
        self._next_id += 1
        self.tracks.append(track)
        return track


class _LazyVectors:
    """Face vectors of one frame's detections, computed on first use."""

    def __init__(self, vectors_of: VectorsOf, count: int) -> None:
        self._of = vectors_of
        self._known: dict[int, np.ndarray] = {}
        self.count = count

    def has(self, j: int) -> bool:
        return j in self._known

    def get(self, j: int) -> np.ndarray:
        if j not in self._known:
            self._known[j] = np.asarray(self._of([j])[0], np.float32)
        return self._known[j]


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([box[0] + box[2] / 2, box[1] + box[3] / 2], np.float64)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (N x 4, x y w h) with every box of ``b`` (M x 4): N x M."""
    a = np.asarray(a, np.float64)[:, None, :]
    b = np.asarray(b, np.float64)[None, :, :]
    w = np.clip(np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return inter / np.maximum(union, 1e-9)


def _ambiguous(near: np.ndarray) -> list[int]:
    """Detections whose assignment boxes alone cannot settle: a detection near two tracks, or
    near a track that is near another detection."""
    crowded_tracks = near.sum(1) > 1
    crowded = (near.sum(0) > 1) | (near & crowded_tracks[:, None]).any(0)
    return [int(j) for j in np.nonzero(crowded)[0]]


def _greedy(score: np.ndarray, allowed: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (row, column) by decreasing score, each row and column used once."""
    order = np.argsort(-np.where(allowed, score, -np.inf), axis=None, kind="stable")
    rows, cols, out = set(), set(), []
    for flat in order:
        i, j = divmod(int(flat), score.shape[1])
        if not allowed[i, j]:
            break
        if i not in rows and j not in cols:
            rows.add(i)
            cols.add(j)
            out.append((i, j))
    return out
