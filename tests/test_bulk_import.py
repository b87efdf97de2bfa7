"""Bulk import: both cores, resume after kill -9 with nothing lost and nothing twice."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import FACES, models_dir
from contract import output_shape, validate

LFW_IMAGES = FACES / "lfw-dev" / "images"


def folders(count: int) -> list[str]:
    return [str(p) for p in sorted(LFW_IMAGES.iterdir())[:count]]


def cli(home: Path, *args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, FACEPRINT_MODELS_DIR=str(models_dir()))
    return subprocess.Popen([sys.executable, "-m", "faceprint.cli", "--home", str(home), "--profile", "fast",
                             *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_kill_9_during_import_then_rerun(tmp_path: Path, data) -> None:
    from faceprint.bulk import find_images
    from faceprint.service import Faceprint

    paths = folders(60)
    images = find_images(paths)
    fp = Faceprint(tmp_path, profile="fast", models_dir=models_dir())
    fp.create_collection("c")

    run = cli(tmp_path, "index-faces", "--collection-id", "c", "--jsonl", "--workers", "2", *paths,
              start_new_session=True)
    acked = []
    for line in run.stdout:
        acked.append(json.loads(line))
        if len(acked) >= 25:
            break
    os.killpg(run.pid, signal.SIGKILL)  # the importer and its workers, mid-import
    run.wait(timeout=30)
    assert run.returncode == -signal.SIGKILL

    reopened = Faceprint(tmp_path, profile="fast", models_dir=models_dir())
    stored = {f.face_id for f in reopened.list_faces("c", max_results=4096).faces}
    acked_faces = [face for record in acked for face in record["FaceIds"]]
    assert acked_faces and set(acked_faces) <= stored  # every acknowledged face survived

    rerun = cli(tmp_path, "index-faces", "--collection-id", "c", *paths)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    summary = json.loads(out)["Summary"]
    assert summary["SkippedAlreadyIndexed"] >= len(acked)
    assert summary["Images"] == len(images)

    reference = Faceprint(tmp_path / "ref", profile="fast", models_dir=models_dir())
    reference.create_collection("c")
    from faceprint.bulk import BulkImporter

    expected = BulkImporter(reference, "c", workers=2).run(images)
    final = reopened.list_faces("c", max_results=4096).faces
    assert len(final) == expected.faces_indexed  # complete, and no image indexed twice
    assert len({f.image_id for f in final}) == expected.indexed_images
    assert reopened.store.imported("c") and len(reopened.store.imported("c")) == len(images)


def children_of(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except (OSError, IndexError):
        return False


def test_workers_exit_when_the_importer_is_killed(tmp_path: Path, data) -> None:
    from faceprint.service import Faceprint

    Faceprint(tmp_path, profile="fast", models_dir=models_dir()).create_collection("c")
    run = cli(tmp_path, "index-faces", "--collection-id", "c", "--jsonl", "--workers", "2", *folders(60),
              start_new_session=True)
    try:
        for _ in range(3):  # the workers are up and busy
            assert json.loads(run.stdout.readline())["FaceIds"] is not None
        workers = children_of(run.pid)
        assert len(workers) >= 2
        os.kill(run.pid, signal.SIGKILL)  # the importer alone, as `kill -9 PID` does
        run.wait(timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(running(pid) for pid in workers):
            time.sleep(0.2)
        assert not [pid for pid in workers if running(pid)], "worker processes outlived the importer"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)  # whatever is left of its process group
        run.wait(timeout=30)


def test_single_image_index_faces_prints_rekognition_json(tmp_path: Path, data) -> None:
    create = cli(tmp_path, "create-collection", "--collection-id", "one")
    assert create.wait(timeout=120) == 0
    image = sorted(LFW_IMAGES.iterdir())[0]
    path = sorted(image.glob("*.jpg"))[0]
    run = cli(tmp_path, "index-faces", "--collection-id", "one", str(path))
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    body = json.loads(out)
    validate(body, output_shape("IndexFaces"))
    assert body["FaceRecords"][0]["Face"]["ExternalImageId"] == path.stem
    search = cli(tmp_path, "search-faces-by-image", "--collection-id", "one", str(path))
    out, err = search.communicate(timeout=120)
    assert search.returncode == 0, err
    assert json.loads(out)["FaceMatches"][0]["Similarity"] > 99
    missing = cli(tmp_path, "describe-collection", "--collection-id", "nope")
    out, err = missing.communicate(timeout=120)
    assert missing.returncode == 1 and json.loads(err)["__type"] == "ResourceNotFoundException"


def test_bulk_import_external_ids_from_csv_and_errors(tmp_path: Path, data) -> None:
    from faceprint.bulk import BulkImporter, find_images, read_external_ids
    from faceprint.service import Faceprint

    folder = tmp_path / "in"
    folder.mkdir()
    good = sorted(sorted(LFW_IMAGES.iterdir())[1].glob("*.jpg"))[0]
    (folder / "a.jpg").write_bytes(good.read_bytes())
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("ignored")
    table = tmp_path / "ids.csv"
    table.write_text("path,external_image_id\na.jpg,suspect-17\n")
    fp = Faceprint(tmp_path / "home", profile="fast", models_dir=models_dir())
    fp.create_collection("c")
    summary = BulkImporter(fp, "c", workers=1).run(find_images([folder]), read_external_ids(table))
    assert summary.images == 2 and summary.faces_indexed >= 1
    assert summary.errors == {"InvalidImageFormatException": 1}
    assert {f.external_image_id for f in fp.list_faces("c").faces} == {"suspect-17"}
