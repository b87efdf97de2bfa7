"""Where stream processors read and write: camera URLs by Kinesis video stream name, and sinks by
Kinesis data stream name.

Rekognition names a Kinesis video stream ARN as a processor's input and a Kinesis data stream
ARN as its output; faceprint maps the stream *names* in those ARNs to camera URLs and to sinks,
the way ``--bucket NAME=DIR`` maps S3 buckets. The maps live in the home
(``HOME/streams/sources.json`` and ``HOME/streams/data-streams.json``, both 0600: camera URLs
carry passwords) and may be overridden by the server's flags (``--stream NAME=URL``,
``--data-stream NAME=SINK``). Nothing here ever shows a URL or a sink spec unredacted: listings
and error messages go through :func:`redact` and :meth:`SinkSpec.display`.

Sources (:func:`parse_source_url`): ``rtsp://`` (TCP; ``?transport=udp`` for UDP), ``rtsps://``,
``http(s)://`` (MJPEG or HLS), ``udp://HOST:PORT`` (MPEG-TS), ``rtsp-listen://HOST:PORT/PATH``
(faceprint listens; the camera pushes) and ``file:///PATH`` (played at its real rate; ``?loop=1``
loops). SRT is refused: this PyAV build has no libsrt.

Sinks (:func:`parse_sink`): ``file:/abs/path.jsonl``, ``http(s)://...`` (webhook),
``kinesis:ENDPOINT_URL#STREAM`` (``kinesis:aws#STREAM`` for AWS's own endpoint), each with the
options ``;matches-only`` and ``;snapshots`` after it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from faceprint.errors import FaceprintError, InvalidParameterException, shown
from faceprint.home import FILE_MODE, lock_held, private_folder

STREAMS_DIR = "streams"
SOURCES_FILE = "sources.json"
DATA_STREAMS_FILE = "data-streams.json"
CONFIG_LOCK = "config.lock"
HOST_LOCK = "host.lock"
NAME = re.compile(r"[a-zA-Z0-9_.\-]{1,256}")
"""A Kinesis video stream's name (and, narrower in AWS, a data stream's): the names mapped here."""
KINESIS_NAME = re.compile(r"[a-zA-Z0-9_.\-]{1,128}")
KVS_ARN = re.compile(r"arn:([a-z\d-]+):kinesisvideo:([a-z\d-]+):\d{12}:stream/([a-zA-Z0-9_.\-]{1,256})(?:/\d{1,20})?")
KINESIS_ARN = re.compile(r"arn:([a-z\d-]+):kinesis:([a-z\d-]+):\d{12}:stream/([a-zA-Z0-9_.\-]{1,128})")
MAX_URL = 4096
"""Characters of a camera URL or a sink spec."""
MAX_SINKS = 16
"""Sinks of one data stream."""
SINK_OPTIONS = {"matches-only": "matches_only", "snapshots": "snapshots"}
SOURCE_SCHEMES = ("rtsp", "rtsps", "http", "https", "udp", "rtsp-listen", "file")
SECRET_KEYS = re.compile(r"pass|pwd|token|key|secret|sig|auth|cred|session", re.IGNORECASE)
"""Query keys whose values :func:`redact` hides (password, access_token, X-Amz-Signature, ...)."""
PATH_PIECES = re.compile(r"([/;&?])")
"""What separates ``KEY=VALUE`` pieces in a URL's path (``/user=admin&password=...``, ``;token=...``)."""
HIDDEN = "***"


def streams_folder(home: Path) -> Path:
    """``HOME/streams``, private (0700)."""
    return private_folder(Path(home) / STREAMS_DIR)


def host_lock_path(home: Path) -> Path:
    """The file the home's one stream host holds an exclusive ``flock`` on while it runs."""
    return Path(home) / STREAMS_DIR / HOST_LOCK


def host_running(home: Path) -> bool:
    """True when some process holds the home's host lock (a stream host runs processors now)."""
    return lock_held(host_lock_path(home))


# -- redaction --------------------------------------------------------------------------------------


