"""Built-in recipes: known operator profiles whose files come from a published archive.

A recipe pins the archive by SHA-256 (and a member by its own SHA-256 where it is known); it is
never fetched, nor its profile registered, unless the operator names its licence
(``faceprint models add RECIPE --accept-licence LICENCE``). The archive comes from the recipe's
URL, or from ``--from DIR`` holding it (air-gapped sites). A member whose own digest is not
pinned is vouched for by the archive's digest; the registry records the digest it measured in
the profile it writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from faceprint.models.operator import DetectorSpec, OperatorSpec, RecogniserSpec


@dataclass(frozen=True)
class Member:
    role: str
    """"detector" or "recogniser"."""
    name: str
    """The file's name inside the archive (at its root or under one folder)."""
    sha256: str = ""
    """Its own pinned SHA-256; "" where only the archive's digest vouches for it."""


@dataclass(frozen=True)
class Recipe:
    name: str
    """The recipe's name, also the profile's name."""
    version: str
    licence: str
    licence_note: str
    url: str
    archive: str
    """The archive's file name (what ``--from DIR`` must hold)."""
    archive_sha256: str
    archive_size: int
    """Its size in bytes: a download that grows beyond it is stopped."""
    members: tuple[Member, ...]
    detector: DetectorSpec
    recogniser: RecogniserSpec
    description: str = ""

    def member(self, role: str) -> Member:
        return next(m for m in self.members if m.role == role)

    def spec(self, digests: dict[str, str]) -> OperatorSpec:
        """The profile, with each member's digest (``digests``: role -> SHA-256 measured)."""
        det = DetectorSpec(self.detector.kind, self.member("detector").name, digests["detector"],
                           self.detector.score_threshold, self.detector.nms_threshold, self.detector.max_side)
        r = self.recogniser
        rec = RecogniserSpec(r.kind, self.member("recogniser").name, digests["recogniser"], r.input_size, r.mean,
                             r.std, r.colour, r.layout, r.template, r.output_dim)
        return OperatorSpec(self.name, self.version, self.licence, det, rec, self.description)


BUFFALO_L = Recipe(
    name="buffalo_l",
    version="insightface-buffalo_l-0.7",
    licence="insightface-non-commercial",
    licence_note="insightface's model packs are for non-commercial research only; insightface sells "
                 "commercial licences (https://github.com/deepinsight/insightface#license)",
    url="https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
    archive="buffalo_l.zip",
    archive_sha256="80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f",
    archive_size=300 * 1024 * 1024,
    members=(
        Member("detector", "det_10g.onnx"),  # its own digest is not pinned: the archive's vouches for it
        Member("recogniser", "w600k_r50.onnx", "4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43"),
    ),
    detector=DetectorSpec("scrfd", score_threshold=0.5, nms_threshold=0.4, max_side=1920),
    recogniser=RecogniserSpec("arcface", "", "", input_size=112, mean=(127.5, 127.5, 127.5),
                              std=(127.5, 127.5, 127.5), colour="RGB", layout="NCHW", template="arcface",
                              output_dim=512),
    description="insightface buffalo_l: SCRFD-10GF detector, ArcFace ResNet-50 on WebFace600K (512-d)",
)

RECIPES = {r.name: r for r in (BUFFALO_L,)}
