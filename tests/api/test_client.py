"""`lakerag search` / `lakerag ask` against the API over HTTP."""

from __future__ import annotations

from conftest import free_port
from lakerag import cli


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


def test_errors_exit_non_zero_with_the_reason(served, capsys):
    assert cli.main(["search", "", "--url", served.url]) == 1
    assert "answered 422" in capsys.readouterr().err
    assert cli.main(["ask", "anything", "--url", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "cannot reach the API" in capsys.readouterr().err
