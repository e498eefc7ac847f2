"""The web console in a real headless Chromium (Debian's, driven by Playwright) against the
real API on a temporary store: search and ask before there is an index, upload (file picker
and drag and drop), the real pipeline from the CLI, the documents indexed and quarantined,
search, ask with citations, delete; no console errors; axe-core finds no serious violations
at laptop and phone width. Screenshots: test-output/console/ (and the test's tmp dir)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from lakerag.lake import Lake, doc_id_for

CHROMIUM = os.environ.get("LAKERAG_CHROMIUM", "/usr/bin/chromium")
AXE = REPO / "tests" / "console" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = REPO / "test-output" / "console"
LAKERAG = str(Path(sys.executable).with_name("lakerag"))
KEY = "console-test-key"
VOLCANO = ("Basaltic lava flows are fluid and travel far from the vent of a shield volcano. Explosive eruptions "
           "come from viscous magma rich in silica and dissolved gas, and pyroclastic flows race down the slopes.")
BEES = "# Bees\n\nHoney bees tell each other the direction of flowers with a waggle dance inside the hive."
QUESTION = "What kind of magma causes explosive volcanic eruptions?"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
# Statuses this scenario provokes on purpose (Chromium logs each failed fetch as a console error).
PROVOKED = {401, 415, 503}


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: `make test` installs Debian's chromium (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


class Shots:
    def __init__(self, tmp_path: Path):
        self.dirs = [tmp_path / "screenshots", SCREENSHOTS]
        for folder in self.dirs:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)

    def take(self, page, name: str) -> None:
        page.screenshot(path=str(self.dirs[0] / f"{name}.png"), full_page=True)
        shutil.copy(self.dirs[0] / f"{name}.png", self.dirs[1] / f"{name}.png")


def axe_violations(page) -> list[dict]:
    if not AXE.exists():
        pytest.fail(f"{AXE} missing: `make test` runs npm ci --prefix tests/console")
    page.evaluate(AXE.read_text())  # evaluated by the driver, so the page's CSP does not block it
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]]}
            for v in result if v["impact"] in {"serious", "critical"}]


def closing_check(page, screenshot: Path) -> list[dict]:
    """A scenario's last look: a screenshot, then axe-core's serious violations; the page closed."""
    page.screenshot(path=str(screenshot), full_page=True)
    violations = axe_violations(page)
    page.close()
    return violations


def drop_files(page, files: dict[str, str]) -> None:
    """Drag and drop onto the drop zone, as a person would from a file manager."""
    page.evaluate("""files => {
        const transfer = new DataTransfer();
        for (const [name, text] of Object.entries(files)) transfer.items.add(new File([text], name));
        const zone = document.getElementById('drop-zone');
        for (const type of ['dragenter', 'dragover', 'drop'])
            zone.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""", files)


def run_pipeline(store_uri: str) -> None:
    env = {**os.environ, "LAKERAG_STORE_URI": store_uri, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([LAKERAG, "pipeline", "run"], env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def row_state(page, key: str) -> str:
    return page.locator(f"#doc-{doc_id_for(key)}").get_attribute("data-state")


def test_console_search_ask_upload_pipeline_delete(local_settings, start_api, browser, tmp_path):
    shots = Shots(tmp_path)
    with start_api(local_settings, api_key=KEY) as api:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        external: list[str] = []
        page.on("request", lambda r: external.append(r.url) if not r.url.startswith(api.url) else None)
        page.set_default_timeout(90_000)  # a loaded 2-core CI machine is slow

        page.goto(api.url + "/")
        page.wait_for_function("() => document.getElementById('status-index').textContent.includes('no index')")
        assert "ready" in page.locator("#status-health").inner_text()
        assert page.locator("#status-pipeline").inner_text() == "not run yet"
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip-link"  # keyboard: skip to content first
        shots.take(page, "01-empty-store")

        # Search before any index: the 503 explained.
        page.get_by_label("Query").fill("volcano")
        page.get_by_label("Query").press("Enter")
        page.wait_for_function("() => document.getElementById('search-message').textContent.startsWith('Not ready yet')")
        assert "pipeline" in page.locator("#search-message").inner_text()

        # Upload without the key: 401 explained per file; an unsupported type: 415 explained.
        page.get_by_label(re.compile("Choose files")).set_input_files(
            [{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"first notes"}])
        expect_upload_status(page, "notes.txt", "needs the API key")
        page.get_by_label(re.compile("^API key")).fill(KEY)
        page.get_by_label(re.compile("^API key")).press("Enter")
        assert page.locator("#key-state").inner_text() == "A key is set for this tab."
        assert page.evaluate("localStorage.length") == 0  # the key is not in persistent storage
        page.get_by_label(re.compile("Choose files")).set_input_files(
            [{"name": "tool.exe", "mimeType": "application/octet-stream", "buffer": b"MZ"}])
        expect_upload_status(page, "tool.exe", "File type not accepted")
        assert page.locator("#upload-list li.failed", has_text="tool.exe").count() == 1

        # Several files at once by drag and drop, each with its own progress bar.
        drop_files(page, {"volcano.txt": VOLCANO, "bees.md": BEES, "broken.pdf": "%PDF-1.7 this is not really a pdf"})
        # Each says what indexes it, as the API's reply does (it said "waiting for the next pipeline
        # run" under `lakerag run` too, whose watcher indexes an upload within seconds).
        for name in ("volcano.txt", "bees.md", "broken.pdf"):
            expect_upload_status(page, name, "stored; the next pipeline run (`lakerag pipeline run`) indexes it")
            assert page.get_by_label(f"Upload progress of {name}").evaluate("p => p.value") == 100
        page.wait_for_function("() => document.querySelectorAll('#documents-table tbody tr').length === 3")
        assert {row_state(page, f"raw/{n}") for n in ("volcano.txt", "bees.md", "broken.pdf")} == {"landed"}
        # The same file again (a second drop): 200 "unchanged", shown as stored, not as a failure.
        drop_files(page, {"volcano.txt": VOLCANO})
        expect_upload_status(page, "volcano.txt", "unchanged: raw/volcano.txt already holds these bytes")
        assert page.locator("#upload-list li", has_text="volcano.txt").last.locator(".upload-status.good").count() == 1
        assert "Waiting for the pipeline" in page.locator(f"#doc-{doc_id_for('raw/volcano.txt')}").inner_text()
        shots.take(page, "02-uploaded")

        run_pipeline(local_settings.store_uri)
        page.get_by_role("button", name="Load the newest index now").click()
        page.wait_for_function("() => document.getElementById('documents-message').textContent.startsWith('Now serving')")
        page.wait_for_function(f"() => document.getElementById('doc-{doc_id_for('raw/volcano.txt')}')"
                               ".dataset.state === 'indexed'")
        assert row_state(page, "raw/bees.md") == "indexed"
        assert row_state(page, "raw/broken.pdf") == "quarantined"
        assert "Quarantined: " in page.locator(f"#doc-{doc_id_for('raw/broken.pdf')}").inner_text()
        page.wait_for_function("() => document.getElementById('status-pipeline').textContent.includes('1 quarantined')")
        # The last run's time reads like the index's age; the exact time is in the tooltip.
        assert re.search(r"last run (just now|\d+ minutes? ago)$", page.locator("#status-pipeline").inner_text())
        assert re.match(r"last run finished at \d{4}-\d\d-\d\dT", page.locator("#status-pipeline").get_attribute("title"))
        assert "vectors" in page.locator("#status-index").inner_text()
        assert re.match(r"just now|\d+ minutes? ago", page.locator("#status-age").inner_text())
        shots.take(page, "03-indexed")

        # Search, lexical mode: hits with source, page and score.
        page.get_by_role("radio", name="Lexical (words)").check()
        page.get_by_label("Query").fill(QUESTION)
        page.get_by_role("button", name="Search", exact=True).click()
        first_hit = page.locator("#search-results li").first
        first_hit.wait_for()
        meta = first_hit.locator(".hit-meta").inner_text()
        assert "source: raw/volcano.txt" in meta and "score" in meta, meta
        assert "(lexical, index" in page.locator("#search-message").inner_text()
        shots.take(page, "04-search")

        # Ask: [n] citations link to the cited passages, which link to their source file.
        page.get_by_label("Question").fill(QUESTION)
        page.get_by_role("button", name="Ask", exact=True).click()
        citation = page.locator("#ask-answer a.citation").first
        citation.wait_for()
        number = int(citation.inner_text().strip("[]"))
        citation.click()
        assert page.evaluate("document.activeElement.id") == f"cite-{number}"
        cited = page.locator(f"#cite-{number}")
        assert "source: raw/" in cited.locator(".hit-meta").inner_text()
        source = cited.locator("a").first.get_attribute("href")
        cited_source = cited.locator(".hit-meta").inner_text().split("source: ")[1].split(" ·")[0]
        raw = api.client.get("/" + source)
        assert raw.status_code == 200 and source == f"documents/{doc_id_for(cited_source)}/content"
        assert "volcano" in page.locator("#ask-answer").inner_text().lower() or "magma" in raw.text
        shots.take(page, "05-ask")
        laptop_violations = axe_violations(page)

        # Delete from the list (after the confirmation dialog).
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Delete raw/volcano.txt").click()
        page.wait_for_function("() => document.getElementById('documents-message').textContent.startsWith('Deleted')")
        page.wait_for_function(f"() => !document.getElementById('doc-{doc_id_for('raw/volcano.txt')}')")
        assert "raw/volcano.txt" not in {d["key"] for d in api.client.get("/documents").json()["documents"]}
        shots.take(page, "06-deleted")

        # A pipeline run in flight on the API's host (a second `make run`): running, not "unfinished".
        Lake.open(local_settings).mark_run_started("etl")
        api.app.state.pipeline_status._read_at = float("-inf")  # past the 15 s cache, as a later refresh is
        page.locator("#documents-refresh").click()
        page.wait_for_function("() => document.getElementById('status-pipeline').textContent.startsWith('running: etl')")

        page.set_viewport_size({"width": 390, "height": 844})  # a phone
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing forces sideways scrolling
        box = page.get_by_role("button", name="Delete raw/bees.md").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390  # reachable without sideways scrolling
        shots.take(page, "07-phone")
        phone_violations = axe_violations(page)
        context.close()

    assert laptop_violations == [] and phone_violations == [], laptop_violations + phone_violations
    assert external == [], f"requests left the API's origin: {external}"
    unexpected = [e for e in errors if not provoked(e)]
    assert unexpected == [], unexpected


def test_a_lake_of_many_documents_is_listed_by_filter(local_settings, start_api, browser, tmp_path):
    """20,000 raw files took 3.5 s to draw as 20,000 rows, with no way to find one but scrolling:
    the list draws at most 200 and a filter narrows it by name, title or state."""
    store = Lake.open(local_settings).store
    for i in range(250):
        store.put(f"raw/report-{i:03d}.txt", f"Report {i} of the quarter.".encode())
    shots = Shots(tmp_path)
    with start_api(local_settings) as api:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(90_000)
        page.goto(api.url + "/")
        caption = page.locator("#documents-caption")
        caption.get_by_text("250 files in the store (250 landed); showing the first 200").wait_for()
        rows = page.locator("#documents-table tbody tr")
        assert rows.count() == 200

        page.get_by_label("Filter by name, title or state").fill("report-24")
        caption.get_by_text("; 10 match the filter").wait_for()
        assert rows.count() == 10 and "showing the first" not in caption.inner_text()
        assert rows.first.inner_text().startswith("report-240.txt")
        page.get_by_label("Filter by name, title or state").fill("waiting REPORT-007")  # words, any order and case
        caption.get_by_text("; 1 match the filter").wait_for()
        assert rows.count() == 1
        page.get_by_label("Filter by name, title or state").fill("quarantined")
        caption.get_by_text("; 0 match the filter").wait_for()
        assert rows.count() == 0
        shots.take(page, "08-filtered")
        violations = axe_violations(page)
        page.close()
    assert violations == [], violations


def provoked(message: str) -> bool:
    match = re.match(r"Failed to load resource: the server responded with a status of (\d+)", message)
    return bool(match) and int(match.group(1)) in PROVOKED


def expect_upload_status(page, name: str, text: str) -> None:
    item = page.locator("#upload-list li", has_text=name).last
    item.locator(".upload-status", has_text=text).wait_for()


def test_an_answer_is_replayed_on_the_index_version_it_came_from(local_settings, sample_index, sample_index_v2,
                                                                  start_api, browser, tmp_path):
    """The console named each answer's index version but could not ask again on it: replay
    (`as_of`) was reachable through the API and the CLI only. v2 drops the travel policy."""
    from .conftest import publish

    v1 = publish(local_settings, sample_index)
    with start_api(local_settings) as api:
        v2 = publish(local_settings, sample_index_v2)
        assert api.client.post("/admin/reload").json()["version"] == v2
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(90_000)
        page.goto(api.url + "/")
        question = "What is the hotel cap per night for business trips?"
        page.get_by_label("Question").fill(question)
        page.get_by_role("button", name="Ask", exact=True).click()
        page.locator("#ask-message", has_text=f"from index {v2}").wait_for()
        assert "employee-travel-policy" not in page.locator("#ask-chunks").inner_text()

        page.locator("#ask").get_by_label(re.compile("^Replay on index version")).fill(v1)
        page.get_by_role("button", name="Ask", exact=True).click()
        page.locator("#ask-message", has_text=f"replayed on index {v1}").wait_for()
        assert "raw/employee-travel-policy.pdf" in page.locator("#ask-chunks").inner_text()

        page.locator("#search").get_by_label(re.compile("^Replay on index version")).fill(v1)
        page.get_by_label("Query").fill(question)
        page.get_by_role("button", name="Search", exact=True).click()
        page.locator("#search-message", has_text=f"replayed on index {v1}").wait_for()
        assert "raw/employee-travel-policy.pdf" in page.locator("#search-results").inner_text()
        # A PDF hit's link opens the cited page in the browser's PDF viewer; other types have no pages.
        links = {page.locator("#search-results li").nth(i).locator(".hit-meta").inner_text().split(" · ")[0]:
                 page.locator("#search-results li").nth(i).locator("a").first.get_attribute("href")
                 for i in range(page.locator("#search-results li").count())}
        pdf_page = re.search(r"page (\d+)", page.locator("#search-results li", has_text="employee-travel-policy.pdf")
                             .first.locator(".hit-meta").inner_text()).group(1)
        assert links["source: raw/employee-travel-policy.pdf"].endswith(f"/content#page={pdf_page}"), links
        assert all(href.endswith("/content") for source, href in links.items() if not source.endswith(".pdf"))

        # Not a version name (a time, say): the browser stops it and says what is expected.
        replay = page.locator("#ask").get_by_label(re.compile("^Replay on index version"))
        replay.fill("yesterday 3pm")
        message = replay.evaluate("input => input.validationMessage")
        assert "such as 20261205T011206Z-577437dc" in message, message

        replay.fill("20250101T000000Z-pruned00")
        page.get_by_role("button", name="Ask", exact=True).click()
        page.locator("#ask-message.error", has_text="Not found").wait_for()
        violations = closing_check(page, tmp_path / "replay.png")
    assert violations == [], violations


def test_search_and_ask_can_be_kept_to_one_document_or_folder(local_settings, sample_index, start_api, browser,
                                                             tmp_path):
    """The API filters by source prefix but the console could not: "ask this document" meant hoping
    it ranked first. A document's Ask button fills the filter; the filter takes a name or a folder."""
    from conftest import SAMPLES

    from .conftest import publish

    store = Lake.open(local_settings).store
    for path in (SAMPLES / "docs").iterdir():
        store.put(f"raw/{path.name}", path.read_bytes())
    publish(local_settings, sample_index)
    with start_api(local_settings) as api:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(90_000)
        page.goto(api.url + "/")
        page.locator("#documents-table tr", has_text="oncall-runbook.txt").get_by_role("button", name="Ask").click()
        only = page.locator("#ask").get_by_label(re.compile("^Only in files starting with"))
        assert only.input_value() == "oncall-runbook.txt"
        assert page.evaluate("document.activeElement.id") == "ask-question"
        page.get_by_label("Question").fill("incident bridge phone number")
        page.get_by_role("button", name="Ask", exact=True).click()
        page.locator("#ask-message", has_text="index").wait_for()
        sources = page.locator("#ask-chunks .hit-meta").all_inner_texts()
        assert sources and all("raw/oncall-runbook.txt" in source for source in sources), sources

        search_only = page.locator("#search").get_by_label(re.compile("^Only in files starting with"))
        search_only.fill("data-")
        page.get_by_label("Query").fill("how long is personal data kept")
        page.get_by_role("button", name="Search", exact=True).click()
        page.locator("#search-message", has_text="hit").wait_for()
        sources = page.locator("#search-results .hit-meta").all_inner_texts()
        assert sources and all("raw/data-" in source for source in sources), sources
        search_only.fill("no-such-folder/")
        page.get_by_role("button", name="Search", exact=True).click()
        page.locator("#search-message", has_text="no indexed chunk matches the filter").wait_for()
        violations = closing_check(page, tmp_path / "filter.png")
    assert violations == [], violations
