"""`lakerag search` / `lakerag ask` against the API over HTTP."""

from __future__ import annotations

import http.server
import threading

import pytest
from conftest import free_port
from lakerag import cli

from .conftest import publish


def test_search_and_ask_print_results(served, capsys):
    assert cli.main(["search", "hotel cap per night for business trips", "-k", "2", "--url", served.url]) == 0
    out = capsys.readouterr().out
    assert out.startswith(("1 result (index 20260101T000000Z-samples1", "2 results (index 20260101T000000Z-samples1"))
    assert "1. [0." in out and "raw/employee-travel-policy.pdf, page" in out

    assert cli.main(["ask", "What is the hotel cap per night for business trips?", "--url", served.url]) == 0
    out = capsys.readouterr().out
    assert "Extractive answer" in out and "Sources (extractive" in out and "  [1] " in out

    assert cli.main(["search", "Who won the football world cup in 2018?", "--url", served.url]) == 0
    assert capsys.readouterr().out.startswith("No relevant match.")

    # --mode reaches the server: a lexical search of a rare name finds the one document that has it.
    assert cli.main(["search", "Marguerite Oyelaran-Fitzgibbon", "--mode", "lexical", "-k", "1",
                     "--url", served.url]) == 0
    assert "raw/access-request-process.html" in capsys.readouterr().out


def test_search_and_ask_can_be_limited_to_a_document_or_a_folder(served, capsys):
    """The API filters by doc_id and source prefix; the CLI had no way to say "in this document"."""
    question = "incident bridge phone number"
    for command in ("search", "ask"):
        assert cli.main([command, question, "--doc-id", "oncall-runbook.txt", "--url", served.url]) == 0
        out = capsys.readouterr().out
        assert "raw/oncall-runbook.txt" in out
        assert not [line for line in out.splitlines() if "(raw/" in line and "oncall-runbook" not in line], out
    assert cli.main(["search", "retention of personal data", "--source", "data-", "--url", served.url]) == 0
    out = capsys.readouterr().out
    assert "raw/data-retention-policy.pdf" in out and "raw/employee-travel-policy.pdf" not in out
    assert cli.main(["ask", "anything at all", "--source", "raw/nope/", "--url", served.url]) == 0
    assert "no indexed chunk matches the filter" in capsys.readouterr().out


def test_as_of_replays_search_ask_and_summarize_on_an_earlier_index(served, sample_index_v2, capsys):
    """Replay was an API field only: the CLI could print an answer's index version but not ask again
    against it. v2 drops the travel policy, so only a replay of v1 still finds it."""
    from lakerag.lake import doc_id_for

    v1, v2 = "20260101T000000Z-samples1", publish(served.settings, sample_index_v2)
    assert served.client.post("/admin/reload").json()["version"] == v2
    question = "What is the hotel cap per night for business trips?"
    assert cli.main(["search", question, "-k", "1", "--url", served.url]) == 0
    assert "raw/employee-travel-policy.pdf" not in capsys.readouterr().out
    assert cli.main(["search", question, "-k", "1", "--as-of", v1, "--url", served.url]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"1 result (index {v1}, replayed") and "raw/employee-travel-policy.pdf" in out
    assert cli.main(["ask", question, "--as-of", v1, "--url", served.url]) == 0
    out = capsys.readouterr().out
    assert f"index {v1}, replayed)" in out and "raw/employee-travel-policy.pdf" in out
    travel = doc_id_for("raw/employee-travel-policy.pdf")
    assert cli.main(["summarize", "--doc-id", travel, "--as-of", v1, "--url", served.url]) == 0
    assert f"index {v1}, replayed)" in capsys.readouterr().out
    assert cli.main(["search", question, "--as-of", "20250101T000000Z-pruned00", "--url", served.url]) == 1
    assert "answered 404" in capsys.readouterr().err