def redact(url: str) -> str:
    """``url`` with its user name and password replaced by ``***``, and the values of query keys
    that look secret (password, token, key, secret, signature, credential...) too, in the query and
    in the path (``/user=admin&password=...`` or ``;token=...``, as some cameras take them).
    Something that is not a URL (no ``scheme://``; it may be a mistyped password) or cannot be
    parsed as one is hidden whole."""
    if not isinstance(url, str) or "://" not in url:
        return HIDDEN
    try:
        parts = urlsplit(url)
        password = parts.password
    except (ValueError, TypeError, AttributeError):
        return HIDDEN
    netloc = parts.netloc
    scheme_end = url.find("://")
    if scheme_end >= 0 and "@" in url[scheme_end + 3 + len(netloc):]:
        # an unencoded '/', '?' or '#' in a password: all up to the last '@' may be the user and password
        scheme = url[:scheme_end]
        rest = redact(f"{scheme}://{url[url.rindex('@') + 1:]}")[len(scheme) + 3:]
        return f"{scheme}://{HIDDEN}:{HIDDEN}@{rest}"
    if "@" in netloc:
        hostport = netloc.rpartition("@")[2]
        netloc = f"{HIDDEN}:{HIDDEN}@{hostport}" if password is not None else f"{HIDDEN}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{quote(k, safe='')}={HIDDEN if SECRET_KEYS.search(k) else quote(v, safe='/:,')}"
                         for k, v in pairs)
    path = "".join(piece for piece, _ in _path_pieces(parts.path))
    return urlunsplit((parts.scheme, netloc, path, query, HIDDEN if parts.fragment else ""))


def path_secrets(path: str) -> list[str]:
    """The values :func:`redact` hides in a URL's ``path`` (``/user=admin&password=X``: ``X``)."""
    return [value for _, value in _path_pieces(path) if value]


def _path_pieces(path: str) -> Iterator[tuple[str, str | None]]:
    """The pieces of ``path`` (separators included, in order) with the values of secret-looking
    ``KEY=VALUE`` pieces hidden, each with the value it hid (None for the others). Linear in the path."""
    for piece in PATH_PIECES.split(path):
        found = SECRET_KEYS.search(piece)
        cut = piece.find("=", found.end()) if found else -1
        if cut >= 0 and cut + 1 < len(piece):  # all after the first '=' behind a secret-looking word
            yield f"{piece[:cut + 1]}{HIDDEN}", piece[cut + 1:]
        else:
            yield piece, None


def redact_all(url: str) -> str:
    """``url`` as ``scheme://host[:port]/`` and, when it has more (a path, a query, a user), ``***~``
    and a short digest of its path: for webhooks, whose path is often the secret (capability URLs
    such as ``https://hooks.example/services/T0/B0/XXXX``, long and random); the digest tells two
    such URLs apart. It never covers a password or a query, which may be short enough to guess
    from a digest."""
    try:
        parts = urlsplit(url)
        hostport = parts.netloc.rpartition("@")[2]
    except ValueError:
        return HIDDEN
    if "://" not in url or not hostport:
        return HIDDEN
    base = f"{parts.scheme}://{hostport}/"
    if url == base or url == base[:-1]:
        return base
    digest = hashlib.sha256(f"{base}{parts.path}".encode(errors="replace")).hexdigest()[:8]
    return f"{base}{HIDDEN}~{digest}"


def _shown(text: Any) -> str:
    """What an error message may say of a value: redacted, and short."""
    return shorten(redact(text) if isinstance(text, str) else type(text).__name__)


def show(value: Any, most: int = 200) -> str:
    """A request's value as an error message may show it: text that may hold a URL (``://``, ``@``)
    redacted, all of it short whatever its size; a huge integer by its size (Python refuses to write
    one of more than 4300 digits); a list or an object by its type."""
    if isinstance(value, str):
        if len(value) > MAX_URL and ("://" in value or "@" in value):
            return f"(text of {len(value)} characters)"
        return shorten(redact(value) if "://" in value or "@" in value else repr(value), most)
    return shown(value, most)


def shorten(text: str, most: int = 200) -> str:
    """``text`` cut to ``most`` characters (an error message's size never follows a request's)."""
    return text if len(text) <= most else text[:most] + "..."


