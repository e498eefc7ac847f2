"""The Typer CLI: argv forms the images, chart and DAG rely on, exit codes, usage errors
(each command's HTTP side is tested against a running API in tests/api/test_client.py)."""

from __future__ import annotations

import inspect

import pytest
import typer
from lakerag import cli
from lakerag.config import parse_bool
from typer.testing import CliRunner

runner = CliRunner()


@pytest.mark.parametrize(("argv", "expected"), [
    (["pipeline", "embed"], False),
    (["pipeline", "embed", "--full-rebuild"], True),
    (["pipeline", "embed", "--full-rebuild=true"], True),
    (["pipeline", "embed", "--full-rebuild=false"], False),
    (["pipeline", "index", "--full-rebuild", "false"], False),
    (["pipeline", "gold", "--full-rebuild", "yes"], True),
])
def test_full_rebuild_alone_or_with_an_explicit_value(argv, expected):
    parsed = cli.parse(argv)
    assert parsed.command == ("pipeline",) and parsed.params["stage"].value == argv[1]
    assert parse_bool(parsed.params["full_rebuild"]) is expected


def test_a_bad_flag_value_or_command_is_a_usage_error():
    result = runner.invoke(cli.app, ["pipeline", "embed", "--full-rebuild=maybe"])
    assert result.exit_code == 2 and "expected true/false, got 'maybe'" in result.output
    assert cli.main(["pipeline", "nosuchstage"]) == 2
    with pytest.raises(typer.TyperException):
        cli.parse(["nosuch"])


@pytest.mark.parametrize(("argv", "said"), [
    (["config", "check", "--role", "bogus"], "Invalid value for '--role': 'bogus' is not one of 'api', 'batch', 'all'."),
    (["search", "x", "--mode", "weird"], "Invalid value for '--mode': 'weird' is not one of 'dense', 'lexical', 'hybrid'."),
    (["pipeline", "bronz"], "Invalid value for 'stage': 'bronz' is not one of 'bronze', "),
])
def test_a_value_not_among_the_choices_is_said_plainly(argv, said, capsys):
    """Typer validates choices with pydantic, whose message began "Value error, "."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert said in err and "Value error" not in err, err


def test_every_command_parses_to_its_own_function():
    commands = {
        ("config", "check"): ["config", "check", "--role", "api"],
        ("index", "sync"): ["index", "sync", "--once", "--dest", "/tmp/x"],
        ("index", "rollback"): ["index", "rollback", "20260101T000000Z-aaaaaaaa"],
        ("search",): ["search", "text", "-k", "3", "--mode", "lexical"],
        ("summarize",): ["summarize", "--doc-id", "abc"],
        ("upload",): ["upload", __file__, __file__],
        ("documents",): ["documents"],
        ("documents", "delete"): ["documents", "delete", "abc", "--api-key", "k"],
        ("export-jsonl",): ["export-jsonl", "-"],
    }
    for command, argv in commands.items():
        assert cli.parse(argv).command == command, argv
    assert cli.parse(["upload", __file__, __file__]).params["files"][1].name == "test_cli.py"
    with pytest.raises(typer.TyperException):
        cli.parse(["search", "text", "--mode", "semantic"])  # modes come from config.SearchMode


def test_each_command_s_summary_is_one_line():
    """`lakerag --help` lists a command's first paragraph with its line breaks kept (Typer's rich
    mode), so a summary wrapped in the docstring showed as a sentence broken mid-row."""
    def summaries(command, path=()):
        for name, sub in getattr(command, "commands", {}).items():
            yield (*path, name), inspect.cleandoc(sub.help or "").split("\n\n")[0]
            yield from summaries(sub, (*path, name))

    broken = {path: text for path, text in summaries(typer.main.get_command(cli.app)) if "\n" in text}
    assert broken == {}


def test_summarize_needs_exactly_one_of_query_or_doc_id():
    for argv in (["summarize"], ["summarize", "what about travel", "--doc-id", "abc"]):
        result = runner.invoke(cli.app, argv)
        assert result.exit_code == 2 and "either QUERY or --doc-id" in result.output


def test_upload_refuses_a_missing_file_before_any_request(tmp_path):
    result = runner.invoke(cli.app, ["upload", str(tmp_path / "missing.pdf"), "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_config_check_reports_source_and_exit_code():
    result = runner.invoke(cli.app, ["config", "check", "--role", "batch"], env={"LAKERAG_CHUNK_TOKENS": "64"})
    assert result.exit_code == 0
    assert "LAKERAG_CHUNK_TOKENS" in result.output and "64" in result.output and "(set)" in result.output
    result = runner.invoke(cli.app, ["config", "check"], env={"LAKERAG_STORE_URI": "s3://bucket", "AWS_REGION": ""})
    assert result.exit_code == 1 and "MISSING AWS_REGION" in result.output
    result = runner.invoke(cli.app, ["config", "check"], env={"LAKERAG_CHUNK_TOKENS": "many"})
    assert result.exit_code == 1 and "LAKERAG_CHUNK_TOKENS='many'" in result.output
    assert "correct what is named above" in result.output and "MISSING" not in result.output


def test_libraries_info_chatter_stays_out_of_a_command_s_output():
    """faiss's loader logged six INFO lines with a ModuleNotFoundError in every index command."""
    import subprocess
    import sys

    def stderr_of(verbose: bool) -> str:
        code = (f"import logging; from lakerag.cli import root; root({verbose}); import faiss; "
                "logging.getLogger('lakerag.x').info('own line')")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              check=True).stderr

    quiet = stderr_of(False)
    assert "faiss.loader" not in quiet and "INFO lakerag.x: own line" in quiet  # the project's INFO stays
    assert "faiss.loader" in stderr_of(True)  # -v shows everything


