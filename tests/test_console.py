"""The web console in a real Chromium against a real `faceprint serve`: sign-in and lock-out, a
search, a two-person review, a deletion and the audit page (with verify, and a tampered log).
With FACEPRINT_SCREENSHOTS=1 the pages are saved as docs/console/*.png."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import time
from pathlib import Path

import pytest

from consolekit import (
    CLIP_PEOPLE,
    COLLECTION,
    PASSWORD,
    PROCESSOR,
    launch,
    photo,
    shot,
    sign_in,
    small_face,
    start_site,
    text_of,
)

PERSON = "Al_Gore"
PROBE = photo(PERSON, 1)
PROBE_SHA256 = hashlib.sha256(PROBE.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = start_site(tmp_path_factory.mktemp("console"), tmp_path_factory.mktemp("videos"))
    yield site
    site.server.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


DROP = """([data, name]) => {
    const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
    const dropped = new DataTransfer();
    dropped.items.add(new File([bytes], name, {type: "image/jpeg"}));
    document.querySelector("[data-drop]").dispatchEvent(
        new DragEvent("drop", {dataTransfer: dropped, bubbles: true, cancelable: true}));
}"""


def search(page, site, probe, case="CASE-2026-0042", threshold="80.0", drop=False):
    page.goto(f"{site.console}/search")
    if drop:  # dropped on the drop zone, as from a file manager: the script puts it in the form and previews it
        page.evaluate(DROP, [base64.b64encode(Path(probe).read_bytes()).decode(), Path(probe).name])
        assert page.eval_on_selector("input[name=probe]", "input => input.files.length") == 1
    else:
        page.set_input_files("input[name=probe]", probe)
    page.locator("img.preview").wait_for(state="visible")  # the preview (wait_for_function would break the CSP)
    page.fill("input[name=purpose]", "identify a suspect in a burglary")
    page.fill("input[name=case]", case)
    page.select_option("select[name=threshold]", threshold)
    page.click("form.search-form button[type=submit]")
    page.wait_for_load_state()


@pytest.fixture(scope="module")
def lou_locked(site, browser):
    """lou signs in six times, with five wrong passwords and then the right one: whether each page
    said the account is locked, and where the browser ended. Once per module, for whichever test
    asks first (the lock-out test, or the users test, which unlocks lou)."""
    lou = browser.new_context().new_page()
    lou.goto(f"{site.console}/sign-in")
    locked = []
    for attempt in range(1, 7):
        lou.fill("input[name=name]", "lou")
        lou.fill("input[name=password]", PASSWORD if attempt == 6 else f"wrong password {attempt}")
        lou.click("button[type=submit]")
        lou.wait_for_load_state()
        locked.append("locked for 15 more minutes" in text_of(lou))
    return locked, lou.url


def send_to_review(page) -> int:
    """On a search's result page: tick :data:`PERSON`'s candidate, send it to review; the search's id."""
    page.locator("li.card", has_text=PERSON).locator("input[name=face_ids]").check()
    page.click("text=Send ticked candidates to review")
    page.wait_for_load_state()
    return int(page.url.split("/searches/")[1].split("?")[0])


