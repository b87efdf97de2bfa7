"""The ``Faceprint`` object: one method per Rekognition operation.

State lives in the object (home directory, settings, lazily loaded models);
nothing heavy happens at import or construction time.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceprint.account import DEFAULT_REGION, CollectionArns
from faceprint.attributes import requested
from faceprint.attributes.engine import AttributeEngine
from faceprint.audit.caller import resolve
from faceprint.audit.config import AuditSettings
from faceprint.audit.recorder import face_candidates, face_search_start, user_candidates
from faceprint.audit.settings import KEEP
from faceprint.backends import INDEX_ENV, STORE_ENV, is_postgres, open_indexes, open_store
from faceprint.collections import COLLECTION_ID, Collections, check_pattern
from faceprint.engine import MAX_FACES, FaceEngine
from faceprint.errors import FaceprintError, InvalidParameterException
from faceprint.faces import (
    Analysis,
    MeasuredFace,
    measure,
    quality_reason,
    validate_attributes,
    validate_percent,
    validate_quality_filter,
)
from faceprint.home import private_folder
from faceprint.imaging import DecodedImage, ImageInput, ImageLimits, load_image
from faceprint.index import Indexes
from faceprint.models.catalog import ALL_MODELS
from faceprint.models.detector import DetectorSettings
from faceprint.models.profiles import DEFAULT_PROFILE, Profile, get_profile
from faceprint.models.store import ModelStore
from faceprint.models.text import TEXT_MODEL_VERSION, TextReader
from faceprint.store import Store
from faceprint.text import TextFilters, assemble, parse_filters
from faceprint.types import (
    AssociateFacesResult,
    ComparedSourceImageFace,
    CompareFacesMatch,
    CompareFacesResult,
    CreateCollectionResult,
    DeleteCollectionResult,
    DeleteFacesResult,
    DescribeCollectionResult,
    DetectFacesResult,
    DetectTextResult,
    DisassociateFacesResult,
    EmptyResult,
    FaceDetail,
    IndexFacesResult,
    ListCollectionsResult,
    ListFacesResult,
    ListUsersResult,
    SearchFacesByImageResult,
    SearchFacesResult,
    SearchUsersByImageResult,
    SearchUsersResult,
)
from faceprint.users import Users

if TYPE_CHECKING:
    from faceprint.audit.caller import Caller
    from faceprint.audit.log import AuditFilter, AuditLog
    from faceprint.audit.probe_store import Probe, ProbeStore
    from faceprint.audit.recorder import Recorder
    from faceprint.audit.review import Reviews
    from faceprint.audit.settings import SettingsStore
    from faceprint.audit.verify import VerifyReport
    from faceprint.crops import CropStore
    from faceprint.erasure import Eraser
    from faceprint.probes import ProbeAssessor
    from faceprint.streams.service import StreamProcessors, StreamSettings
    from faceprint.streams.types import (
        CreateStreamProcessorResult,
        DescribeStreamProcessorResult,
        ListStreamProcessorsResult,
        StartStreamProcessorResult,
    )
    from faceprint.video.service import VideoJobs, VideoSettings
    from faceprint.video.types import (
        GetFaceDetectionResult,
        GetFaceSearchResult,
        GetSegmentDetectionResult,
        GetTextDetectionResult,
        StartJobResult,
    )

MAX_TEXT_WORDS = 100
"""Rekognition's DetectText returns at most 100 words."""


def default_home() -> Path:
    return Path(os.environ.get("FACEPRINT_HOME") or Path.home() / ".faceprint")


def default_models_dir(home: Path) -> Path:
    env = os.environ.get("FACEPRINT_MODELS_DIR")
    return Path(env) if env else home / "models"


