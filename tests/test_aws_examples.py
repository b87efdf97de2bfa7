"""AWS's own DetectFaces examples against `faceprint serve`: the code as AWS publishes it, run
unchanged in a fresh Python process whose AWS configuration points at the server (a named profile
and the SDK's standard ``AWS_ENDPOINT_URL_REKOGNITION`` variable), with only the values the page
tells the reader to change (photo, bucket, region). Before faceprint filled the ALL attributes,
these stopped with ``KeyError: 'AgeRange'``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import FACES, ROOT
from serverkit import REGION, Server, photo_server

ASTRONAUT = ROOT / "samples" / "astronaut.jpg"
GROUP = FACES / "identities" / "faceapi_bbt" / "group" / "bbt2.jpg"

# Amazon Rekognition Developer Guide, "Detecting faces in an image", Python example
# (https://docs.aws.amazon.com/rekognition/latest/dg/faces-detect-images.html; sample code under
# MIT-0, https://github.com/awsdocs/amazon-rekognition-developer-guide/blob/master/LICENSE-SAMPLECODE).
# As published; the page says to change photo, bucket and region, and only they are changed.
DETECT_FACES_EXAMPLE = """\
import boto3
import json

def detect_faces(photo, bucket, region):

    session = boto3.Session(profile_name='profile-name',
                            region_name=region)
    client = session.client('rekognition', region_name=region)

    response = client.detect_faces(Image={'S3Object':{'Bucket':bucket,'Name':photo}},
                                   Attributes=['ALL'])

    print('Detected faces for ' + photo)
    for faceDetail in response['FaceDetails']:
        print('The detected face is between ' + str(faceDetail['AgeRange']['Low'])
              + ' and ' + str(faceDetail['AgeRange']['High']) + ' years old')

        print('Here are the other attributes:')
        print(json.dumps(faceDetail, indent=4, sort_keys=True))

        # Access predictions for individual face details and print them
        print("Gender: " + str(faceDetail['Gender']))
        print("Smile: " + str(faceDetail['Smile']))
        print("Eyeglasses: " + str(faceDetail['Eyeglasses']))
        print("Face Occluded: " + str(faceDetail['FaceOccluded']))
        print("Emotions: " + str(faceDetail['Emotions'][0]))

    return len(response['FaceDetails'])

def main():
    photo='astronaut.jpg'
    bucket='photos'
    region='us-east-1'
    face_count=detect_faces(photo, bucket, region)
    print("Faces detected: " + str(face_count))

if __name__ == "__main__":
    main()
"""

# The same page's Python example as first published (2018; awsdocs/amazon-rekognition-developer-guide,
# doc_source/faces-detect-images.md): a default client and S3Object. photo and bucket changed (and two
# lines' trailing spaces dropped).
DETECT_FACES_EXAMPLE_2018 = """\
import boto3
import json

if __name__ == "__main__":
    photo='astronaut.jpg'
    bucket='photos'
    client=boto3.client('rekognition')

    response = client.detect_faces(Image={'S3Object':{'Bucket':bucket,'Name':photo}},Attributes=['ALL'])

    print('Detected faces for ' + photo)
    for faceDetail in response['FaceDetails']:
        print('The detected face is between ' + str(faceDetail['AgeRange']['Low'])
              + ' and ' + str(faceDetail['AgeRange']['High']) + ' years old')
        print('Here are the other attributes:')
        print(json.dumps(faceDetail, indent=4, sort_keys=True))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from photo_server(tmp_path_factory, "serve-examples", ASTRONAUT)


def run_example(code: str, server: Server, folder: Path) -> str:
    """Run ``code`` as a script in a fresh process whose AWS configuration (a profile named
    ``profile-name``, as the example expects, and the default one) sends Rekognition calls to
    ``server``; its stdout."""
    (folder / "config").write_text(f"[default]\nregion = {REGION}\n\n[profile profile-name]\nregion = {REGION}\n")
    keys = "aws_access_key_id = EXAMPLE\naws_secret_access_key = example\n"
    (folder / "credentials").write_text(f"[default]\n{keys}\n[profile-name]\n{keys}")
    script = folder / "example.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {
        "AWS_CONFIG_FILE": str(folder / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(folder / "credentials"),
        "AWS_ENDPOINT_URL_REKOGNITION": server.url, "AWS_MAX_ATTEMPTS": "1"}
    done = subprocess.run([sys.executable, str(script)], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def printed_details(stdout: str) -> list[dict[str, Any]]:
    """The FaceDetails the examples print (``json.dumps(faceDetail, indent=4)``: from a line
    ``{`` to the next line ``}``)."""
    return [json.loads(block) for block in re.findall(r"^\{$.*?^\}$", stdout, re.M | re.S)]


@pytest.mark.parametrize("code", [DETECT_FACES_EXAMPLE, DETECT_FACES_EXAMPLE_2018], ids=["current", "2018"])
def test_developer_guide_python_detect_faces_example(code: str, server: Server, tmp_path: Path) -> None:
    stdout = run_example(code, server, tmp_path)
    ages = re.findall(r"^The detected face is between (\d+) and (\d+) years old$", stdout, re.M)
    assert len(ages) == 1, stdout
    low, high = (int(v) for v in ages[0])
    (detail,) = printed_details(stdout)
    assert detail["AgeRange"] == {"Low": low, "High": high}
    assert len(detail["Landmarks"]) == 30 and detail["Gender"]["Value"] == "Female"
    if code is DETECT_FACES_EXAMPLE:
        assert "Faces detected: 1" in stdout and "Face Occluded: {'Value': False" in stdout
        assert re.search(r"^Emotions: \{'Type': 'HAPPY', 'Confidence': [\d.]+\}$", stdout, re.M)


def test_estimate_age_example_logic(server: Server) -> None:
    """The logic of AWS's JavaScript "estimate ages" example (Developer Guide, "Using JavaScript",
    https://docs.aws.amazon.com/rekognition/latest/dg/image-bytes-javascript.html): DetectFaces
    on the image's bytes with Attributes ALL, then a Low/High table row for each face."""
    data = server.client().detect_faces(Image={"Bytes": GROUP.read_bytes()}, Attributes=["ALL"])
    table = "<table><tr><th>Low</th><th>High</th></tr>"
    for i in range(len(data["FaceDetails"])):
        table += ("<tr><td>" + str(data["FaceDetails"][i]["AgeRange"]["Low"]) + "</td><td>" +
                  str(data["FaceDetails"][i]["AgeRange"]["High"]) + "</td></tr>")
    table += "</table>"
    rows = re.findall(r"<tr><td>(\d+)</td><td>(\d+)</td></tr>", table)
    assert len(rows) == 3 and all(int(low) <= int(high) for low, high in rows)