def test_sign_in_wrong_password_and_lock_out(site, browser, lou_locked):
    page = browser.new_context().new_page()
    page.goto(f"{site.console}/search")  # not signed in: to the sign-in page, and back after it
    assert "/console/sign-in" in page.url
    shot(page, "sign-in")
    page.fill("input[name=name]", "ivy")
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    assert "Wrong user name or password" in text_of(page)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/search")
    assert "ivy · investigator" in text_of(page, "header")
    cookie = next(c for c in page.context.cookies() if c["name"] == "faceprint_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console/"
    assert not cookie["secure"]  # plain HTTP here; over HTTPS it is Secure (test_console_tls.py)
    locked, url = lou_locked  # five wrong passwords lock lou out, then the right one is refused too
    assert locked == [False, False, False, False, True, True]
    assert "/sign-in" in url
    page.click("header button")  # sign out: the session ends on the server, not only in this browser
    page.goto(f"{site.console}/search")
    assert "/console/sign-in" in page.url


def test_roles_csrf_and_upload_limit(site, browser):
    ivy = sign_in(browser, site, "ivy")
    response = ivy.goto(f"{site.console}/audit")
    assert response.status == 403 and "does not allow" in text_of(ivy)
    assert "Audit" not in text_of(ivy, "header nav")
    answer = ivy.request.post(f"{site.console}/search", multipart={"purpose": "x", "case": "y"})
    assert answer.status == 403 and "Form expired" in answer.text()  # no CSRF token: refused before any work
    huge = {"name": "big.jpg", "mimeType": "image/jpeg", "buffer": b"\xff\xd8\xff" + b"0" * (6 * 1024 * 1024)}
    ivy.goto(f"{site.console}/search")
    token = ivy.input_value("input[name=csrf]")
    answer = ivy.request.post(f"{site.console}/search", multipart={"csrf": token, "probe": huge})
    assert answer.status == 413  # over the 5 MB image limit (plus room for the fields): not read further
    ada = sign_in(browser, site, "ada")
    answer = ada.request.post(f"{site.console}/collection/delete-faces",
                              form={"csrf": "x", "collection_id": COLLECTION, "face_ids": site.faces[PERSON]})
    assert answer.status == 403  # an auditor reads; never deletes


def test_search_shows_candidates_beside_the_probe_and_sends_them_to_review(site, browser):
    page = sign_in(browser, site, "ivy")
    search(page, site, str(PROBE))
    text = text_of(page)
    assert "Candidates, not identifications" in text and "two reviewers confirm" in text
    card = page.locator("li.card", has_text=PERSON)
    assert card.count() == 1
    assert "% similar" in card.inner_text() and "false-match rate 1 in" in card.inner_text()
    assert card.locator("img").evaluate("img => img.naturalWidth") > 0  # the enrolled face's crop
    assert page.locator("figure.probe img").evaluate("img => img.naturalWidth") > 0
    assert "false-match rate 1 in 10,000 comparisons" in text  # the threshold 80, with its rate
    assert "Low-quality probe" not in text
    shot(page, "search-result")
    search_id = send_to_review(page)
    assert "Sent to review" in text_of(page)
    assert "review: pending" in page.locator("li.card", has_text=PERSON).first.inner_text().lower()
    entries = site.faceprint().list_audit_entries(Operation="SearchFacesByImage")["Entries"]
    entry = next(e for e in entries if e["Seq"] == search_id)
    assert (entry["Actor"], entry["ActorKind"], entry["Case"]) == ("ivy", "console", "CASE-2026-0042")
    assert len(entry["ProbeSha256"]) == 64
    rob = sign_in(browser, site, "rob")  # a reviewer sees any search; another investigator does not
    assert rob.goto(f"{site.console}/searches/{search_id}").status == 200
    ian = sign_in(browser, site, "ian")
    assert ian.goto(f"{site.console}/searches/{search_id}").status == 403
    ian.goto(f"{site.console}/search")
    answer = ian.request.post(f"{site.console}/review/request", form={
        "csrf": ian.input_value("input[name=csrf]"), "search_id": str(search_id), "face_ids": site.faces[PERSON]})
    assert answer.status == 403 and "someone else" in answer.text()


def test_low_quality_probe_is_flagged(site, browser, tmp_path):
    probe = tmp_path / "cctv.jpg"
    probe.write_bytes(small_face(PERSON))
    page = sign_in(browser, site, "ivy", viewport={"width": 390, "height": 844}, device_scale_factor=2)
    search(page, site, str(probe), case="CASE-2026-0043", threshold="70.0", drop=True)
    text = text_of(page)
    assert "Low-quality probe: expect misses and look-alikes" in text
    assert "measured rank-1 at this quality" in text
    shot(page, "search-low-quality-phone")
    ira = sign_in(browser, site, "ira")  # a console user set to refuse such probes
    search(ira, site, str(probe), case="CASE-2026-0044", threshold="70.0")
    assert "low-quality" in text_of(ira).lower() and ira.locator("li.card").count() == 0
    refused = site.faceprint().list_audit_entries(Actor="ira")["Entries"]
    assert [e["Details"].get("Refused") for e in refused] == ["low-quality probe"]


@pytest.fixture(scope="module")
def reviewed(site, browser):
    """The two-person review of a search of ivy's: she sends :data:`PERSON`'s candidate to review,
    rita confirms it twice (the second time with a note), then rob confirms it. What each page showed,
    by step; once per module, for the review test or the audit test, whichever comes first."""
    ivy = sign_in(browser, site, "ivy")
    search(ivy, site, str(PROBE), case="CASE-2026-0045")
    search_id = send_to_review(ivy)
    row = f"li.review[data-search='{search_id}'][data-face='{site.faces[PERSON]}']"
    rita, rob = sign_in(browser, site, "rita"), sign_in(browser, site, "rob")
    seen = {"rita's start page": rita.url, "queued": rita.locator(row).inner_text()}
    from faceprint.audit.probe_store import Probe, ProbeStore

    ProbeStore(site.home / "audit" / "probes").save(Probe.of(PROBE.read_bytes()))  # as with store_probes on
    rita.reload()
    item = rita.locator(row)
    seen["probe width"] = item.locator("figure.probe img").evaluate("img => img.naturalWidth")  # beside it
    seen["candidate width"] = item.locator("figure.candidate img").evaluate("img => img.naturalWidth")
    shot(rita, "review-queue")
    item.locator("button[value=confirm]").click()
    rita.wait_for_load_state()
    seen["rita confirms"] = text_of(rita)
    item = rita.locator(row)
    item.locator("input[name=note]").fill("same ears, same scar")
    item.locator("button[value=confirm]").click()  # the same reviewer again: still one confirmation
    rita.wait_for_load_state()
    seen["rita confirms again"] = text_of(rita)
    rob.reload()
    item = rob.locator(row)
    seen["rob sees"] = item.inner_text()
    item.locator("button[value=confirm]").click()
    rob.wait_for_load_state()
    seen["rob confirms"] = text_of(rob)
    rob.goto(f"{site.console}/review?status=confirmed")
    seen["confirmed"] = text_of(rob)
    seen["confirmed row"] = rob.locator(row).count()
    shot(rob, "review-confirmed")
    return search_id, seen


def test_two_person_review(site, reviewed):
    search_id, seen = reviewed
    assert "/console/review" in seen["rita's start page"]
    assert "probe not kept" in seen["queued"] and PROBE_SHA256 in seen["queued"]  # its digest, at least
    assert seen["probe width"] > 0 and seen["candidate width"] > 0  # once kept, the probe beside the candidate
    assert "it is now awaiting-second (1 of 2 confirmations)" in seen["rita confirms"]
    assert "it is now awaiting-second (1 of 2 confirmations)" in seen["rita confirms again"]
    assert "rita: CONFIRMED" in seen["rob sees"] and "same ears, same scar" in seen["rob sees"]
    assert "it is now confirmed (2 of 2 confirmations)" in seen["rob confirms"]
    assert PERSON in seen["confirmed"] and seen["confirmed row"] == 1
    review = site.faceprint().get_review(SearchId=search_id)["Candidates"]
    assert [(c["FaceId"], c["Status"]) for c in review if c["Status"] != "pending"] == [
        (site.faces[PERSON], "confirmed")]


@pytest.fixture(scope="module")
def face_deleted(site, browser):
    """max deletes Adam_Sandler's face on the collection's page: what the page showed, by step. Once
    per module, for the deletion test or the audit test (which edits its entry), whichever comes first."""
    page = sign_in(browser, site, "max")
    page.goto(f"{site.console}/collections")
    page.click(f"text={COLLECTION}")
    face_id = site.faces["Adam_Sandler"]
    card = page.locator(f"li.face[data-face='{face_id}']")
    seen = {"crop width": card.locator("img").evaluate("img => img.naturalWidth")}
    card.locator("input[name=face_ids]").check()
    page.fill("input[name=reason]", "enrolled by mistake")
    shot(page, "collection", full_page=False)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("text=Delete ticked faces")
    page.wait_for_load_state()
    seen["deleted"] = text_of(page)
    seen["cards left"] = page.locator(f"li.face[data-face='{face_id}']").count()
    seen["crop status"] = page.request.get(f"{site.console}/crop?c={COLLECTION}&f={face_id}").status
    return face_id, seen


def test_admin_deletes_a_face(site, face_deleted):
    face_id, seen = face_deleted
    assert seen["crop width"] > 0
    assert "Deleted 1 face" in seen["deleted"] and seen["cards left"] == 0
    faces = site.client().list_faces(CollectionId=COLLECTION)["Faces"]
    assert face_id not in {f["FaceId"] for f in faces}
    assert seen["crop status"] == 404  # its crop went too
    entry = site.faceprint().list_audit_entries(Operation="DeleteFaces")["Entries"][-1]
    assert (entry["Actor"], entry["Purpose"]) == ("max", "enrolled by mistake")


def test_video_page_shows_who_appears_when(site, browser):
    rekognition = site.client()
    deadline = time.monotonic() + 180
    while rekognition.get_face_search(JobId=site.job_id)["JobStatus"] == "IN_PROGRESS":
        assert time.monotonic() < deadline, "the face search job did not finish"
        time.sleep(0.5)
    page = sign_in(browser, site, "ivy")
    page.click("header >> text=Video")
    row = page.locator("tr", has_text=site.job_id)
    assert "StartFaceSearch" in row.inner_text() and "succeeded" in row.inner_text().lower()
    processor = page.locator("tr", has_text=PROCESSOR)
    assert "stopped" in processor.inner_text().lower() and COLLECTION in processor.inner_text()
    assert "85" in processor.inner_text()
    row.locator("a").click()
    page.wait_for_load_state()
    rows = page.locator(".tl-row")
    names = [rows.nth(i).locator(".tl-who strong").inner_text() for i in range(rows.count())]
    assert names == [name for name, _, _ in CLIP_PEOPLE]  # in the order they first appear
    first, second = (rows.nth(i).locator("rect.tl-mark") for i in range(2))
    assert first.count() > 3 and second.count() > 3
    last_of_first = max(float(first.nth(i).get_attribute("x")) for i in range(first.count()))
    first_of_second = min(float(second.nth(i).get_attribute("x")) for i in range(second.count()))
    assert last_of_first < first_of_second  # one after the other, as they crossed the lobby
    shot(page, "video-timeline")
    page.goto(f"{site.console}/video")
    page.click(f"text={PROCESSOR}")
    assert "Stream processor lobby-door" in text_of(page) and "No one from the collection was matched" in text_of(page)


def test_admin_manages_console_users_and_a_user_changes_their_password(site, browser, lou_locked):
    admin = sign_in(browser, site, "max")
    admin.click("header >> text=Users")
    assert "locked until" in admin.locator("tr[data-user=lou]").inner_text()  # from the lock-out test
    admin.locator("tr[data-user=lou] button[value=unlock]").click()
    assert "Unlocked lou." in text_of(admin)
    assert "/console/review" in sign_in(browser, site, "lou").url
    admin.fill("form.stack input[name=name]", "nia")
    admin.select_option("form.stack select[name=role]", "auditor")
    admin.fill("form.stack input[name=password]", "nia's first password")
    admin.click("form.stack button[value=add]")
    assert "Added nia (auditor)." in text_of(admin)
    shot(admin, "users", full_page=False)
    nia = sign_in(browser, site, "nia", "nia's first password")
    assert "nia · auditor" in text_of(nia, "header")
    nia.click("header >> text=nia · auditor")
    nia.fill("input[name=current]", "nia's first password")
    nia.fill("input[name=new]", "nia's second password")
    nia.fill("input[name=again]", "nia's second password")
    nia.click("form.stack button[type=submit]")
    nia.wait_for_url("**/console/sign-in")  # a new password ends every session, this one too
    assert "Wrong user name or password" in text_of(sign_in(browser, site, "nia", "nia's first password"))
    nia = sign_in(browser, site, "nia", "nia's second password")
    assert "/console/audit" in nia.url
    admin.locator("tr[data-user=nia] select[name=role]").select_option("reviewer")
    admin.locator("tr[data-user=nia] button[value=role]").click()
    assert "nia is now reviewer." in text_of(admin)
    nia.reload()
    assert "nia · reviewer" in text_of(nia, "header") and "Audit" not in text_of(nia, "header nav")
    admin.once("dialog", lambda dialog: dialog.accept())
    admin.locator("tr[data-user=nia] button[value=delete]").click()
    admin.wait_for_load_state()
    assert "Deleted nia" in text_of(admin) and admin.locator("tr[data-user=nia]").count() == 0
    nia.reload()
    assert "/console/sign-in" in nia.url  # her session ended with her
    assert admin.locator("tr[data-user=max] button[value=delete]").count() == 0  # not oneself
    changes = site.faceprint().list_audit_entries(Operation="ConsoleUserChanged")["Entries"]
    assert [(c["Actor"], c["Details"]["ConsoleUser"], c["Details"]["Change"]) for c in changes] == [
        ("max", "lou", "unlocked"), ("max", "nia", "added"), ("nia", "nia", "password"), ("max", "nia", "updated"),
        ("max", "nia", "deleted")]
    recorded = json.dumps(changes, default=str)
    assert "nia's first password" not in recorded and "second password" not in recorded


def test_audit_page_verifies_and_reports(site, browser, reviewed, face_deleted):
    page = sign_in(browser, site, "ada")
    assert "/console/audit" in page.url
    page.select_option("select[name=operation]", "ReviewDecision")
    page.click("form.filters button[type=submit]")
    rows = page.locator("table.audit tbody tr")
    assert rows.count() == 3 and "rita" in rows.nth(0).inner_text() and "rob" in rows.nth(2).inner_text()
    page.goto(f"{site.console}/audit")
    page.click("text=Verify the chain")
    page.wait_for_load_state()
    assert "The chain verifies" in text_of(page)
    shot(page, "audit", full_page=False)
    with page.expect_download() as download:
        page.click("text=Download the report")
    report = json.loads(download.value.path().read_text())
    assert report and "ivy" in json.dumps(report)
    db = sqlite3.connect(site.home / "audit" / "audit.db")  # someone edits an entry behind faceprint's back
    seq, body = db.execute("SELECT seq, body FROM entries "
                           "WHERE json_extract(body, '$.Operation') = 'DeleteFaces'").fetchone()
    db.execute("UPDATE entries SET body = ? WHERE seq = ?", (body.replace("enrolled by mistake", "routine"), seq))
    db.commit()
    db.close()
    page.click("text=Verify the chain")
    page.wait_for_load_state()
    text = text_of(page)
    assert "The chain does not verify" in text and f"entry {seq}: edited" in text
    shot(page, "audit-tampered", full_page=False)
