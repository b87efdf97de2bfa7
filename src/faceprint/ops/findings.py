"""What ``faceprint doctor`` reports: a finding per check (``ok``, ``warn``, ``fail``) about a deployment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OK, WARN, FAIL = "ok", "warn", "fail"
CONNECT_TIMEOUT = 5
"""Seconds to wait for PostgreSQL or Milvus."""


@dataclass
class Finding:
    check: str
    status: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"Check": self.check, "Status": self.status, "Detail": self.detail}


@dataclass
class Deployment:
    home: Path
    store_url: str | None
    index_url: str | None
    profile: str
    models_dir: Path