def test_errors_exit_non_zero_with_the_reason(served, capsys):
    assert cli.main(["search", "", "--url", served.url]) == 1
    assert "answered 422: query: String should have at least 1 character\n" in capsys.readouterr().err
    # A validator's message reads as the sentence it is, not as Python's repr of FastAPI's error list.
    assert cli.main(["ask", "  ?! ", "--url", served.url]) == 1
    err = capsys.readouterr().err
    assert "answered 422: question: has no words" in err and "{'type'" not in err and "Value error" not in err
    assert cli.main(["ask", "anything", "--url", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "cannot reach the API" in capsys.readouterr().err


def test_a_url_without_a_scheme_is_taken_as_http(served, capsys):
    """`--url localhost:8000`, as curl takes it, said "cannot reach the API … missing an 'http://'
    protocol; is `lakerag serve` running?": the API was running."""
    assert cli.main(["search", "hotel cap per night", "-k", "1", "--url", served.url.removeprefix("http://")]) == 0
    assert "raw/employee-travel-policy.pdf" in capsys.readouterr().out


def test_an_api_key_no_header_can_carry_is_said_not_a_traceback(served, capsys):
    """A key with a non-ASCII character ended the command in a UnicodeEncodeError traceback."""
    assert cli.main(["documents", "--url", served.url, "--api-key", "clé", "delete", "0123456789abcdef"]) == 1
    err = capsys.readouterr().err
    assert "the API key (--api-key or LAKERAG_API_KEY) has a character that is not printable ASCII" in err, err
    assert "Traceback" not in err and "clé" not in err


def test_upload_documents_and_delete_through_the_cli(served, tmp_path):
    from lakerag.lake import doc_id_for
    from typer.testing import CliRunner

    runner = CliRunner()
    first, second = tmp_path / "notes.txt", tmp_path / "memo.md"
    first.write_text("Parking permits are renewed every March.")
    second.write_text("# Memo\n\nThe canteen closes at 15:00 on Fridays.")
    result = runner.invoke(cli.app, ["upload", str(first), str(second), "--url", served.url])
    assert result.exit_code == 0, result.output
    assert f"raw/notes.txt  doc_id {doc_id_for('raw/notes.txt')}" in result.stdout and "raw/memo.md" in result.stdout
    assert served.state.lake.store.get("raw/notes.txt") == first.read_bytes()

    for argv in (["documents"], ["documents", "list"]):
        result = runner.invoke(cli.app, [*argv, "--url", served.url])
        assert result.exit_code == 0, result.output
        assert f"{doc_id_for('raw/memo.md')}  landed" in result.stdout and "2 landed" in result.stdout

    result = runner.invoke(cli.app, ["documents", "delete", doc_id_for("raw/notes.txt"), "--url", served.url])
    assert result.exit_code == 0 and "deleted raw/notes.txt" in result.stdout
    assert not served.state.lake.store.exists("raw/notes.txt")
    result = runner.invoke(cli.app, ["documents", "delete", "0000000000000000", "--url", served.url])
    assert result.exit_code == 1 and "answered 404" in result.stderr


def test_the_api_key_comes_from_lakerag_api_key_when_not_given(local_settings, sample_index, start_api, tmp_path):
    """On a machine where LAKERAG_API_KEY is set (the server's own, a pod, a shell with the key
    exported) the CLI sent no key and got 401 "needs the X-API-Key header (LAKERAG_API_KEY is set)"."""
    from typer.testing import CliRunner

    publish(local_settings, sample_index)
    note = tmp_path / "note.txt"
    note.write_text("The archive room opens at nine.")
    runner = CliRunner()
    with start_api(local_settings, api_key="k3y-for-the-test") as api:
        result = runner.invoke(cli.app, ["upload", str(note), "--url", api.url], env={"LAKERAG_API_KEY": ""})
        assert result.exit_code == 1 and "answered 401" in result.stderr
        result = runner.invoke(cli.app, ["upload", str(note), "--url", api.url],
                               env={"LAKERAG_API_KEY": "k3y-for-the-test"})
        assert result.exit_code == 0, result.output
        assert api.state.lake.store.get("raw/note.txt") == note.read_bytes()
        result = runner.invoke(cli.app, ["upload", str(note), "--url", api.url, "--api-key", "wrong"],
                               env={"LAKERAG_API_KEY": "k3y-for-the-test"})
        assert result.exit_code == 1 and "answered 403" in result.stderr  # the option wins


def test_options_given_to_documents_reach_its_subcommands(served, capsys, tmp_path):
    """`lakerag documents --url URL delete ID` ignored the --url (and --api-key) given to
    `documents` and sent the delete to http://127.0.0.1:8000: another API, if one ran there."""
    from lakerag.lake import doc_id_for

    served.state.lake.store.put("raw/kept.txt", b"Parking permits are renewed every March.")
    served.state.lake.store.put("raw/gone.txt", b"The canteen closes at 15:00 on Fridays.")
    assert cli.main(["documents", "--url", served.url, "list"]) == 0
    assert f"{doc_id_for('raw/kept.txt')}  landed" in capsys.readouterr().out
    assert cli.main(["documents", "--url", served.url, "delete", doc_id_for("raw/gone.txt")]) == 0
    assert "deleted raw/gone.txt" in capsys.readouterr().out
    assert not served.state.lake.store.exists("raw/gone.txt")
    # The subcommand's own option wins over the group's.
    assert cli.main(["documents", "--url", f"http://127.0.0.1:{free_port()}", "list", "--url", served.url]) == 0


def test_upload_a_directory_sends_the_documents_under_it(served, tmp_path):
    """`lakerag upload DIR` was refused ("is a directory"): it now sends the documents the pipeline
    reads, skips hidden files and other types, and refuses before sending anything when two files
    would land on the same raw/ key."""
    from typer.testing import CliRunner

    runner = CliRunner()
    docs = tmp_path / "docs"
    (docs / "2026" / ".drafts").mkdir(parents=True)
    (docs / "handbook.md").write_text("# Handbook\n\nBadges are collected at reception.")
    (docs / "2026" / "minutes.TXT").write_text("The board met on 3 March.")
    (docs / "2026" / "photo.png").write_bytes(b"\x89PNG")
    (docs / "2026" / ".drafts" / "secret.txt").write_text("not for upload")
    (docs / ".DS_Store").write_bytes(b"\0")
    result = runner.invoke(cli.app, ["upload", str(docs), "--url", served.url])
    assert result.exit_code == 0, result.output
    assert "raw/handbook.md" in result.stdout and "raw/minutes.TXT" in result.stdout
    assert "skipping 1 file(s) of other types" in result.stderr
    store = served.state.lake.store
    assert store.get("raw/minutes.TXT") == b"The board met on 3 March."
    assert not store.exists("raw/secret.txt") and not store.exists("raw/photo.png")
    assert result.stdout.endswith("stored; the next pipeline run (`lakerag pipeline run`) indexes them\n")

    # Under `lakerag run` the server's own watcher indexes them: the CLI said "the next pipeline run".
    (docs / "handbook.md").write_text("# Handbook\n\nBadges are collected at the front desk.")
    served.state.raw_watched = True
    try:
        result = runner.invoke(cli.app, ["upload", str(docs / "handbook.md"), "--url", served.url])
    finally:
        served.state.raw_watched = False
    assert result.exit_code == 0, result.output
    assert "(replaced)" in result.stdout
    assert result.stdout.endswith("stored; this server's pipeline watcher (`lakerag run`) indexes it within seconds\n")
    # The same bytes again: stored already, nothing written, and the CLI says so.
    result = runner.invoke(cli.app, ["upload", str(docs / "handbook.md"), "--url", served.url])
    assert result.exit_code == 0, result.output
    assert "(unchanged: already stored)" in result.stdout and "already holds these bytes" in result.stdout
    # The directory again, one file changed: the note speaks of that one, not of the unchanged one.
    (docs / "2026" / "minutes.TXT").write_text("The board met on 4 March.")
    result = runner.invoke(cli.app, ["upload", str(docs), "--url", served.url])
    assert result.exit_code == 0, result.output
    assert "raw/handbook.md" in result.stdout and "(unchanged: already stored)" in result.stdout
    assert result.stdout.endswith("stored; the next pipeline run (`lakerag pipeline run`) indexes it\n"), result.stdout
    # Nothing changed: no note says a run indexes anything.
    result = runner.invoke(cli.app, ["upload", str(docs), "--url", served.url])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("(unchanged: already stored)") == 2 and "indexes" not in result.stdout
    assert result.stdout.endswith("nothing written: 2 files were already stored\n"), result.stdout

    (docs / "2026" / "handbook.md").write_text("an older handbook")
    result = runner.invoke(cli.app, ["upload", str(docs), "--url", served.url])
    assert result.exit_code == 1 and "would both be stored as raw/handbook.md" in result.stderr
    assert "nothing uploaded" in result.stderr
    assert store.get("raw/handbook.md") == (docs / "handbook.md").read_bytes()  # the first upload's file stands

    (tmp_path / "empty").mkdir()
    result = runner.invoke(cli.app, ["upload", str(tmp_path / "empty"), "--url", served.url])
    assert result.exit_code == 1 and "holds no .pdf" in result.stderr


def test_summarize_a_document_or_a_query_through_the_cli(served):
    from lakerag.lake import doc_id_for
    from typer.testing import CliRunner

    runner = CliRunner()
    doc_id = doc_id_for("raw/employee-travel-policy.pdf")
    result = runner.invoke(cli.app, ["summarize", "--doc-id", doc_id, "--url", served.url])
    assert result.exit_code == 0, result.output
    assert "Sources (extractive" in result.stdout and "raw/employee-travel-policy.pdf" in result.stdout
    result = runner.invoke(cli.app, ["summarize", "hotel cap per night", "--url", served.url, "--mode", "dense"])
    assert result.exit_code == 0 and "  [1] " in result.stdout
    result = runner.invoke(cli.app, ["summarize", "personal data", "--source", "data-", "--url", served.url])
    assert result.exit_code == 0 and "raw/data-" in result.stdout and "raw/employee-travel" not in result.stdout
    result = runner.invoke(cli.app, ["summarize", "--doc-id", "0000000000000000", "--url", served.url])
    assert result.exit_code == 1 and "answered 404" in result.stderr
    # The key as `lakerag documents` lists it, or the file name, names the same document.
    for name in ("raw/employee-travel-policy.pdf", "employee-travel-policy.pdf"):
        result = runner.invoke(cli.app, ["summarize", "--doc-id", name, "--url", served.url])
        assert result.exit_code == 0, result.output
        assert "raw/employee-travel-policy.pdf" in result.stdout


def test_documents_delete_takes_the_key_or_file_name_as_listed(served, tmp_path, capsys):
    """`lakerag documents` lists `DOC_ID  STATE  raw/KEY`; `delete raw/KEY` answered a bare
    "404: Not Found" (the slash left the route) and `delete KEY` "no document with doc_id"."""
    names = ["minutes.txt", "q&a #1?.txt", "café notes.md"]
    for name in names:
        (tmp_path / name).write_text(f"{name}: the board meets on Tuesdays.")
    assert cli.main(["upload", *(str(tmp_path / n) for n in names), "--url", served.url]) == 0
    for given, key in (("raw/minutes.txt", "raw/minutes.txt"), ("q&a #1?.txt", "raw/q&a #1?.txt"),
                       ("raw/café notes.md", "raw/café notes.md")):
        assert cli.main(["documents", "delete", given, "--url", served.url]) == 0, given
        assert not served.state.lake.store.exists(key)
    assert cli.main(["documents", "delete", "raw/never-there.txt", "--url", served.url]) == 1
    # A name that finds nothing says which key it was taken as (the 404 names only the doc_id).
    from lakerag.lake import doc_id_for

    for argv in (["documents", "delete", "2024/report.pdf"], ["summarize", "--doc-id", "2024/report.pdf"]):
        capsys.readouterr()
        assert cli.main([*argv, "--url", served.url]) == 1
        assert (f"lakerag: 2024/report.pdf was looked up as raw/2024/report.pdf (doc_id "
                f"{doc_id_for('raw/2024/report.pdf')}); `lakerag documents` lists each document's key") \
            in capsys.readouterr().err
    # Named as the key itself: no "raw/x was looked up as raw/x", just the doc_id it maps to.
    capsys.readouterr()
    assert cli.main(["documents", "delete", "raw/never-there.txt", "--url", served.url]) == 1
    err = capsys.readouterr().err
    assert "looked up as" not in err
    assert (f"lakerag: raw/never-there.txt has doc_id {doc_id_for('raw/never-there.txt')}; `lakerag documents` "
            "lists each document's key") in err


class _NotLakeRAG(http.server.BaseHTTPRequestHandler):
    """Some other web server on the port (a wrong port-forward, an ingress' error page)."""

    def _page(self, status):
        body = (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>"
                b"<hr><center>nginx</center>" + b"<p>padding</p>" * 200 + b"</body></html>")
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # a web app that answers every path 200 with its page
        self._page(200)

    def do_POST(self):
        self._page(502)

    def log_message(self, *args):
        pass


@pytest.fixture
def not_lakerag():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotLakeRAG)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("argv", [["search", "hello"], ["documents"]])
def test_a_server_that_is_not_the_api_is_named_not_dumped(not_lakerag, capsys, argv):
    """A 502 page was printed whole (screens of HTML); a 200 HTML page ended in a JSONDecodeError traceback."""
    assert cli.main([*argv, "--url", not_lakerag]) == 1
    err = capsys.readouterr().err
    assert "<" not in err and len(err) < 400, err
    assert "502 Bad Gateway" in err or "not JSON" in err
    assert "not the LakeRAG API" in err and "--url" in err


def test_an_upload_with_a_failure_still_says_what_indexes_the_files_that_were_stored(served, tmp_path, capsys):
    """The note on what indexes the stored files was left out as soon as one file failed, though
    the others were stored; the end now counts the failures."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "kept.txt").write_text("The ferry leaves the north pier at seven.")
    (folder / "empty.txt").write_text("")
    assert cli.main(["upload", str(folder), "--url", served.url]) == 1
    out, err = capsys.readouterr()
    assert "raw/kept.txt  doc_id" in out and "stored; the next pipeline run" in out
    assert "'empty.txt' is empty" in err and "1 of 2 files failed" in err
