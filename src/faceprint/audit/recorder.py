"""What every audited operation writes to the audit log: :class:`Recorder`.

``Faceprint`` resolves the caller of an audited operation before any work (so a key that must
give a case and gave none is refused before a model runs), does the work, and then records it
here; the result is returned only once its entry is written (no entry, no result:
``AuditUnavailable`` goes up to the caller instead of the result). A search's entry holds the
collection and its size, the threshold and the false-match rate it stands for
(:mod:`faceprint.audit.fmr`), the probe's SHA-256 and quality (searches by image), and the
candidates returned (face ids and similarities, never vectors). Other operations (IndexFaces,
DeleteFaces, DeleteCollection, job starts...) are recorded with :meth:`Recorder.changed`.

With ``AuditSettings.store_probes`` the probe itself is kept (:class:`ProbeStore`) before its
entry is written; a probe that cannot be kept fails the search as an unwritable log does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from faceprint.audit.caller import Caller
from faceprint.audit.config import AuditSettings
from faceprint.audit.fmr import bound, false_match_rate
from faceprint.audit.probe_store import Probe, ProbeStore
from faceprint.audit.records import Entry
from faceprint.errors import AuditUnavailable, InvalidParameterException

if TYPE_CHECKING:
    from faceprint.audit.log import AuditLog
    from faceprint.faces import Analysis
    from faceprint.models.profiles import Profile
    from faceprint.probes import ProbeQuality
    from faceprint.types import FaceMatch, UserMatch

DEFAULT_VIDEO_THRESHOLD = 80.0
"""StartFaceSearch's FaceMatchThreshold when none is given (Rekognition's)."""
DELETED_UNRECORDED = ("The deletion was carried out (what was deleted is gone), but its audit record could not "
                      "be written.")
"""The message of a deletion whose entry could not be written (not the log's "was not carried out")."""
REFUSED_LOW_QUALITY = "low-quality probe"
"""``Details["Refused"]`` of a search refused because its probe fell under the quality floor."""


class Recorder:
    """Writes audit entries to ``log`` (None: the record is off, nothing is written and every
    method answers None). ``profile`` gives the false-match rate of a threshold, ``settings`` whether
    probes are kept (in ``probes``), ``clock`` the entries' end time."""

    def __init__(self, log: AuditLog | None, profile: Profile, settings: AuditSettings,
                 probes: ProbeStore | None, clock: Callable[[], float] = time.time) -> None:
        self.log = log
        self.profile = profile
        self.settings = settings
        self.probes = probes
        self.clock = clock
        self._rates: dict[float, float | None] = {}  # threshold: its false-match rate on this profile

    def rate(self, threshold: float) -> float | None:
        """The false-match rate ``threshold`` stands for on this profile (None: not calibrated)."""
        rate = self._rates.get(threshold, self)
        if rate is self:
            rate = None if not self.profile.calibrated else false_match_rate(self.profile, threshold)
            if len(self._rates) < 1000:
                self._rates[threshold] = rate
        return rate  # type: ignore[return-value]

    @property
    def enabled(self) -> bool:
        return self.log is not None

    def searched(self, operation: str, caller: Caller, started: float, collection_id: str | None,
                 collection_size: int | None, threshold: float | None, candidates: Iterable[dict[str, Any]],
                 probe_bytes: bytes | Probe | None = None, probe_quality: Any = None,
                 details: dict[str, Any] | None = None) -> int | None:
        """Record an identification (a search, a comparison, a stream match...); the entry's id.
        ``probe_bytes``: the probe as submitted (its digest is recorded; the probe too where the
        settings keep probes); ``probe_quality``: its ``faceprint.probes.ProbeQuality``. Where the
        threshold is outside the calibrated levels (under 50 or over 99) the rate recorded is a bound:
        ``Details["FalseMatchRateBound"]`` says ``"at-least"`` or ``"at-most"``."""
        if self.log is None:
            return None
        details = dict(details or {})
        where = None if threshold is None else bound(threshold)
        if where is not None and where != "about":  # outside the calibrated levels: a bound
            details["FalseMatchRateBound"] = where
        probe = Probe.of(bytes(probe_bytes)) if isinstance(probe_bytes, bytes | bytearray | memoryview) \
            else probe_bytes
        stored_now = self._keep(probe) if probe is not None else None
        if stored_now is not None:
            details["ProbeStored"] = True
        threshold = None if threshold is None else float(threshold)
        entry = Entry(operation=operation, caller=caller, started=started, ended=self.clock(),
                      collection_id=collection_id, collection_size=collection_size, threshold=threshold,
                      false_match_rate=None if threshold is None else self.rate(threshold),
                      probe_sha256=probe.sha256 if probe is not None else None,
                      probe_quality=probe_quality.to_json() if probe_quality is not None else None,
                      low_quality=bool(probe_quality is not None and probe_quality.low_quality),
                      candidates=tuple(candidates), details=details)
        try:
            return self.log.append_seq(entry)
        except AuditUnavailable:
            if stored_now and probe is not None and self.probes is not None:  # kept for this entry alone
                self.probes.delete(probe.sha256)  # no entry, no probe kept
            raise

    def changed(self, operation: str, caller: Caller, collection_id: str | None = None,
                details: dict[str, Any] | None = None, started: float | None = None) -> int | None:
        """Record an operation that enrols, deletes or changes something; the entry's id."""
        if self.log is None:
            return None
        now = self.clock()
        entry = Entry(operation=operation, caller=caller, started=now if started is None else started, ended=now,
                      collection_id=collection_id, details=dict(details or {}))
        return self.log.append_seq(entry)

    def deleted(self, operation: str, caller: Caller, collection_id: str | None, details: dict[str, Any],
                started: float) -> int | None:
        """Record a deletion already made (what is deleted is gone, entry or not); where the entry cannot
        be written, the ``AuditUnavailable`` raised says that the deletion stands (:data:`DELETED_UNRECORDED`)."""
        try:
            return self.changed(operation, caller, collection_id, details, started)
        except AuditUnavailable as exc:
            raise AuditUnavailable(DELETED_UNRECORDED) from exc

    def enrolment(self, caller: Caller, started: float, collection_id: str, external_image_id: str | None,
                  image_sha256: str | None) -> Callable[[list[str], int], int | None]:
        """What writes IndexFaces' entry once the new face ids are known, before they are stored
        (``faceprint.collections.Record``)."""
        def record(face_ids: list[str], unindexed: int) -> int | None:
            return self.changed("IndexFaces", caller, collection_id, started=started, details={
                "FaceIds": face_ids, "ExternalImageId": external_image_id, "ImageSha256": image_sha256,
                "UnindexedFaces": unindexed})

        return record

    def probe_check(self, assess: Callable[[Any, Any], ProbeQuality], operation: str, caller: Caller,
                    started: float, collection_id: str | None, threshold: float,
                    probe: Probe | None) -> Callable[[Analysis], ProbeQuality]:
        """What assesses a search's probe once it is analysed (``faceprint.collections.Inspect``): its
        quality (``assess(image, face)``, ``faceprint.probes.ProbeAssessor.assess``), or, where the caller
        refuses low-quality probes and this is one, an entry saying the search was refused and
        InvalidParameterException."""
        def check(analysis: Analysis) -> ProbeQuality:
            assert analysis.image is not None
            quality = assess(analysis.image, analysis.faces[0])
            if quality.low_quality and caller.refuse_low_quality:
                self.searched(operation, caller, started, collection_id, None, float(threshold), (), probe, quality,
                              {"Refused": REFUSED_LOW_QUALITY})
                raise InvalidParameterException(refusal(quality))
            return quality

        return check

    def _keep(self, probe: Probe) -> bool | None:
        """Store the probe where the settings ask for it: None if they do not, else whether it was stored
        now (False: an earlier search stored it)."""
        if not self.settings.store_probes or self.probes is None:
            return None
        try:
            return self.probes.save(probe)
        except OSError:
            raise AuditUnavailable("The probe image could not be kept for the audit record, so the search "
                                   "gives no result.") from None


def face_search_start(recorder: Recorder, caller: Caller, started: float, collection_id: str,
                      threshold: float | None, job_tag: str | None, size: Callable[[], int] | None = None
                      ) -> Callable[[str], dict[str, Any] | None]:
    """What records a StartFaceSearch once its job id is known (``VideoJobs.start_face_search``'s
    ``record``, called once the request is checked): what it answers is kept with the job, whose end
    is recorded with the same caller. ``size()``: the collection's size now."""
    def record(job_id: str) -> dict[str, Any] | None:
        if not recorder.enabled:
            return None
        audit_id = recorder.searched("StartFaceSearch", caller, started, collection_id, size() if size else None,
                                     DEFAULT_VIDEO_THRESHOLD if threshold is None else float(threshold), (),
                                     details={"JobId": job_id, "JobTag": job_tag})
        return None if audit_id is None else {"StartId": audit_id, "Caller": caller.to_json()}

    return record


def refusal(quality: Any) -> str:
    """The message of a search refused for its low-quality probe (``faceprint.probes.ProbeQuality``)."""
    rank1 = quality.expected_rank1
    measured = f"measured rank-1 at this quality is {rank1:.1f}%" if rank1 is not None else "quality unknown"
    return (f"The probe's face is {quality.face_width} px wide (sharpness {quality.sharpness:.0f}): {measured}, "
            f"under the floor of {quality.floor:.0f}%. This caller refuses low-quality probes: expect misses and "
            "look-alikes; use a larger, sharper image of the face.")


def face_candidates(matches: Iterable[FaceMatch]) -> tuple[dict[str, Any], ...]:
    """The candidates of a face search, as its entry keeps them."""
    out = []
    for match in matches:
        face = match.face
        item: dict[str, Any] = {"FaceId": face.face_id, "Similarity": match.similarity}
        if face.external_image_id is not None:
            item["ExternalImageId"] = face.external_image_id
        if face.user_id is not None:
            item["UserId"] = face.user_id
        out.append(item)
    return tuple(out)


def user_candidates(matches: Iterable[UserMatch]) -> tuple[dict[str, Any], ...]:
    """The candidates of a user search: user ids and similarities."""
    return tuple({"UserId": m.user.user_id, "Similarity": m.similarity} for m in matches if m.user is not None)