def test_the_cli_keeps_bm25s_quiet_after_bm25s_is_imported():
    """bm25s sets its logger to DEBUG when first imported, after the CLI had quieted it: each
    `lakerag run` logged "DEBUG bm25s: Building index from tokens" at the default level."""
    import subprocess
    import sys

    code = ("import logging; from lakerag import cli; cli.root(verbose=False); from lakerag.index import lexical; "
            "log = logging.getLogger('bm25s'); log.debug('debug line'); log.info('info line'); "
            "log.warning('warning line'); logging.getLogger('lakerag.x').info('our info line')")
    logged = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert "warning line" in logged and "our info line" in logged
    assert "debug line" not in logged and "info line" not in logged.replace("our info line", "")


@pytest.mark.parametrize("argv", [["index", "list"], ["pipeline", "status"], ["pipeline", "index"]])
def test_an_unreachable_store_is_one_line_with_what_to_check_not_a_traceback(argv):
    """Each of these printed ~130 lines of botocore traceback ending in the StoreError."""
    import os
    import subprocess
    import sys

    from conftest import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {**os.environ, "LAKERAG_STORE_URI": "s3://lake/prefix", "AWS_ENDPOINT_URL": endpoint,
           "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "us-east-1",
           "AWS_MAX_ATTEMPTS": "1"}
    done = subprocess.run([sys.executable, "-m", "lakerag.cli", *argv], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"lakerag: S3 unreachable ({endpoint})"), last
    assert "check LAKERAG_STORE_URI, AWS_ENDPOINT_URL" in last, last


@pytest.mark.parametrize("argv", [["search", "tides"], ["ask", "tides?"], ["summarize", "tides"],
                                  ["documents"], ["documents", "list"], ["documents", "delete", "raw/a.txt"]])
def test_the_api_url_can_come_from_lakerag_url(argv):
    """Every command needed --url again for an API not on :8000 (a port-forward, `make run PORT=`),
    while the API key already came from LAKERAG_API_KEY. --url still wins."""
    result = runner.invoke(cli.app, argv, env={"LAKERAG_URL": "http://127.0.0.1:9"})
    assert result.exit_code == 1 and "cannot reach the API at http://127.0.0.1:9 " in result.output, result.output
    given = runner.invoke(cli.app, [*argv, "--url", "http://127.0.0.1:7"], env={"LAKERAG_URL": "http://127.0.0.1:9"})
    assert "cannot reach the API at http://127.0.0.1:7 " in given.output, given.output


def test_sigterm_stops_any_command_with_one_line_and_exit_143():
    """SIGTERM killed a command on the spot with nothing said (exit -15); as a pod's PID 1 (a
    backup CronJob, a pipeline stage) the command ignored it until the kubelet's SIGKILL."""
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as silent:  # a server that accepts and never answers: `ask` waits on it
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        proc = subprocess.Popen([sys.executable, "-m", "lakerag.cli", "ask", "tides?", "--url", url],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        silent.settimeout(60)
        connection, _ = silent.accept()  # the request is in flight
        time.sleep(0.2)
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        connection.close()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "lakerag: stopped (SIGTERM)", err
    assert "Traceback" not in err, err