# -- sources ------------------------------------------------------------------------------------------


def parse_source_url(url: str) -> str:
    """``url`` checked as a camera URL (see the module's text) and answered unchanged;
    ``InvalidParameterException`` saying what is wrong otherwise."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise InvalidParameterException(f"A camera URL must be text of 1 to {MAX_URL} characters.")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise InvalidParameterException(f"The camera URL {_shown(url)} holds spaces or control characters.")
    scheme = url.partition(":")[0].lower()
    if scheme == "srt":
        raise InvalidParameterException("SRT is not offered: this PyAV build has no libsrt.")
    if scheme not in SOURCE_SCHEMES or "://" not in url:
        raise InvalidParameterException(
            f"The camera URL {_shown(url)} is not one faceprint reads: use rtsp://, rtsps://, http(s):// "
            "(MJPEG or HLS), udp://HOST:PORT (MPEG-TS), rtsp-listen://HOST:PORT/PATH or file:///PATH.")
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise InvalidParameterException(f"The camera URL {_shown(url)} is not a URL: {exc}.") from None
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if scheme == "file":
        _check_file_source(url, parts.netloc, parts.path, query)
    elif not host:
        raise InvalidParameterException(f"The camera URL {_shown(url)} names no host.")
    elif scheme in ("udp", "rtsp-listen") and port is None:
        raise InvalidParameterException(f"The camera URL {_shown(url)} needs a port ({scheme}://HOST:PORT).")
    elif scheme == "rtsp" and query.get("transport", "tcp") not in ("tcp", "udp"):
        raise InvalidParameterException(f"The camera URL {_shown(url)}: transport must be tcp or udp.")
    return url


def _check_file_source(url: str, netloc: str, path: str, query: dict[str, str]) -> None:
    if netloc or not path.startswith("/"):
        raise InvalidParameterException(f"The camera URL {_shown(url)} must be file:///ABSOLUTE/PATH.")
    if query.get("loop", "0") not in ("0", "1"):
        raise InvalidParameterException(f"The camera URL {_shown(url)}: loop must be 0 or 1.")


# -- sinks ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SinkSpec:
    """Where a data stream's records go: ``kind`` "file", "webhook" or "kinesis"; ``target`` the
    file's path, the webhook's URL or the Kinesis endpoint URL ("aws": boto3's own endpoint for
    the region); ``stream`` the Kinesis stream name. ``text`` is the spec as given and may hold
    secrets: it is never shown (``display()`` is)."""

    kind: str
    target: str
    stream: str | None
    matches_only: bool = False
    snapshots: bool = False
    text: str = ""

    def display(self) -> str:
        """The spec with its secrets hidden, for listings, describe and metrics labels."""
        if self.kind == "file":
            shown = f"file:{self.target}"
        elif self.kind == "kinesis":
            endpoint = self.target if self.target == "aws" else redact(self.target)
            shown = f"kinesis:{endpoint}#{self.stream}"
        else:
            shown = redact_all(self.target)
        options = [word for word, attr in SINK_OPTIONS.items() if getattr(self, attr)]
        return ";".join([shown, *options])

    def __repr__(self) -> str:  # a SinkSpec in a log or a traceback shows no secret
        return f"SinkSpec({self.display()!r})"


def parse_sink(text: str) -> SinkSpec:
    """A sink spec (see the module's text) parsed; ``InvalidParameterException`` otherwise."""
    if not isinstance(text, str) or not text or len(text) > MAX_URL:
        raise InvalidParameterException(f"A sink must be text of 1 to {MAX_URL} characters.")
    if any(ord(c) < 33 or ord(c) == 127 for c in text):
        raise InvalidParameterException(f"The sink {_shown(text)} holds spaces or control characters.")
    body, options = _split_options(text)
    kind, target, stream = _sink_target(body, text)
    if options.get("snapshots") and kind == "kinesis":
        raise InvalidParameterException("Snapshots are kept by file and webhook sinks, not by Kinesis ones.")
    return SinkSpec(kind, target, stream, text=text, **options)


def _split_options(text: str) -> tuple[str, dict[str, bool]]:
    options: dict[str, bool] = {}
    body = text
    while ";" in body:
        head, _, word = body.rpartition(";")
        if word not in SINK_OPTIONS:
            break
        if SINK_OPTIONS[word] in options:
            raise InvalidParameterException(f"The sink {_shown(text)} gives ;{word} twice.")
        options[SINK_OPTIONS[word]] = True
        body = head
    return body, options


def _sink_target(body: str, text: str) -> tuple[str, str, str | None]:
    scheme = body.partition(":")[0].lower()
    if scheme == "file":
        path = body[len("file:"):]
        if path.startswith("//"):
            path = path[2:]
        if not path.startswith("/") or path.endswith("/"):
            raise InvalidParameterException(f"The sink {_shown(text)} must be file:/ABSOLUTE/PATH of a file.")
        return "file", path, None
    if scheme in ("http", "https"):
        _check_http(body, text, "webhook sink")
        return "webhook", body, None
    if scheme == "kinesis":
        endpoint, hash_, stream = body[len("kinesis:"):].rpartition("#")
        if not hash_ or not KINESIS_NAME.fullmatch(stream):
            raise InvalidParameterException(f"The sink {_shown(text)} must be kinesis:ENDPOINT_URL#STREAM "
                                            f"with STREAM matching {KINESIS_NAME.pattern}.")
        if endpoint != "aws":
            _check_http(endpoint, text, "Kinesis endpoint")
        return "kinesis", endpoint, stream
    raise InvalidParameterException(
        f"The sink {_shown(text)} is not one faceprint writes to: use file:/PATH (JSON lines), http(s)://URL "
        "(webhook) or kinesis:ENDPOINT_URL#STREAM (kinesis:aws#STREAM for AWS), with ;matches-only or ;snapshots.")


def _check_http(url: str, text: str, what: str) -> None:
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        host = None
    if not host or urlsplit(url).scheme.lower() not in ("http", "https"):
        raise InvalidParameterException(f"The sink {_shown(text)}: the {what} must be an http:// or https:// URL "
                                        "with a host.")


# -- ARNs ---------------------------------------------------------------------------------------------------


def kvs_stream_name(arn: str) -> str:
    """The stream name of a Kinesis video stream ARN (``arn:aws:kinesisvideo:R:A:stream/NAME/123``)."""
    return _stream_name(arn, KVS_ARN, "KinesisVideoStream.Arn", "a Kinesis video stream ARN such as "
                        "arn:aws:kinesisvideo:us-east-1:123456789012:stream/NAME/1234567890123")


def kinesis_stream_name(arn: str) -> str:
    """The stream name of a Kinesis data stream ARN (``arn:aws:kinesis:R:A:stream/NAME``)."""
    return _stream_name(arn, KINESIS_ARN, "KinesisDataStream.Arn", "a Kinesis data stream ARN such as "
                        "arn:aws:kinesis:us-east-1:123456789012:stream/NAME")


def _stream_name(arn: Any, pattern: re.Pattern[str], where: str, expected: str) -> str:
    found = pattern.fullmatch(arn) if isinstance(arn, str) and len(arn) <= 2048 else None
    if found is None:
        raise InvalidParameterException(f"{where} {show(arn)} is not {expected}.")
    return found.group(3)


def check_name(name: Any, what: str = "stream") -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        shown = HIDDEN if isinstance(name, str) and ":" in name else show(name)
        raise InvalidParameterException(f"The {what} name {shown} must match {NAME.pattern}.")
    return name


# -- the maps ---------------------------------------------------------------------------------------------


class StreamConfig:
    """``HOME/streams/sources.json`` and ``HOME/streams/data-streams.json`` (0600), plus overrides
    (the server's ``--stream`` and ``--data-stream``), which win over the home's entries of the
    same name. The home files are read at each call, so a ``faceprint streams add`` is seen by a
    running server; they are written atomically under a lock (``config.lock``)."""

    def __init__(self, home: Path, sources: Mapping[str, str] | None = None,
                 data_streams: Mapping[str, Sequence[str]] | None = None) -> None:
        self.home = Path(home)
        self._sources = {check_name(k): parse_source_url(v) for k, v in (sources or {}).items()}
        self._data_streams: dict[str, list[str]] = {}
        for name, specs in (data_streams or {}).items():
            check_name(name, "data stream")
            texts = [specs] if isinstance(specs, str) else list(specs) if isinstance(specs, list | tuple) else None
            if texts is None or len(texts) > MAX_SINKS:
                raise InvalidParameterException(f"The data stream {name} needs a list of 1 to {MAX_SINKS} sinks.")
            self._data_streams[name] = _unique([parse_sink(s).text for s in texts])

    @property
    def folder(self) -> Path:
        return self.home / STREAMS_DIR

    def overrides(self) -> tuple[dict[str, str], dict[str, list[str]]]:
        """The sources and data streams given to the constructor (what a host's runner passes on)."""
        return dict(self._sources), {k: list(v) for k, v in self._data_streams.items()}

    # -- sources --
    def add_source(self, name: str, url: str) -> None:
        check_name(name)
        parse_source_url(url)
        with self._editing(SOURCES_FILE) as entries:
            entries[name] = url

    def remove_source(self, name: str) -> bool:
        with self._editing(SOURCES_FILE) as entries:
            return entries.pop(name, None) is not None

    def sources(self) -> dict[str, str]:
        found = {k: v for k, v in self._read(SOURCES_FILE).items() if isinstance(v, str)}
        return found | self._sources

    def source_url(self, name: str) -> str | None:
        return self.sources().get(name) if isinstance(name, str) else None

    # -- data streams --
    def add_data_stream(self, name: str, spec: str) -> None:
        check_name(name, "data stream")
        text = parse_sink(spec).text
        with self._editing(DATA_STREAMS_FILE) as entries:
            specs = [s for s in entries.get(name, []) if isinstance(s, str)]
            if text not in specs:
                if len(specs) >= MAX_SINKS:
                    raise InvalidParameterException(f"The data stream {name} has {MAX_SINKS} sinks already.")
                specs.append(text)
            entries[name] = specs

    def remove_data_stream(self, name: str) -> bool:
        with self._editing(DATA_STREAMS_FILE) as entries:
            return entries.pop(name, None) is not None

    def data_streams(self) -> dict[str, list[str]]:
        found = {k: [s for s in v if isinstance(s, str)] for k, v in self._read(DATA_STREAMS_FILE).items()
                 if isinstance(v, list)}
        return found | {k: list(v) for k, v in self._data_streams.items()}

    def sinks_of(self, name: str) -> list[SinkSpec]:
        """The sinks of data stream ``name`` ([] when it is not mapped)."""
        return [parse_sink(text) for text in self.data_streams().get(name, [])] if isinstance(name, str) else []

    def listing(self) -> dict[str, Any]:
        """Both maps, redacted, for ``faceprint streams list`` and ``faceprint data-streams list``."""
        streams = [{"Name": name, "Url": redact(url), "From": "server" if name in self._sources else "home"}
                   for name, url in sorted(self.sources().items())]
        data = [{"Name": name, "Sinks": [_display(text) for text in specs],
                 "From": "server" if name in self._data_streams else "home"}
                for name, specs in sorted(self.data_streams().items())]
        return {"Streams": streams, "DataStreams": data}

    # -- files --
    def _read(self, file: str) -> dict[str, Any]:
        path = self.folder / file
        try:
            value = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise FaceprintError(f"The stream configuration file {path} cannot be read: {exc}") from None
        if not isinstance(value, dict):
            raise FaceprintError(f"The stream configuration file {path} is damaged: it should hold an object.")
        return value

    @contextlib.contextmanager
    def _editing(self, file: str) -> Iterator[dict[str, Any]]:
        folder = streams_folder(self.home)
        fd = os.open(folder / CONFIG_LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            entries = self._read(file)
            yield entries
            _write_private(folder / file, json.dumps(entries, indent=1, sort_keys=True) + "\n")
        finally:
            os.close(fd)


def _display(text: str) -> str:
    try:
        return parse_sink(text).display()
    except InvalidParameterException:
        return HIDDEN


def _unique(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(texts))


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically; the file is 0600 from its first byte."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