class Faceprint:
    """Face recognition with Rekognition's operations, on this machine.

    ``home`` holds the model cache (and, later, collections); ``profile`` is
    ``"accurate"`` (default), ``"fast"`` or an operator profile registered in ``home``
    (``faceprint models add``); ``limits`` sets the image limits;
    ``threads`` caps the threads of one inference call (0: all cores);
    ``max_text_words`` caps DetectText's words (Rekognition's 100); ``store`` replaces the
    embedded SQLite store of collections and faces, or ``store_url`` names one
    (``faceprint.backends``: ``sqlite:///PATH``, ``postgresql://...``; default: ``FACEPRINT_STORE``,
    else ``HOME/faceprint.db``); ``index_settings`` tunes the collection
    index (``exact_below``, ``tail_limit``, ``rerank``: see ``faceprint.index.hybrid``) and
    ``indexes`` replaces the embedded indexes (``faceprint.index.Indexes``), or ``index_url`` names
    them (default: ``FACEPRINT_INDEX``, else the embedded index in ``HOME/indexes``); ``region`` is the
    region of collection ARNs (``arn:aws:rekognition:REGION:ACCOUNT:collection/ID``, with the
    home's account id, ``faceprint.account``); ``video`` sets the stored-video jobs
    (``faceprint.video.service.VideoSettings``: workers, job limit, expiry, size limits, SNS topics);
    ``streams`` sets the stream processors (``faceprint.streams.service.StreamSettings``: processor
    limit, camera timeout, the server's camera URLs and sinks by stream name); ``audit`` sets the
    accountability record (``faceprint.audit.config.AuditSettings``: on by default).

    Every operation that identifies or enrols (the searches, CompareFaces, IndexFaces, DeleteFaces,
    DeleteCollection, StartFaceSearch) takes keyword-only ``caller`` (a
    :class:`faceprint.audit.caller.Caller`; default: the OS user), ``purpose`` and ``case``; the
    caller is checked before any work (``AccessDeniedException`` where a case is required and none
    is given) and the call is recorded in the audit log (``HOME/audit``) before its result is
    returned: if the entry cannot be written the call raises ``AuditUnavailable`` and returns
    nothing. Results carry ``audit_id`` (the entry) and, for searches by image and CompareFaces,
    ``probe`` (the probe's :class:`faceprint.probes.ProbeQuality`).

    The collection, face and search operations are :class:`faceprint.collections.Collections`'s
    and the user operations :class:`faceprint.users.Users`'s (``collections`` and ``users``,
    made on first use); the methods here delegate to them, and the stored-video operations to
    :class:`faceprint.video.service.VideoJobs` (``video``) and the stream processor operations to
    :class:`faceprint.streams.service.StreamProcessors` (``streams``).
    """

    def __init__(self, home: str | os.PathLike | None = None, *, profile: str | None = None,
                 models_dir: str | os.PathLike | None = None, limits: ImageLimits | None = None,
                 detector: DetectorSettings | None = None, threads: int = 0,
                 max_text_words: int = MAX_TEXT_WORDS, store: Store | None = None,
                 index_settings: dict[str, int] | None = None, indexes: Indexes | None = None,
                 region: str = DEFAULT_REGION, video: VideoSettings | None = None,
                 streams: StreamSettings | None = None, audit: AuditSettings | None = None,
                 store_url: str | None = None, index_url: str | None = None) -> None:
        self.home = Path(home) if home is not None else default_home()
        self.store_url = store_url if store_url is not None else os.environ.get(STORE_ENV) or None
        self.arns = CollectionArns(self.home, region, self._shared_account if is_postgres(self.store_url) else None)
        self.profile: Profile = get_profile(profile or os.environ.get("FACEPRINT_PROFILE")
                                            or DEFAULT_PROFILE, self.home)  # built-in, or HOME/profiles/NAME
        self.models = ModelStore(Path(models_dir) if models_dir else default_models_dir(self.home),
                                 catalog=ALL_MODELS, home=self.home)
        self.limits = limits or ImageLimits()
        self.engine = FaceEngine(self.models, self.profile, detector, threads)
        self.threads = threads
        self.max_text_words = max_text_words
        self._text_reader: TextReader | None = None
        self._text_lock = threading.Lock()
        self._attributes: AttributeEngine | None = None
        self._attributes_lock = threading.Lock()
        self._store = store
        self.index_url = index_url if index_url is not None else os.environ.get(INDEX_ENV) or None
        self._index_settings = dict(index_settings or {})
        self._index_cache: Indexes | None = indexes
        self._index_lock = threading.RLock()
        self._collections: Collections | None = None
        self._users: Users | None = None
        self._video_settings = video
        self._video: VideoJobs | None = None
        self._stream_settings = streams
        self._streams: StreamProcessors | None = None
        self.audit_settings = audit or AuditSettings()
        self._recorder: Recorder | None = None
        self._probes: ProbeAssessor | None = None

    def _shared_account(self) -> str:
        """The deployment's account id, kept in the PostgreSQL store (the same on every node)."""
        from faceprint.store.pgshared import shared_account_id

        return shared_account_id(self.store_url, self.home)

    @property
    def store(self) -> Store:
        """Collections and faces: the store ``store_url`` names (by default SQLite at
        ``HOME/faceprint.db``), opened on first use."""
        if self._store is None:
            with self._index_lock:
                if self._store is None:
                    self._store = open_store(self.store_url, self.home)
        return self._store

    @property
    def index_cache(self) -> Indexes:
        """Each collection's vector index, derived from the store: the indexes ``index_url`` names (by
        default the embedded index, its files in ``HOME/indexes``)."""
        if self._index_cache is None:
            with self._index_lock:
                if self._index_cache is None:
                    self._index_cache = open_indexes(self.index_url, self.store, self.home, self.profile.dim,
                                                     **self._index_settings)
        return self._index_cache

    @property
    def collections(self) -> Collections:
        """The collection, face and search operations over this home's store and indexes."""
        if self._collections is None:
            with self._index_lock:
                if self._collections is None:
                    self._collections = Collections(self.store, self.index_cache, self.profile, self.analyze,
                                                    self.arns, self._index_lock, describe=self.describe)
        return self._collections

    @property
    def users(self) -> Users:
        """The user operations on :attr:`collections`."""
        if self._users is None:
            with self._index_lock:
                if self._users is None:
                    self._users = Users(self.collections)
        return self._users

    @property
    def video(self) -> VideoJobs:
        """The stored-video jobs of this home (``HOME/video``); a Start runs the job in a worker
        process, from a runner in this process unless another process runs this home's jobs."""
        if self._video is None:
            with self._index_lock:
                if self._video is None:
                    from faceprint.video.service import VideoJobs

                    self._video = VideoJobs(self.home, self.profile.name, self.models.root, self.collections,
                                            self._video_settings, clock=time.time, store_url=self.store_url)
        return self._video

    @property
    def streams(self) -> StreamProcessors:
        """The stream processors of this home (``HOME/streams``): the operations write what is wanted;
        the home's stream host runs them (``streams.start_runner()``, or the server's)."""
        if self._streams is None:
            with self._index_lock:
                if self._streams is None:
                    self._streams = self._make_streams()
        return self._streams

    def _make_streams(self) -> StreamProcessors:
        from faceprint.streams.config import StreamConfig, streams_folder
        from faceprint.streams.service import StreamProcessors, StreamSettings
        from faceprint.streams.store import open_processor_store

        settings = self._stream_settings or StreamSettings()
        config = StreamConfig(self.home, settings.sources, settings.data_streams)
        streams_folder(private_folder(self.home))  # the server starts a stream host for a home that has it
        store = open_processor_store(self.home, self.store_url)
        return StreamProcessors(self.home, store, config, self.collections, self.arns, settings, clock=time.time,
                                models_dir=self.models.root, profile=self.profile.name, threads=self.threads)

    # -- accountability: who asks, what is recorded, how good the probe is ----------------------------
    @property
    def recorder(self) -> Recorder:
        """What audited operations write to the audit log (:attr:`audit_log`; nothing when
        ``audit_settings.enabled`` is off)."""
        if self._recorder is None:
            with self._index_lock:
                if self._recorder is None:
                    from faceprint.audit.recorder import Recorder

                    log = self.audit_log if self.audit_settings.enabled else None
                    self._recorder = Recorder(log, self.profile, self.audit_settings, self.probe_store, clock=time.time)
        return self._recorder

    @property
    def probe_store(self) -> ProbeStore:
        """Probe images kept for the audit record (only with ``audit_settings.store_probes``):
        ``HOME/audit/probes``, or the PostgreSQL store's database (every node's; see
        ``faceprint.store.pgblobs``)."""
        from faceprint.audit.probe_store import open_probe_store

        return self._once("_probe_store", lambda: open_probe_store(self.home, self.store_url))

    def _once(self, attribute: str, make: Callable[[], Any]) -> Any:
        """The part held in ``attribute``, made by ``make()`` on first use (once, whichever threads ask)."""
        made = self.__dict__.get(attribute)
        if made is None:
            with self._index_lock:
                made = self.__dict__.get(attribute)
                if made is None:
                    made = make()
                    setattr(self, attribute, made)
        return made

    @property
    def probes(self) -> ProbeAssessor:
        """The probe-quality assessor of this profile (``faceprint.probes``), with the quality floor
        of ``audit_settings``."""
        if self._probes is None:
            from faceprint.probes import ProbeAssessor

            self._probes = ProbeAssessor(self.profile.name, floor=self.audit_settings.quality_floor,
                                         calibration=self.profile.calibration_data)  # operator: its curve
        return self._probes

    def _probe_input(self, image: Any) -> tuple[Any, Probe | None]:
        """What to decode and the probe's digest (None with the record off): a file is read once."""
        if not self.recorder.enabled:
            return image, None
        from faceprint.audit.probe_store import read_probe
        from faceprint.imaging import _read_path

        return read_probe(image, lambda path: _read_path(path, self.limits), self.load_image)

    def _size(self, collection_id: str, compared: int | None = None) -> int | None:
        """The collection's size for an audit entry: what the search compared with where it says,
        else asked of the index (None with the record off: nothing to pay)."""
        if not self.recorder.enabled:
            return None
        return compared if compared is not None else self.collections.size(collection_id)

    def save_indexes(self, min_faces: int = 0, grown_only: bool = False) -> None:
        """Write the index files of the collections loaded here (of ``min_faces`` or more) that
        are not current (``grown_only``: that grew by a fifth), so the next process opens them fast."""
        if self._index_cache is not None:
            self._index_cache.save_all(min_faces, grown_only)

    @property
    def face_model_version(self) -> str:
        return self.profile.face_model_version

    def load_image(self, image: ImageInput | DecodedImage) -> DecodedImage:
        return load_image(image, self.limits)

    @property
    def attributes(self) -> AttributeEngine:
        """The models behind the attributes beyond DEFAULT (each loaded on first use)."""
        if self._attributes is None:
            with self._attributes_lock:  # not the text lock: DetectText's first model load must not hold it up
                if self._attributes is None:
                    self._attributes = AttributeEngine(self.models, self.threads or 1)
        return self._attributes

    def describe(self, image: DecodedImage, face: MeasuredFace, wanted: frozenset[str]) -> FaceDetail:
        """``face``'s FaceDetail: the DEFAULT fields and the ``wanted`` attributes
        (``faceprint.attributes.requested``), measured on ``image``, the picture it was found in."""
        return face.detail(self.attributes.describe(image, face, wanted)) if wanted else face.detail()

    def detect_faces(self, image: ImageInput, attributes: tuple[str, ...] | list[str] = ("DEFAULT",)
                     ) -> DetectFacesResult:
        """Rekognition DetectFaces: the 100 largest faces with box, landmarks, pose, quality, and
        the attributes asked for (``ALL``: every one, and 30 landmarks in place of the five)."""
        wanted = requested(validate_attributes(attributes))
        decoded = self.load_image(image)
        faces = self.analyze(decoded, embed=False).faces
        return DetectFacesResult(face_details=[self.describe(decoded, f, wanted) for f in faces])

    def compare_faces(self, source: ImageInput, target: ImageInput,
                      similarity_threshold: float = 80.0, quality_filter: str = "NONE", *,
                      caller: Caller | None = None, purpose: str | None = None, case: str | None = None
                      ) -> CompareFacesResult:
        """Rekognition CompareFaces: the source's largest face against each target face (audited:
        the source is the probe; its quality is the result's ``probe``)."""
        who, started = resolve(caller, purpose, case), time.time()
        threshold = validate_percent("SimilarityThreshold", similarity_threshold)
        validate_quality_filter(quality_filter)
        (source, probe), (target, target_probe) = self._probe_input(source), self._probe_input(target)
        src_img, tgt_img = self.load_image(source), self.load_image(target)
        src = self.analyze(src_img, 1, quality_filter)
        if not src.faces:
            why = " that passes the quality filter" if src.rejected else ""
            raise InvalidParameterException(f"There is no face in the source image{why}.")
        check = self.recorder.probe_check(self.probes.assess, "CompareFaces", who, started, None, threshold, probe)
        quality = check(src)
        result = self._compared(src, self.analyze(tgt_img, MAX_FACES, quality_filter), threshold)
        result.probe = quality
        candidates = [{"Similarity": m.similarity, "BoundingBox": m.face.bounding_box.to_dict()}
                      for m in result.face_matches]
        details = {"TargetSha256": target_probe.sha256 if target_probe else None,
                   "TargetFaces": len(result.face_matches) + len(result.unmatched_faces)}
        result.audit_id = self.recorder.searched("CompareFaces", who, started, None, None, threshold, candidates,
                                                 probe, quality, details)
        return result

    def _compared(self, src: Analysis, tgt: Analysis, threshold: float) -> CompareFacesResult:
        result = CompareFacesResult(source_image_face=ComparedSourceImageFace(
            bounding_box=src.faces[0].bounding_box, confidence=src.faces[0].confidence))
        sims = np.asarray(self.profile.similarity(tgt.vectors @ src.vectors[0]), dtype=np.float64)
        for face, sim in sorted(zip(tgt.faces, sims, strict=True), key=lambda p: -p[1]):
            if sim >= threshold:
                result.face_matches.append(CompareFacesMatch(similarity=round(float(sim), 4),
                                                             face=face.compared()))
            else:
                result.unmatched_faces.append(face.compared())
        return result

    def analyze(self, image: ImageInput | DecodedImage, max_faces: int = MAX_FACES,
                quality_filter: str = "NONE", embed: bool = True) -> Analysis:
        """Detect the ``max_faces`` largest faces, measure them, apply the quality filter and
        compute the profile's vector of each face that passes: the work behind every face
        operation."""
        decoded = self.load_image(image)
        detections = self.engine.detect(decoded, max_faces)
        kept, rejected = [], []
        for face in measure(decoded, detections, self.engine.face_confidence):
            reason = quality_reason(face, quality_filter)
            if reason is None:
                kept.append(face)
            else:
                rejected.append((face, reason))
        vectors = (self.engine.embed(decoded, detections.take([f.index for f in kept])) if embed
                   else np.zeros((0, self.profile.dim), np.float32))
        return Analysis(image=decoded, faces=kept, rejected=rejected, vectors=vectors)


    @property
    def text_model_version(self) -> str:
        return TEXT_MODEL_VERSION

    @property
    def text_reader(self) -> TextReader:
        if self._text_reader is None:
            with self._text_lock:
                if self._text_reader is None:
                    self._text_reader = TextReader(self.threads)
        return self._text_reader

    def detect_text(self, image: ImageInput, filters: dict[str, Any] | TextFilters | None = None
                    ) -> DetectTextResult:
        """Rekognition DetectText: LINE and WORD detections, with ``Filters`` in Rekognition's form
        (checked before the image is decoded)."""
        parsed = parse_filters(filters)
        decoded = self.load_image(image)
        lines = self.text_reader.read(decoded.bgr)
        return DetectTextResult(
            text_detections=assemble(lines, decoded.width, decoded.height, parsed, self.max_text_words),
            text_model_version=TEXT_MODEL_VERSION)

    def analyze_many(self, images: Iterable[ImageInput | DecodedImage], max_faces: int = MAX_FACES,
                     quality_filter: str = "NONE", workers: int | None = None
                     ) -> Iterator[Analysis | FaceprintError]:
        """:meth:`analyze` over many images on ``workers`` threads (default: one per core),
        yielding results in input order. A bad image yields its error and the batch goes on.
        For throughput, make the object with ``threads=1`` so each worker runs single-threaded
        inference and the workers fill the cores."""
        workers = workers or os.cpu_count() or 1

        def one(image: ImageInput | DecodedImage) -> Analysis | FaceprintError:
            try:
                return self.analyze(image, max_faces, quality_filter)
            except FaceprintError as exc:
                return exc

        with ThreadPoolExecutor(workers, thread_name_prefix="faceprint") as pool:
            pending: deque[Future[Analysis | FaceprintError]] = deque()
            for image in images:
                pending.append(pool.submit(one, image))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    # -- collections, faces and search (faceprint.collections.Collections) ----------------------
    def create_collection(self, collection_id: str) -> CreateCollectionResult:
        """Rekognition CreateCollection; the new collection's own settings are written at once
        (two-person rule: ``audit_settings.two_person_default``)."""
        from faceprint.audit.settings import CollectionSettings

        result = self.collections.create_collection(collection_id)
        rule = self.audit_settings.two_person_default
        self.settings_store.put(collection_id, CollectionSettings(two_person_rule=rule))
        return result

    def describe_collection(self, collection_id: str) -> DescribeCollectionResult:
        return self.collections.describe_collection(collection_id)

    def list_collections(self, max_results: int = 1000, next_token: str | None = None) -> ListCollectionsResult:
        return self.collections.list_collections(max_results, next_token)

    def delete_collection(self, collection_id: str, *, caller: Caller | None = None, purpose: str | None = None,
                          case: str | None = None) -> DeleteCollectionResult:
        """Rekognition DeleteCollection (audited): its faces, index, settings and face crops go. The
        entry is written after the deletion (what is deleted is gone even if the log cannot be written;
        the call then raises ``AuditUnavailable`` saying that the deletion stands)."""
        who, started = resolve(caller, purpose, case), time.time()
        check_pattern("CollectionId", collection_id, COLLECTION_ID)  # a collection of any profile may go
        faces = self.store.count_faces(collection_id)
        result = self.collections.delete_collection(collection_id)
        self.settings_store.drop(collection_id)
        crops = self.crops.drop(collection_id)
        self.recorder.deleted("DeleteCollection", who, collection_id, {"FaceCount": faces, "CropsErased": crops},
                              started)
        return result

    def index_faces(self, collection_id: str, image: Any, external_image_id: str | None = None,
                    detection_attributes: tuple[str, ...] | list[str] = (), max_faces: int | None = None,
                    quality_filter: str = "AUTO", *, caller: Caller | None = None, purpose: str | None = None,
                    case: str | None = None) -> IndexFacesResult:
        """Rekognition IndexFaces: detect, filter, store and index the faces of one image (audited:
        the entry, with the new face ids and the image's SHA-256, is written before the faces are
        stored; a collection that keeps face crops gets one per face)."""
        who, started = resolve(caller, purpose, case), time.time()
        self.collections.collection(collection_id)
        source, image_probe = self._probe_input(image)
        record = self.recorder.enrolment(who, started, collection_id, external_image_id,
                                         image_probe.sha256 if image_probe else None)
        result = self.collections.index_faces(collection_id, source, external_image_id, detection_attributes,
                                              max_faces, quality_filter, record=record)
        if result.face_records and self.settings_store.get(collection_id).keep_face_crops:
            self._keep_crops(collection_id, self.load_image(source), result)
        return result

    def store_analysis(self, collection_id: str, analysis: Analysis, external_image_id: str | None = None,
                       max_faces: int | None = None, source_sha256: str | None = None, *,
                       caller: Caller | None = None, purpose: str | None = None, case: str | None = None
                       ) -> IndexFacesResult:
        """The storing half of IndexFaces (see ``Collections.store_analysis``), audited as IndexFaces
        (the bulk importer writes one entry per image this way); crops where the collection keeps them
        and the analysis still holds its image."""
        who, started = resolve(caller, purpose, case), time.time()
        record = self.recorder.enrolment(who, started, collection_id, external_image_id, source_sha256)
        result = self.collections.store_analysis(collection_id, analysis, external_image_id, max_faces,
                                                 source_sha256, record=record)
        if result.face_records and analysis.image is not None and \
                self.settings_store.get(collection_id).keep_face_crops:
            self._keep_crops(collection_id, analysis.image, result)
        return result

    def _keep_crops(self, collection_id: str, image: DecodedImage, result: IndexFacesResult) -> None:
        from faceprint.crops import crop_jpeg

        for record in result.face_records:
            self.crops.save(collection_id, record.face.face_id, crop_jpeg(image, record.face.bounding_box))

    def list_faces(self, collection_id: str, max_results: int = 1000, next_token: str | None = None,
                   face_ids: list[str] | None = None, user_id: str | None = None) -> ListFacesResult:
        return self.collections.list_faces(collection_id, max_results, next_token, face_ids, user_id)

    def delete_faces(self, collection_id: str, face_ids: list[str], *, caller: Caller | None = None,
                     purpose: str | None = None, case: str | None = None) -> DeleteFacesResult:
        """Rekognition DeleteFaces (audited after the deletion, as DeleteCollection); their crops go too."""
        who, started = resolve(caller, purpose, case), time.time()
        result = self.collections.delete_faces(collection_id, face_ids)
        crops = self.crops.delete(collection_id, result.deleted_faces)
        self.recorder.deleted("DeleteFaces", who, collection_id, started=started, details={
            "FaceIds": list(result.deleted_faces), "NotDeleted": len(result.unsuccessful_face_deletions),
            "CropsErased": crops})
        return result

    def search_faces(self, collection_id: str, face_id: str, max_faces: int = 80,
                     face_match_threshold: float = 80.0, *, caller: Caller | None = None, purpose: str | None = None,
                     case: str | None = None) -> SearchFacesResult:
        """Rekognition SearchFaces (audited)."""
        who, started = resolve(caller, purpose, case), time.time()
        result = self.collections.search_faces(collection_id, face_id, max_faces, face_match_threshold)
        result.audit_id = self.recorder.searched(
            "SearchFaces", who, started, collection_id, self._size(collection_id, result.compared),
            face_match_threshold,
            face_candidates(result.face_matches), details={"FaceId": face_id, "MaxFaces": max_faces})
        return result

    def search_faces_by_image(self, collection_id: str, image: Any, max_faces: int = 80,
                              face_match_threshold: float = 80.0, quality_filter: str = "NONE", *,
                              caller: Caller | None = None, purpose: str | None = None, case: str | None = None
                              ) -> SearchFacesByImageResult:
        """Rekognition SearchFacesByImage (audited, with the probe's digest and quality)."""
        who, started = resolve(caller, purpose, case), time.time()
        self.collections.collection(collection_id)
        source, probe = self._probe_input(image)
        check = self.recorder.probe_check(self.probes.assess, "SearchFacesByImage", who, started, collection_id,
                                          face_match_threshold, probe)
        result = self.collections.search_faces_by_image(collection_id, source, max_faces, face_match_threshold,
                                                        quality_filter, inspect=check)
        result.audit_id = self.recorder.searched(
            "SearchFacesByImage", who, started, collection_id, self._size(collection_id, result.compared),
            face_match_threshold,
            face_candidates(result.face_matches), probe, result.probe, {"MaxFaces": max_faces})
        return result

    # -- users (faceprint.users.Users) -----------------------------------------------------------
    def create_user(self, collection_id: str, user_id: str, client_request_token: str | None = None
                    ) -> EmptyResult:
        return self.users.create_user(collection_id, user_id, client_request_token)

    def delete_user(self, collection_id: str, user_id: str, client_request_token: str | None = None
                    ) -> EmptyResult:
        return self.users.delete_user(collection_id, user_id, client_request_token)

    def list_users(self, collection_id: str, max_results: int = 100, next_token: str | None = None
                   ) -> ListUsersResult:
        return self.users.list_users(collection_id, max_results, next_token)

    def associate_faces(self, collection_id: str, user_id: str, face_ids: list[str],
                        user_match_threshold: float = 75.0, client_request_token: str | None = None
                        ) -> AssociateFacesResult:
        return self.users.associate_faces(collection_id, user_id, face_ids, user_match_threshold,
                                          client_request_token)

    def disassociate_faces(self, collection_id: str, user_id: str, face_ids: list[str],
                           client_request_token: str | None = None) -> DisassociateFacesResult:
        return self.users.disassociate_faces(collection_id, user_id, face_ids, client_request_token)

    def search_users(self, collection_id: str, user_id: str | None = None, face_id: str | None = None,
                     user_match_threshold: float = 80.0, max_users: int = 100, *, caller: Caller | None = None,
                     purpose: str | None = None, case: str | None = None) -> SearchUsersResult:
        """Rekognition SearchUsers (audited)."""
        who, started = resolve(caller, purpose, case), time.time()
        result = self.users.search_users(collection_id, user_id, face_id, user_match_threshold, max_users)
        searched = {"UserId": user_id} if user_id is not None else {"FaceId": face_id}
        result.audit_id = self.recorder.searched(
            "SearchUsers", who, started, collection_id, self._size(collection_id), user_match_threshold,
            user_candidates(result.user_matches), details={**searched, "MaxUsers": max_users})
        return result

    def search_users_by_image(self, collection_id: str, image: Any, user_match_threshold: float = 80.0,
                              max_users: int = 100, quality_filter: str = "NONE", *, caller: Caller | None = None,
                              purpose: str | None = None, case: str | None = None) -> SearchUsersByImageResult:
        """Rekognition SearchUsersByImage (audited, with the probe's digest and quality)."""
        who, started = resolve(caller, purpose, case), time.time()
        self.collections.collection(collection_id)
        source, probe = self._probe_input(image)
        check = self.recorder.probe_check(self.probes.assess, "SearchUsersByImage", who, started, collection_id,
                                          user_match_threshold, probe)
        result = self.users.search_users_by_image(collection_id, source, user_match_threshold, max_users,
                                                  quality_filter, inspect=check)
        result.audit_id = self.recorder.searched(
            "SearchUsersByImage", who, started, collection_id, self._size(collection_id), user_match_threshold,
            user_candidates(result.user_matches), probe, result.probe, {"MaxUsers": max_users})
        return result

    # -- stored video (faceprint.video.service.VideoJobs) -----------------------------------------
    def start_face_search(self, video: Any, collection_id: str, face_match_threshold: float | None = None,
                          client_request_token: str | None = None, notification_channel: dict | None = None,
                          job_tag: str | None = None, *, caller: Caller | None = None, purpose: str | None = None,
                          case: str | None = None) -> StartJobResult:
        """Rekognition StartFaceSearch (audited: an entry when the job is queued, none, no job; and one
        with the faces it matched when it ends, written by the process that ran it)."""
        who, started = resolve(caller, purpose, case), time.time()
        record = face_search_start(self.recorder, who, started, collection_id, face_match_threshold, job_tag,
                                   size=lambda: self.store.count_faces(collection_id))  # once a job: no index load
        return self.video.start_face_search(video, collection_id, face_match_threshold, client_request_token,
                                            notification_channel, job_tag, record=record)

    def list_video_jobs(self, max_results: int = 100, next_token: str | None = None) -> dict[str, Any]:
        """The stored-video jobs, newest first (``VideoJobs.list_jobs``): ``{"Jobs": [...], "NextToken"?}``."""
        return self.video.list_jobs(max_results, next_token)

    def start_face_detection(self, video: Any, face_attributes: str | None = None,
                             client_request_token: str | None = None, notification_channel: dict | None = None,
                             job_tag: str | None = None) -> StartJobResult:
        return self.video.start_face_detection(video, face_attributes, client_request_token, notification_channel,
                                               job_tag)

    def start_text_detection(self, video: Any, filters: dict | None = None, client_request_token: str | None = None,
                             notification_channel: dict | None = None, job_tag: str | None = None) -> StartJobResult:
        return self.video.start_text_detection(video, filters, client_request_token, notification_channel, job_tag)

    def start_segment_detection(self, video: Any, segment_types: list[str], filters: dict | None = None,
                                client_request_token: str | None = None, notification_channel: dict | None = None,
                                job_tag: str | None = None) -> StartJobResult:
        return self.video.start_segment_detection(video, segment_types, filters, client_request_token,
                                                  notification_channel, job_tag)

    def get_face_search(self, job_id: str, max_results: int = 1000, next_token: str | None = None,
                        sort_by: str = "TIMESTAMP") -> GetFaceSearchResult:
        return self.video.get_face_search(job_id, max_results, next_token, sort_by)

    def get_face_detection(self, job_id: str, max_results: int = 1000, next_token: str | None = None
                           ) -> GetFaceDetectionResult:
        return self.video.get_face_detection(job_id, max_results, next_token)

    def get_text_detection(self, job_id: str, max_results: int = 1000, next_token: str | None = None
                           ) -> GetTextDetectionResult:
        return self.video.get_text_detection(job_id, max_results, next_token)

    def get_segment_detection(self, job_id: str, max_results: int = 1000, next_token: str | None = None
                              ) -> GetSegmentDetectionResult:
        return self.video.get_segment_detection(job_id, max_results, next_token)

    # -- stream processors (faceprint.streams.service.StreamProcessors) ---------------------------
    def create_stream_processor(self, input: dict, output: dict, name: str, settings: dict, role_arn: str,
                                tags: dict | None = None, notification_channel: dict | None = None,
                                kms_key_id: str | None = None, regions_of_interest: list | None = None,
                                data_sharing_preference: dict | None = None) -> CreateStreamProcessorResult:
        return self.streams.create_stream_processor(input, output, name, settings, role_arn, tags, notification_channel,
                                                    kms_key_id, regions_of_interest, data_sharing_preference)

    def describe_stream_processor(self, name: str) -> DescribeStreamProcessorResult:
        return self.streams.describe_stream_processor(name)

    def list_stream_processors(self, max_results: int = 1000, next_token: str | None = None
                               ) -> ListStreamProcessorsResult:
        return self.streams.list_stream_processors(max_results, next_token)

    def start_stream_processor(self, name: str, start_selector: dict | None = None,
                               stop_selector: dict | None = None) -> StartStreamProcessorResult:
        return self.streams.start_stream_processor(name, start_selector, stop_selector)

    def stop_stream_processor(self, name: str) -> EmptyResult:
        return self.streams.stop_stream_processor(name)

    def update_stream_processor(self, name: str, settings_for_update: dict | None = None,
                                regions_of_interest_for_update: list | None = None,
                                data_sharing_preference_for_update: dict | None = None,
                                parameters_to_delete: list | None = None) -> EmptyResult:
        return self.streams.update_stream_processor(name, settings_for_update, regions_of_interest_for_update,
                                                    data_sharing_preference_for_update, parameters_to_delete)

    def delete_stream_processor(self, name: str) -> EmptyResult:
        return self.streams.delete_stream_processor(name)

    # -- audit record (faceprint.audit: log, verify, export, report, retention) -------------------

    @property
    def audit_log(self) -> AuditLog:
        """The audit log (``HOME/audit``: ``audit.db``, the online key, seals), opened on first use
        (each entry flushed to disk first where ``audit_settings.durable``)."""
        def open_log() -> AuditLog:  # the import only on first use: every search asks for the log
            from faceprint.audit.backend import open_audit_log

            return open_audit_log(self.home, self.store_url, clock=time.time, durable=self.audit_settings.durable)

        return self._once("_audit_log", open_log)

    def audit_entries(self, filters: AuditFilter | None = None, max_results: int = 100,
                      next_token: str | None = None) -> dict[str, Any]:
        """Audit entries matching ``filters`` in seq order, a page at a time: ``{"Entries": [...],
        "NextToken"?}`` (the token is the last seq given)."""
        from faceprint.audit.log import AuditFilter as Filter
        from faceprint.audit.log import page_request

        after, limit = page_request(max_results, next_token)
        records = self.audit_log.query(filters or Filter(), after=after, limit=limit + 1)
        out: dict[str, Any] = {"Entries": [r.to_json() for r in records[:limit]]}
        if len(records) > limit:
            out["NextToken"] = str(records[limit - 1].seq)
        return out

    def verify_audit(self, seals_file: str | os.PathLike | None = None,
                     offline_public_key: str | os.PathLike | None = None) -> VerifyReport:
        """Check the audit log: chain, signed heads, prune markers and seals (``seals_file``, default
        ``HOME/audit/seals.jsonl``; offline signatures with the public key in ``offline_public_key``)."""
        from faceprint.audit.signing import load_public
        from faceprint.audit.verify import verify

        try:
            key = load_public(Path(offline_public_key)) if offline_public_key is not None else None
        except (OSError, ValueError) as exc:
            raise InvalidParameterException(f"{offline_public_key} is not an Ed25519 public key: {exc}") from None
        return verify(self.audit_log, Path(seals_file) if seals_file is not None else None, key,
                      minimum_days=self.audit_settings.retention_days)

    def audit_report(self, since: float | None = None, until: float | None = None) -> dict[str, Any]:
        """The accountability report of the entries started within [since, until] (epoch seconds)."""
        from faceprint.audit.report import audit_report

        return audit_report(self.audit_log, since, until)

    def prune_audit(self, older_than_days: float, caller: Caller | None = None, *,
                    force: bool = False) -> dict[str, Any]:
        """Remove the audit entries started more than ``older_than_days`` ago (refused under
        ``audit_settings.retention_days``), leaving a signed ``Prune`` marker
        (``faceprint.audit.retention``); the review queue forgets their searches, and where stored
        probes follow the entries (``probe_retention_days`` None) the probes no search used for as
        long are erased too (``ProbesErased``). A log that does not verify is not pruned (that
        would remove what shows the tampering) unless ``force``; the marker says whether it did."""
        from faceprint.audit.retention import prune

        report = self.verify_audit()
        if not report.ok and not force:
            raise InvalidParameterException("The audit log does not verify (see faceprint audit verify): it is not "
                                            "pruned, which would remove what shows. Prune it anyway with force.")
        result = prune(self.audit_log, older_than_days, minimum_days=self.audit_settings.retention_days,
                       caller=caller, details={"Verified": report.ok,
                                               "Problems": len(report.problems) + report.more_problems})
        if result["Pruned"]:
            self.reviews.refresh()  # the review queue's copy of pruned searches goes now
        if self.audit_settings.probe_retention_days is None:
            result["ProbesErased"] = self.probe_store.prune(older_than_days)
        return result

    # -- review and collection settings (faceprint.audit.review, faceprint.audit.settings) -------

    @property
    def settings_store(self) -> SettingsStore:
        """The collections' own settings (two-person rule, face crops, face retention): ``HOME/settings.db``."""
        from faceprint.audit.pgparts import open_settings

        return self._once("_settings_store", lambda: open_settings(self.home, self.store_url))

    @property
    def reviews(self) -> Reviews:
        """The review of search candidates (``faceprint.audit.review``): the queue in ``HOME/audit/reviews.db``."""
        from faceprint.audit.pgparts import open_reviews

        return self._once("_reviews", lambda: open_reviews(self.home, self.store_url, self.audit_log,
                                                           self.settings_store, clock=time.time))

    def request_review(self, search_id: int, face_ids: list[str] | None = None, caller: Caller | None = None, *,
                       purpose: str | None = None, case: str | None = None) -> dict[str, Any]:
        """Put candidates of search ``search_id`` (its audit entry's id; ``face_ids``, default all) in the
        review queue: ``{"SearchId", "Candidates": [...]}``."""
        from faceprint.audit.caller import os_caller

        person = (caller or os_caller()).with_declared(purpose, case)
        found = self.reviews.request(search_id, face_ids, person)
        return {"SearchId": search_id, "Candidates": [r.to_json() for r in found]}

    def review_candidate(self, search_id: int, face_id: str, decision: str, note: str | None = None,
                         caller: Caller | None = None, *, purpose: str | None = None,
                         case: str | None = None) -> dict[str, Any]:
        """Decide on one candidate of a search (CONFIRMED, REJECTED or INCONCLUSIVE), recorded in the audit
        log first: ``{"Candidate": {...}}`` with its status after the decision."""
        from faceprint.audit.caller import os_caller

        person = (caller or os_caller()).with_declared(purpose, case)
        return {"Candidate": self.reviews.decide(search_id, face_id, decision, person, note).to_json()}

    def get_review(self, search_id: int) -> dict[str, Any]:
        """Every candidate of a search and its review: ``{"SearchId", "Candidates": [...]}``."""
        return {"SearchId": search_id, "Candidates": [r.to_json() for r in self.reviews.get(search_id)]}

    def list_reviews(self, status: str | None = None, collection_id: str | None = None, max_results: int = 100,
                     next_token: str | None = None) -> dict[str, Any]:
        """The review queue, oldest first: ``{"Candidates": [...], "NextToken"?}``."""
        from faceprint.audit.review import list_page

        return list_page(self.reviews, status, collection_id, max_results, next_token)

    def describe_collection_settings(self, collection_id: str) -> dict[str, Any]:
        """A collection's own settings: ``{"CollectionId", "TwoPersonRule", "KeepFaceCrops", "FaceRetentionDays"}``."""
        self.collections.collection(collection_id)
        return {"CollectionId": collection_id, **self.settings_store.get(collection_id).to_json()}

    def update_collection_settings(self, collection_id: str, two_person_rule: bool | None = None,
                                   keep_face_crops: bool | None = None, face_retention_days: Any = KEEP,
                                   caller: Caller | None = None, *, purpose: str | None = None,
                                   case: str | None = None) -> dict[str, Any]:
        """Change a collection's own settings (``face_retention_days=None``: no retention); a change is
        recorded first ("CollectionSettingsChanged"). Answers the settings now in force."""
        from faceprint.audit.caller import resolve

        person = resolve(caller, purpose, case)
        started = time.time()
        self.collections.collection(collection_id)
        after, changed = self.settings_store.change(
            collection_id, lambda before: before.changed(two_person_rule, keep_face_crops, face_retention_days),
            lambda before, after: self.recorder.changed("CollectionSettingsChanged", person, collection_id,
                                                        started=started, details={"Before": before.to_json(),
                                                                                  "After": after.to_json()}))
        if changed:
            self.reviews.rule_changed(collection_id)
        return {"CollectionId": collection_id, **after.to_json()}

    # -- erasure and face retention (faceprint.erasure) --------------------------------------------
    @property
    def crops(self) -> CropStore:
        """Face crops of the collections that keep them (``HOME/crops``, or the PostgreSQL store's
        database, every node's; see ``faceprint.crops``)."""
        from faceprint.crops import open_crop_store

        return self._once("_crops", lambda: open_crop_store(self.home, self.store_url))

    def eraser(self) -> Eraser:
        """The :class:`faceprint.erasure.Eraser` of this home (its video results and stream events
        where the home has them), recording through :attr:`recorder`."""
        from faceprint.erasure import Eraser
        from faceprint.streams.store import is_shared, open_processor_store
        from faceprint.video.store import open_job_store

        jobs = (self.video.store if self._video is not None or is_postgres(self.store_url)  # one pool a Faceprint
                else open_job_store(self.home, self.store_url, existing=True))
        events = (self.streams.store if is_shared(self.store_url)  # one connection pool a Faceprint, not one an erasure
                  else open_processor_store(self.home, self.store_url, existing=True))
        recorder = self.recorder
        return Eraser(self.store, self.index_cache, self._index_lock, self.crops, self.settings_store,
                      recorder.changed, log=recorder.log, probes=self.probe_store, jobs=jobs, events=events,
                      snapshots=self._snapshot_folders(), clock=time.time,
                      probe_retention_days=self.audit_settings.probe_retention_days)

    def _snapshot_folders(self) -> list[Path]:
        """The folders where this home's file sinks keep match snapshots (``faceprint data-streams``
        and the server's ``--data-stream``)."""
        from faceprint.erasure import snapshot_folders
        from faceprint.streams.config import StreamConfig

        settings = self._stream_settings
        return snapshot_folders(StreamConfig(self.home, settings.sources if settings else None,
                                             settings.data_streams if settings else None))

    def erase(self, external_image_id: str | None = None, user_id: str | None = None,
              collection_id: str | None = None, *, caller: Caller | None = None, purpose: str | None = None,
              case: str | None = None) -> dict[str, Any]:
        """Remove one person everywhere (audited: ``Erase``): the faces with ``external_image_id`` (or
        the user ``user_id``, its faces and itself) in every collection (or ``collection_id``), their
        crops, their matches in video face-search results and stream events, and the stored probes of
        searches that found them. Answers what was erased (``faceprint.erasure.Eraser.erase``)."""
        from faceprint.audit.caller import resolve

        who = resolve(caller, purpose, case)
        return self.eraser().erase(who, external_image_id, user_id, collection_id)

    def compact(self, collection_ids: list[str] | None = None) -> dict[str, Any]:
        """Rewrite now what deleted faces' bytes may still sit in: with the PostgreSQL store, the
        collections ``collection_ids`` (None: all; each locked while rewritten) and the crops and
        probes tables (:mod:`faceprint.compaction`); the embedded store erases as it deletes."""
        from faceprint.compaction import compact

        return compact(self.store, {"Crops": self.crops, "Probes": self.probe_store}, collection_ids)

    def apply_retention(self, now: float | None = None, *, caller: Caller | None = None, purpose: str | None = None,
                        case: str | None = None) -> dict[str, Any]:
        """Delete the faces older than their collection's face retention period (audited:
        ``RetentionDeleted``, by ``caller``, default the OS user); run by ``faceprint retention apply``
        and periodically by ``faceprint.erasure.RetentionSchedule`` (as ``face-retention``, a system caller)."""
        from faceprint.audit.caller import resolve

        who = resolve(caller, purpose, case)
        return self.eraser().apply_retention(now, who)
