"""Who a tracked person is: decided once per track, from its best views, against a collection.

A track keeps its few best views (crops of the full-resolution frame, ranked by face size,
pose, sharpness and detector confidence) while it runs. When it ends, the views are embedded
with the profile and the quality-weighted mean vector of the views that agree is searched in the
collection.

The request's threshold alone is not enough to name a track's person: similarity 80 is a
false-match rate of 1e-4 per pair of faces, so against a collection of 2,500 people about one
stranger in five has a lookalike at 80 or more (LFW, either profile), and a track names its
person for as long as it lasts. So the similarity a track must reach grows with the collection:
it is the similarity whose false-match rate, times the number of faces, is ``stranger_rate``
(the share of people who are not in the collection that may be named all the same), by the
profile's calibration; never less than the request's threshold, at most 99. For 2,500 faces that
is about 92, for 100 faces about 78 (so the threshold, 80, rules).

Below that bar, a track may still be named by its *lead* (``MatchRules.lead``; off by default
and for stored video, where it named a stranger of the benchmark's evaluation set): a stranger's
best match is one lookalike among many faces that score nearly as well, a person's own face
stands out. The track is named when its best match's score leads the best face of another
person (another UserId; a face with the same ExternalImageId that looks alike is the same person)
by ``lead`` steps of the calibration between similarity 80 and 90, and the match reaches the
looser bar of ``lead_stranger_rate``. Matches are reported with every face of that person at or
above the request's threshold.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from faceprint.faces import MeasuredFace
from faceprint.imaging import DecodedImage
from faceprint.models.detector import Detections, raw_score
from faceprint.models.profiles import FMR_LEVELS
from faceprint.store import FaceRow
from faceprint.types import Face, FaceMatch
from faceprint.video.tracker import Track

if TYPE_CHECKING:
    from faceprint.service import Faceprint


@dataclass(frozen=True)
class MatchRules:
    best_views: int = 3
    """Views of a track that decide its identity."""
    view_gap_ms: int = 400
    """Best views are at least this far apart in time (so they differ)."""
    stranger_rate: float = 0.015
    """The share of strangers (people not in the collection) that may be matched: sets the
    similarity a track needs from the collection's size (see the module's docstring)."""
    lead: float | None = None
    """A track whose best match is below that similarity is matched all the same when its score
    leads the best face of another person by this much, in steps of the profile's calibration from
    similarity 80 to 90 (a tenfold false-match rate each: 2.4 is a match about 250 times likelier
    than the runner-up), and when it reaches ``lead_stranger_rate``'s similarity (None: off)."""
    lead_stranger_rate: float = 0.05
    """The looser share of strangers that sets the similarity a track matched by its lead needs."""
    view_agreement: float = 80.0
    """Two views of a track are of one person when this similar; a track's identity is decided
    from the largest group of views that agree (more than half of them): a view of someone else
    (a face that crossed the track) is left out, and a track whose views disagree is not matched."""
    candidates: int = 20
    """Collection faces looked at per decision (the match and its rivals)."""
    same_person: float = 80.0
    """Two collection faces this similar to each other are taken as the same person (not rivals)."""
    first_views: int | None = None
    """Embed only this many of the best views first (None: all ``best_views`` at once); the rest
    are embedded, and the decision taken from all of them, only when the first leave it open: no
    majority of them agrees, or their best match is within ``open_below`` similarity points under
    the bar or ``open_above`` over it. More views then cost only for the tracks they can change."""
    open_below: float = 6.0
    """See ``first_views``."""
    open_above: float = 3.0
    """See ``first_views``."""


@dataclass
class View:
    quality: float
    timestamp_ms: int
    image: DecodedImage
    face: Detections


def view_quality(face: MeasuredFace, width_px: float) -> float:
    """How good a view of a face is for recognition, 0-1: size (up to 80 px wide in the original
    frame), frontal pose, sharpness and detector confidence."""
    size = min(width_px / 80.0, 1.0)
    yaw, pitch = math.radians(min(abs(face.pose.yaw), 90.0)), math.radians(min(abs(face.pose.pitch), 90.0))
    pose = (math.cos(yaw) * math.cos(pitch)) ** 2
    sharp = 0.5 + 0.5 * min(face.quality.sharpness / 60.0, 1.0)
    return size * pose * sharp * raw_score(face.confidence)  # tuned on the raw score, as before calibration


@dataclass
class BestViews:
    """The best few views of one track."""

    size: int
    gap_ms: int
    views: list[View] = field(default_factory=list)

    def wants(self, quality: float, timestamp_ms: int) -> bool:
        """Whether a view of this quality would be kept (so its crop is worth making)."""
        near = [v for v in self.views if abs(v.timestamp_ms - timestamp_ms) < self.gap_ms]
        if near:
            return quality > max(v.quality for v in near)
        return len(self.views) < self.size or quality > min(v.quality for v in self.views)

    def add(self, view: View) -> None:
        self.views = [v for v in self.views if abs(v.timestamp_ms - view.timestamp_ms) >= self.gap_ms]
        self.views.append(view)
        self.views.sort(key=lambda v: -v.quality)
        del self.views[self.size:]


