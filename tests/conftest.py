"""Shared fixtures: the real data beside the project and real, shared model files."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FACEPRINT_TEST_DATA", ROOT.parent / "shared" / "data"))
FACES = DATA / "faces"
LFW = FACES / "lfw-dev"


def models_dir() -> Path:
    """Model files are cached across runs (they are verified by SHA-256 on every load)."""
    env = os.environ.get("FACEPRINT_MODELS_DIR")
    return Path(env) if env else Path.home() / ".faceprint" / "models"


@pytest.fixture(scope="session")
def data() -> Path:
    assert DATA.is_dir(), f"test data not found at {DATA} (see README: ../shared/data)"
    return DATA


@pytest.fixture(scope="session")
def fp(tmp_path_factory: pytest.TempPathFactory):
    from faceprint.service import Faceprint

    return Faceprint(tmp_path_factory.mktemp("home"), models_dir=models_dir())


@pytest.fixture(scope="session")
def fast(tmp_path_factory: pytest.TempPathFactory):
    from faceprint.service import Faceprint

    return Faceprint(tmp_path_factory.mktemp("home-fast"), profile="fast", models_dir=models_dir())


def lfw_image(name: str, number: int) -> Path:
    return LFW / "images" / name / f"{name}_{number:04d}.jpg"


def lfw_pairs(split: str) -> list[tuple[Path, Path, bool]]:
    """LFW View 1 pairs: (image a, image b, same person)."""
    lines = (LFW / f"pairs{split}.txt").read_text().split("\n")[1:]
    pairs = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            pairs.append((lfw_image(parts[0], int(parts[1])), lfw_image(parts[0], int(parts[2])), True))
        elif len(parts) == 4:
            pairs.append((lfw_image(parts[0], int(parts[1])), lfw_image(parts[2], int(parts[3])), False))
    return pairs


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """``check()``'s first truthy answer, asked every 0.1 s; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}")
        time.sleep(0.1)


def same_from_threads(work: Callable[[], list[Any]], atol: float, threads: int = 4) -> None:
    """``work()`` run in ``threads`` threads at once answers what it answers alone (within ``atol``)."""
    import threading

    import numpy as np

    expected = work()
    answers: list[list[Any]] = []
    workers = [threading.Thread(target=lambda: answers.append(work())) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(answers) == threads
    for answer in answers:
        for got, want in zip(answer, expected, strict=True):
            np.testing.assert_allclose(got, want, atol=atol)