class Identifier:
    """Decides a track's identity in one collection (see the module's docstring)."""

    def __init__(self, fp: Faceprint, collection_id: str, threshold: float, rules: MatchRules) -> None:
        self.fp = fp
        self.collection_id = collection_id
        self.threshold = threshold
        self.rules = rules
        self.sure = threshold
        """The similarity a track must reach to be matched."""
        self.loose = threshold
        """The similarity a track matched by its lead must reach (see :class:`MatchRules`)."""
        self.extended = 0
        """Tracks whose first views left the decision open, so that the rest were embedded."""
        self.recount()

    def recount(self) -> int:
        """The collection's face count, read again (it may have changed), and ``sure`` from it."""
        faces = self.fp.collections.describe_collection(self.collection_id).face_count
        self.sure = max(self.threshold, sure_similarity(faces, self.rules.stranger_rate))
        self.loose = max(self.threshold, sure_similarity(faces, self.rules.lead_stranger_rate))
        return faces

    def vectors(self, views: list[View]) -> np.ndarray:
        return np.concatenate([self.fp.engine.embed(v.image, v.face) for v in views])

    def template_in_steps(self, views: list[View], prepare: Callable[[View], View]) -> np.ndarray | None:
        """:meth:`template` of ``views`` (best first), each passed through ``prepare`` (landmark
        refinement) before it is embedded; with ``rules.first_views``, of the first views alone when
        they settle the decision (see :class:`MatchRules`)."""
        first = self.rules.first_views or len(views)
        done = [prepare(v) for v in views[:first]]
        if not done:
            return None
        vectors = self.vectors(done)
        template = self.template_of(vectors, _qualities(done))
        if len(views) > first and not self.settled(template):
            self.extended += 1
            done += [prepare(v) for v in views[first:]]
            vectors = np.concatenate([vectors, self.vectors(done[first:])])
            template = self.template_of(vectors, _qualities(done))
        return template

    def settled(self, template: np.ndarray | None) -> bool:
        """Whether the best match of ``template`` (from a track's first views) is far enough from
        the bar that more views would not change the decision (see ``MatchRules.first_views``)."""
        if template is None:
            return False
        hits = self.fp.collections.search(self.collection_id, template, 1, 0.0)
        top = hits[0].similarity if hits else 0.0
        return not self.sure - self.rules.open_below <= top < self.sure + self.rules.open_above

    def template(self, views: list[View]) -> np.ndarray | None:
        """The mean vector of the agreeing views, weighted by their quality (None: no views, or no
        majority that agrees)."""
        if not views:
            return None
        return self.template_of(self.vectors(views), _qualities(views))

    def template_of(self, vectors: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray | None:
        """The mean of the agreeing vectors among ``vectors`` (one a view; see ``template``),
        weighted by ``weights`` when given."""
        if not len(vectors):
            return None
        group = agreeing(np.asarray(self.fp.profile.similarity(vectors @ vectors.T)) >= self.rules.view_agreement)
        if len(group) * 2 <= len(vectors):
            return None
        w = np.ones(len(group), np.float32) if weights is None else np.maximum(weights[group], 1e-6)
        return _unit((vectors[group] * w[:, None]).sum(0))

    def match(self, template: np.ndarray) -> list[FaceMatch]:
        """The collection faces of the template's person if the match is sure (see the module)."""
        loose = self.sure if self.rules.lead is None else min(self.sure, self.loose)
        hits = self.fp.collections.search(self.collection_id, template, self.rules.candidates,
                                          0.0 if self.rules.lead is not None else loose)
        if not hits or hits[0].similarity < loose:
            return []
        rows = self._rows(hits)
        if hits[0].similarity < self.sure and not self._leads(hits, rows, self.rules.lead or 0.0):
            return []
        same = self._same_person(hits, rows)
        return [h for h in hits if h.face.face_id in same and h.similarity >= self.threshold]

    def _leads(self, hits: list[FaceMatch], rows: dict[str, FaceRow], lead: float) -> bool:
        """Whether the top hit leads the best face of another person by ``rules.lead`` (see
        :class:`MatchRules`). Another person: not the top face's UserId, and, unless both share an
        ExternalImageId and look alike, any other face (a group photo's faces share the id)."""
        top = hits[0].face
        rival = next((h for h in hits[1:] if not self._one_person(top, h.face, rows)), None)
        if rival is None:
            return True
        profile = self.fp.profile
        step = profile.score_for(90.0) - profile.score_for(80.0)
        return (profile.score_for(hits[0].similarity) - profile.score_for(rival.similarity)) >= lead * step

    def _one_person(self, top: Face, other: Face, rows: dict[str, FaceRow]) -> bool:
        if top.user_id and other.user_id == top.user_id:
            return True
        if top.external_image_id is None or other.external_image_id != top.external_image_id:
            return False
        return self._alike(top.face_id, other.face_id, rows)

    def _alike(self, a: str, b: str, rows: dict[str, FaceRow]) -> bool:
        if a not in rows or b not in rows:
            return False
        return self.fp.profile.similarity(float(rows[a].vector @ rows[b].vector)) >= self.rules.same_person

    def confirm(self, template: np.ndarray, face_id: str) -> list[FaceMatch]:
        """The collection faces of ``face_id``'s person if the template's best match is that face
        at the request's threshold (for a track that continues a person already identified)."""
        hits = self.fp.collections.search(self.collection_id, template, self.rules.candidates, self.threshold)
        same = self._same_person(hits, self._rows(hits)) if hits else set()
        return [h for h in hits if h.face.face_id in same] if face_id in same else []

    def _rows(self, hits: list[FaceMatch]) -> dict[str, FaceRow]:
        return {r.face_id: r for r in self.fp.store.get_faces(self.collection_id, [h.face.face_id for h in hits])}

    def _same_person(self, hits: list[FaceMatch], rows: dict[str, FaceRow]) -> set[str]:
        """The hits that are the top hit's person: the same UserId, or faces as alike as
        ``same_person`` similarity (ExternalImageId says nothing: a group photo's faces share it)."""
        top = hits[0].face
        same = {top.face_id}
        for hit in hits[1:]:
            if (top.user_id and hit.face.user_id == top.user_id) or self._alike(top.face_id, hit.face.face_id, rows):
                same.add(hit.face.face_id)
        return same


def sure_similarity(faces: int, stranger_rate: float) -> float:
    """The similarity at which a stranger searched against ``faces`` faces is matched with
    probability ``stranger_rate``: the profile calibration's knots (similarity 50 at a false-match
    rate of 1e-1 per pair, ... 99 at 1e-6), log-linear between them, 99 at most."""
    rate = stranger_rate / max(faces, 1)
    rates = np.log10([r for r, _ in FMR_LEVELS][::-1])
    levels = [s for _, s in FMR_LEVELS][::-1]
    return float(np.interp(math.log10(rate), rates, levels))


def agreeing(agree: np.ndarray) -> list[int]:
    """The largest set of items that all agree with each other (``agree``: a symmetric boolean
    matrix), the earliest such set on a tie; brute force, for the few views of a track."""
    n = len(agree)
    for size in range(n, 0, -1):
        for group in itertools.combinations(range(n), size):
            if all(agree[i, j] for i, j in itertools.combinations(group, 2)):
                return list(group)
    return []


def _qualities(views: list[View]) -> np.ndarray:
    return np.array([v.quality for v in views], np.float32)


def _unit(vector: np.ndarray) -> np.ndarray:
    return (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)


class PersonIndexes:
    """Person indexes across a video. A track that ended continues an earlier person (none of
    whose tracks overlaps it in time) that is the same collection face, or, one of them not
    identified, the same face by the tracking vectors (cosine ``same_face``); else it is a new
    person."""

    def __init__(self, same_face: float = 0.5) -> None:
        self.same_face = same_face
        self._people: list[_Known] = []

    def find(self, track: Track, face_id: str | None) -> int | None:
        best, best_sim = None, self.same_face
        for index, known in enumerate(self._people):
            if known.overlaps(track.first_ms, track.last_ms):
                continue
            if face_id is not None and known.face_id is not None:
                if known.face_id == face_id:
                    return index
                continue  # two different people
            sim = _best(known.vectors, track.vectors)
            if sim >= best_sim:
                best, best_sim = index, sim
        return best

    def face_of(self, index: int) -> str | None:
        return self._people[index].face_id

    def add(self, track: Track, index: int | None, face_id: str | None) -> int:
        """Put ``track`` on person ``index`` (None: a new person); returns the index."""
        if index is None:
            self._people.append(_Known(face_id, [], []))
            index = len(self._people) - 1
        known = self._people[index]
        known.face_id = known.face_id or face_id
        known.spans.append((track.first_ms, track.last_ms))
        known.vectors.extend(track.vectors)
        return index

    def extend(self, index: int, track: Track) -> None:
        """``track``, already on person ``index`` (its first entries went out early), ran on."""
        spans = self._people[index].spans
        spans[:] = [(a, max(b, track.last_ms)) if a == track.first_ms else (a, b) for a, b in spans]


@dataclass
class _Known:
    face_id: str | None
    spans: list[tuple[int, int]]
    vectors: list[np.ndarray]

    def overlaps(self, first: int, last: int) -> bool:
        return any(a <= last and first <= b for a, b in self.spans)


def _best(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    if not a or not b:
        return -1.0
    return float(np.max(np.stack(a) @ np.stack(b).T))
