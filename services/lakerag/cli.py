"""LakeRAG: make a data lake answerable (pipeline, index, API, and clients of a running API).

``lakerag`` is the one set of entry points used by make, the images,
the Helm chart and the Airflow DAG. One typed function per command, each a thin call
into a module. Heavy modules (Spark, torch, the API) are imported inside the command
that needs them: ``import pyspark.sql`` alone took 0.7 s here and sentence-transformers
26 s, which ``lakerag config check`` or ``lakerag search`` must not pay.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from . import config
from .config import Role, SearchMode
from .summary import format_summary
from .volume import WRITE_ERRNOS


def _exit_with(code: int | None, **_params) -> None:
    """Commands return their exit code; this makes it the process's (also under CliRunner)."""
    if code:
        raise typer.Exit(code)


app = typer.Typer(name="lakerag", help=__doc__.split("\n")[0], no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False, result_callback=_exit_with)
config_app = typer.Typer(help="The settings: check prints each value, where it came from and its problems.",
                         no_args_is_help=True)
index_app = typer.Typer(help="Published index versions: list, diff, rollback, sync.", no_args_is_help=True)
documents_app = typer.Typer(help="The documents of a running API: list (the default), delete.")
model_app = typer.Typer(help="Embedding model files: export a model to ONNX.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(index_app, name="index")
app.add_typer(documents_app, name="documents")
app.add_typer(model_app, name="model")

ETL_STAGES = ("bronze", "silver", "gold")
QUIET_LOGGERS = ("faiss.loader", "bm25s")


class Stage(str, Enum):
    bronze = "bronze"
    silver = "silver"
    gold = "gold"
    etl = "etl"
    embed = "embed"
    index = "index"
    run = "run"
    status = "status"
    watch = "watch"
    vacuum = "vacuum"


Url = Annotated[str, typer.Option(envvar="LAKERAG_URL", show_envvar=False, help="base URL of the API (default: LAKERAG_URL, else "
                                                              "http://127.0.0.1:8000)", show_default=False)]
ApiKeyOption = Annotated[str, typer.Option("--api-key", envvar="LAKERAG_API_KEY", show_envvar=False,
                                            help="X-API-Key for writes (the API's LAKERAG_API_KEY; default: "
                                                 "that variable here)")]
Mode = Annotated[SearchMode | None, typer.Option(help="retrieval mode (default: the server's LAKERAG_SEARCH_MODE)")]
K = Annotated[int, typer.Option("-k", help="how many chunks")]
AsOf = Annotated[str, typer.Option("--as-of", help="replay on this retained index version (the one an earlier "
                                                   "result names; `lakerag index list`)")]
DEFAULT_URL = "http://127.0.0.1:8000"


def _client():
    """The HTTP side (client.py needs httpx), imported by the commands that talk to an API:
    the Spark and embeddings images install no httpx (only the api extra does)."""
    from . import client

    return client


def _settings() -> config.Settings:
    for warning in config.misspelt():
        print(f"lakerag: WARNING {warning}", file=sys.stderr)
    try:
        return config.from_env()
    except config.ConfigError as exc:
        print(f"lakerag: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _check_bool(value: str) -> str:
    """``--full-rebuild`` is a string option: a typed bool would make Typer a plain flag and
    refuse the explicit ``--full-rebuild=true|false`` the DAG passes (see ``_with_flag_values``)."""
    try:
        config.parse_bool(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


@app.callback()
def root(verbose: Annotated[bool, typer.Option("-v", "--verbose", help="debug logging")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:
        # Their INFO is noise for a user: faiss's loader logs each optional AVX build it looks for
        # and does not find, with the exception; bm25s logs each index it builds. A filter on the
        # handlers, not the loggers' levels: bm25s sets its logger to DEBUG whenever it is first imported.
        for handler in logging.getLogger().handlers:
            handler.addFilter(_warnings_only_from_quiet_loggers)


def _warnings_only_from_quiet_loggers(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or not any(
        record.name == noisy or record.name.startswith(noisy + ".") for noisy in QUIET_LOGGERS)


@config_app.command("check")
def config_check(role: Annotated[Role, typer.Option(help="which entry point's needs to check")] = "all") -> int:
    """Print the settings (value, source, problems); exit 1 when something required is missing."""
    lines, ok = config.report(role=role)
    print("LakeRAG configuration:")
    print("\n".join(lines))
    if ok:
        print("OK")
    elif lines and lines[0].startswith("ERROR"):
        print("configuration is invalid: correct what is named above, then check again (values of the wrong type "
              "hide the other checks)")
    else:
        print("configuration is incomplete: set the variables marked MISSING")
    return 0 if ok else 1


@app.command()
def pipeline(
    stage: Annotated[Stage, typer.Argument(help="batch stage, `run` for all, `status` for the last summaries")],
    # `--full-rebuild` alone or `--full-rebuild=true|false`: the DAG always passes the explicit form,
    # so a templated Airflow param never has to add or drop an argument.
    full_rebuild: Annotated[str, typer.Option(callback=_check_bool, metavar="true|false",
                                              help="reprocess everything instead of what changed")] = "false",
    as_json: Annotated[bool, typer.Option("--json", help="status: machine-readable output")] = False,
    spark: Annotated[bool, typer.Option(help="embed: encode on Spark executors (LAKERAG_SPARK_MASTER), "
                                            "for backfills")] = False,
    dry_run: Annotated[bool, typer.Option(help="vacuum: list what would be removed")] = False,
) -> int:
    """Batch stages: bronze, silver, gold, etl, embed, index, run, status, watch, vacuum.

    watch: run whenever raw/ changes; vacuum: Delta vacuum that keeps what retained index versions need."""
    from .lake import INTERRUPTED, TERMINATED, Terminated
    from .store import StoreError

    rebuild = config.parse_bool(full_rebuild)
    settings = _settings()
    try:
        return _pipeline_stage(stage, settings, rebuild, as_json=as_json, spark=spark, dry_run=dry_run)
    except Terminated:  # SIGTERM (main() turns it into this): the stage's summary says it was stopped
        print(f"lakerag pipeline {stage.value}: {TERMINATED}", file=sys.stderr)
        return 143
    except KeyboardInterrupt:  # Ctrl-C: one line, not the tracebacks of the call it cut short
        print(f"lakerag pipeline {stage.value}: {INTERRUPTED}", file=sys.stderr)
        return 130
    except (OSError, StoreError):  # main() says what to check
        raise
    except Exception as exc:  # the stage's summary records it too (`lakerag pipeline status`)
        logging.getLogger("lakerag").debug("pipeline %s failed", stage.value, exc_info=True)
        print(f"lakerag pipeline {stage.value}: FAILED: {type(exc).__name__}: {exc} (lakerag -v pipeline "
              f"{stage.value} shows the traceback)", file=sys.stderr)
        return 1


def _pipeline_stage(stage: Stage, settings, rebuild: bool, as_json: bool, spark: bool, dry_run: bool) -> int:
    if stage in {Stage.status, Stage.watch}:  # status reads; watch locks each of its runs
        return _run_stage(stage, settings, rebuild, as_json, spark, dry_run)
    from .lake.run_lock import pipeline_lock
    from .store import store_for

    with pipeline_lock(store_for(settings), f"lakerag pipeline {stage.value}"):
        return _run_stage(stage, settings, rebuild, as_json, spark, dry_run)


def _run_stage(stage: Stage, settings, rebuild: bool, as_json: bool, spark: bool, dry_run: bool) -> int:
    if stage.value in {*ETL_STAGES, "etl"}:
        from lakerag_spark.pipeline import run_etl

        summary = run_etl(settings, stages=ETL_STAGES if stage == Stage.etl else (stage.value,),
                          full_rebuild=rebuild)
    elif stage == Stage.embed and spark:
        from lakerag_spark.embed import run_embed_spark
        from lakerag_spark.session import spark_session

        session = spark_session(settings, app_name="lakerag-embed")
        try:
            summary = run_embed_spark(session, settings, full_rebuild=rebuild)
        finally:
            session.stop()
    elif stage == Stage.embed:
        from .embed_job import run_embed

        summary = run_embed(settings, full_rebuild=rebuild)
    elif stage == Stage.index:
        from .index.publish import run_index

        summary = run_index(settings, force=rebuild)
    elif stage == Stage.run:
        from .pipeline import run_all

        summary = run_all(settings, full_rebuild=rebuild)
    elif stage == Stage.watch:
        return _pipeline_watch(settings)
    elif stage == Stage.vacuum:
        from .retention import vacuum

        summary = vacuum(settings, dry_run=dry_run)
    else:
        from .pipeline import status

        summary = status(settings)
        if as_json:
            print(json.dumps(summary, indent=2, default=str))
            return 0 if summary["healthy"] else 1
        print(format_summary(summary, verdicts=("healthy", "UNHEALTHY")))  # nothing failed for files in quarantine
        return 0 if summary["healthy"] else 1
    print(format_summary(summary))
    return 0 if summary.get("ok", True) else 1


@app.command()
def serve() -> int:
    """Run the API (one uvicorn worker)."""
    from .api.main import serve as serve_api

    return serve_api(_settings())


def _pipeline_watch(settings) -> int:
    """`lakerag pipeline watch`: run the pipeline whenever raw/ changes, until SIGTERM/SIGINT."""
    from .watch import PipelineWatcher

    watcher = PipelineWatcher(settings, on_published=lambda s: print(
        f"published index {s['index'].get('version')}", flush=True))

    def stop(*_) -> None:
        if watcher.stopping:  # asked twice: abort the run
            raise KeyboardInterrupt
        print("stopping after the current run (Ctrl-C again to abort it)", flush=True)
        watcher.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    print(f"watching {watcher.store.url('raw/')} every {settings.watch_poll_seconds}s; Ctrl-C stops", flush=True)
    try:
        watcher.run_forever()
    except KeyboardInterrupt:
        print("lakerag pipeline watch: run aborted; the next run finishes it", file=sys.stderr)
        return 130
    finally:
        watcher.stop()
    return 0 if (watcher.last_summary or {}).get("ok", True) else 1


@app.command()
def run(samples: Annotated[bool, typer.Option(help="first copy the bundled sample documents into raw/ of a store "
                                                   "that holds nothing yet (make run)")] = False) -> int:
    """Pipeline over the store, then serve it and rerun on every raw/ change (the embedded default).

    A store that has an index already is served at once, the pipeline catching up in the background."""
    from .api.main import PortUnavailable, listen_socket
    from .api.main import serve as serve_api
    from .watch import PipelineWatcher

    settings = _settings()
    try:
        sock = listen_socket(settings)  # a port in use is said now, not after the first pipeline run
    except PortUnavailable as exc:
        print(f"lakerag run: {exc}", file=sys.stderr)
        return 2
    watcher = PipelineWatcher(settings)
    if samples:
        from . import sample_docs

        if seeded := sample_docs.seed(watcher.store):
            print(f"lakerag run: copied {seeded} sample documents into {watcher.store.url('raw/')}")

    try:  # SIGTERM during the first run ends it like Ctrl-C, with a status (main() raises Terminated)
        if published := servable_index(settings, watcher.store):
            # A run that finds nothing new still costs Spark's start (~25 s here): serve the last index now;
            # the watcher's first poll runs the pipeline and the API swaps to what it publishes.
            print(f"lakerag run: serving index {published} now; the pipeline catches up with raw/ in the background")
        else:
            summary = watcher.run_once()
            print(format_summary(summary))
            if not summary.get("ok", True):
                return 1

        def start_watching(state) -> None:
            state.raw_watched = True  # upload/delete replies say the watcher indexes them, not a manual run
            # In-process notify: reload as soon as a run publishes, not at the next index poll.
            watcher.on_published = lambda _summary: state.watcher and state.watcher.check()
            watcher.start()

        # serve() ends the process when the server stops: stop the watcher first (a run finishes).
        return serve_api(settings, announce=True, on_ready=start_watching, on_shutdown=watcher.stop, sock=sock)
    except KeyboardInterrupt:
        print("lakerag run: stopped", file=sys.stderr)
        return 0
    finally:
        watcher.stop()


def servable_index(settings, store) -> str | None:
    """The published version ``lakerag run`` serves before its first pipeline run: one built with the
    configured model (another model's index would be refused; the run first says what is wrong)."""
    from .index.publish import served_manifest

    manifest = served_manifest(store, settings.embedding_model)  # unreadable: the first run says why
    return manifest["version"] if manifest else None


@index_app.command("sync")
def index_sync(once: Annotated[bool, typer.Option(help="sync once and exit (init container)")] = False,
               dest: Annotated[str, typer.Option(help="local directory (default LAKERAG_INDEX_DIR)")] = "") -> int:
    """Copy the CURRENT index version into a local directory."""
    from .index import sync

    settings = _settings()
    return (sync.sync_once if once else sync.watch)(settings, dest or settings.index_dir)


VERSION_HELP = "a version from `lakerag index list`, a unique prefix of it, `current` or `previous`"


@index_app.command("list")
def index_list() -> int:
    """List published versions (* marks CURRENT)."""
    from .index.publish import describe_versions

    print("\n".join(describe_versions(_settings())))
    return 0


@index_app.command("rollback")
def index_rollback(version: Annotated[str, typer.Argument(metavar="VERSION", help=VERSION_HELP)]) -> int:
    """Point CURRENT at an older version (`previous` steps back one)."""
    from .index.errors import IndexRejected
    from .index.publish import rollback

    try:
        version = rollback(_settings(), version)
    except IndexRejected as exc:
        print(f"lakerag: rollback refused: {exc}", file=sys.stderr)
        return 1
    print(f"index/CURRENT now points to {version}")
    return 0


@index_app.command("diff")
def index_diff(old: Annotated[str, typer.Argument(metavar="OLD", help=VERSION_HELP)] = "previous",
               new: Annotated[str, typer.Argument(metavar="NEW", help=VERSION_HELP)] = "current",
               as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> int:
    """Documents and chunks added, removed and changed between two versions.

    Without names: what the last publish changed (`previous` to `current`)."""
    from .index.diff import diff_versions, format_diff
    from .index.errors import IndexRejected
    from .lake import Lake

    try:
        diff = diff_versions(Lake.open(_settings()).store, old, new)
    except IndexRejected as exc:
        print(f"lakerag: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(diff, indent=2) if as_json else format_diff(diff))
    return 0


@app.command()
def backup(dest_uri: Annotated[str, typer.Argument(metavar="DEST_URI", help="file://DIR or s3://BUCKET/PREFIX")]) -> int:
    """Copy raw/, the Delta tables and the retained index versions to another store, checksum-verified.

    Incremental: a later backup to the same place copies only what changed."""
    return _backup_or_restore("backup", dest_uri)


@app.command()
def restore(src_uri: Annotated[str, typer.Argument(metavar="SRC_URI", help="where `lakerag backup` wrote it")]) -> int:
    """Copy a backup into the empty store LAKERAG_STORE_URI (or resume one cut off there)."""
    return _backup_or_restore("restore", src_uri)


def _backup_or_restore(command: str, uri: str) -> int:
    from .backup import BackupError
    from .backup import backup as run_backup
    from .backup import restore as run_restore
    from .store import StoreError

    settings = _settings()
    try:
        summary = (run_backup if command == "backup" else run_restore)(settings, uri)
    except (BackupError, StoreError) as exc:
        print(f"lakerag {command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file:// side this user cannot write (or read): no traceback, what to change
        where = "DEST_URI" if command == "backup" else "LAKERAG_STORE_URI"
        print(f"lakerag {command}: {exc.filename or ''}: {exc.strerror or exc}; {where} must be a directory this "
              "user can write (and the store one it can read)", file=sys.stderr)
        return 1
    print(format_summary(summary))
    return 0


InDocument = Annotated[str, typer.Option("--doc-id", help="only this document: its doc_id, raw/ key or file name")]
InSource = Annotated[str, typer.Option("--source", help="only documents whose raw/ key starts with this "
                                                        "(policies/ or raw/policies/)")]


@app.command()
def search(text: str, k: K = 5, url: Url = DEFAULT_URL, api_key: ApiKeyOption = "", mode: Mode = None,
           as_of: AsOf = "", doc_id: InDocument = "", source: InSource = "") -> int:
    """Semantic search against a running API."""
    return _client().search(url, text, k=k, api_key=api_key, mode=mode or "", as_of=as_of, doc_id=doc_id,
                            source=source)


@app.command()
def ask(text: str, k: K = 5, url: Url = DEFAULT_URL, api_key: ApiKeyOption = "", mode: Mode = None,
        as_of: AsOf = "", doc_id: InDocument = "", source: InSource = "") -> int:
    """Question answering against a running API."""
    return _client().ask(url, text, k=k, api_key=api_key, mode=mode or "", as_of=as_of, doc_id=doc_id,
                         source=source)


@app.command()
def summarize(query: Annotated[str, typer.Argument(help="what to summarise across the corpus")] = "",
              doc_id: Annotated[str, typer.Option(help="summarise this whole document instead: its doc_id, "
                                                       "raw/ key or file name")] = "",
              k: K = 8, url: Url = DEFAULT_URL, api_key: ApiKeyOption = "", mode: Mode = None,
              as_of: AsOf = "", source: InSource = "") -> int:
    """Summarise one document (--doc-id) or what the documents say about QUERY, via a running API."""
    if bool(query) == bool(doc_id):
        raise typer.BadParameter("give either QUERY or --doc-id ID")
    if source and doc_id:
        raise typer.BadParameter("--source goes with QUERY: --doc-id summarises that one document")
    return _client().summarize(url, query=query, doc_id=doc_id, k=k, api_key=api_key, mode=mode or "",
                               as_of=as_of, source=source)


@app.command()
def upload(files: Annotated[list[Path], typer.Argument(help="files to add to raw/; a directory adds the documents "
                                                            "under it", exists=True)],
           url: Url = DEFAULT_URL, api_key: ApiKeyOption = "") -> int:
    """Upload files, or the documents under directories, to a running API (its reply says what indexes them)."""
    return _client().upload(url, files, api_key=api_key)


# A subcommand's --url and --api-key, unset: those given to `documents` (`documents --url X delete ID`).
SubUrl = Annotated[str | None, typer.Option(help="base URL of the API (default: the one given to `documents`, "
                                                 "else LAKERAG_URL, else http://127.0.0.1:8000)")]
SubApiKey = Annotated[str | None, typer.Option("--api-key", envvar="LAKERAG_API_KEY", show_envvar=False,
                                               help="X-API-Key for writes (default: the one given to `documents`, "
                                                    "else LAKERAG_API_KEY here)")]


@documents_app.callback(invoke_without_command=True)
def documents(ctx: typer.Context, url: Url = DEFAULT_URL, api_key: ApiKeyOption = "") -> None:
    """The documents of a running API and their state (no subcommand: list them)."""
    ctx.meta["lakerag.documents"] = url, api_key
    if ctx.invoked_subcommand is None:
        raise typer.Exit(_client().list_documents(url, api_key=api_key))


def _documents_target(ctx: typer.Context, url: str | None, api_key: str | None) -> tuple[str, str]:
    group_url, group_key = ctx.meta["lakerag.documents"]
    return url or group_url, group_key if api_key is None else api_key


@documents_app.command("list")
def documents_list(ctx: typer.Context, url: SubUrl = None, api_key: SubApiKey = None) -> int:
    """List the documents and their state (landed, quarantined, processed, indexed)."""
    url, api_key = _documents_target(ctx, url, api_key)
    return _client().list_documents(url, api_key=api_key)


@documents_app.command("delete")
def documents_delete(ctx: typer.Context,
                     doc_id: Annotated[str, typer.Argument(help="the doc_id, raw/ key or file name, as listed")],
                     url: SubUrl = None, api_key: SubApiKey = None) -> int:
    """Delete a document's raw file (the next pipeline run removes its chunks)."""
    url, api_key = _documents_target(ctx, url, api_key)
    return _client().delete_document(url, doc_id, api_key=api_key)


@app.command("export-jsonl")
def export_jsonl(out: Annotated[str, typer.Argument(help="output file, - for stdout")]) -> int:
    """Write gold chunks as a JSONL fine-tuning dataset."""
    from .export import ExportError
    from .export import export_jsonl as export

    try:
        count = export(_settings(), out)
    except ExportError as exc:
        print(f"lakerag: {exc}", file=sys.stderr)
        return 1
    # With OUT = -, stdout is the dataset: the count goes to stderr.
    print(f"wrote {count} records to {out}", file=sys.stderr if out == "-" else sys.stdout)
    return 0


@model_app.command("export")
def model_export(
    name: Annotated[str, typer.Argument(help="model name or directory (default LAKERAG_EMBEDDING_MODEL)")] = "",
    dest: Annotated[str, typer.Option(help="directory (default: <LAKERAG_MODEL_CACHE_DIR>/onnx/<name>, where the "
                                           "encoder looks)")] = "",
    force: Annotated[bool, typer.Option(help="export again even if an export is there")] = False,
    int8: Annotated[bool, typer.Option(help="dynamic int8 quantisation: 4x smaller, lower quality "
                                            "(see docs/architecture.md)")] = False,
) -> int:
    """Export a sentence-transformers model to ONNX in the model cache (needs torch).

    The export then serves without torch."""
    from .embedding import ModelUnavailable, _torch_available

    settings = _settings()
    if not _torch_available():
        print("lakerag: model export needs torch and sentence-transformers (the torch image variant, "
              "images/build.sh api-torch, or a dev venv); the exported files then serve without them", file=sys.stderr)
        return 2
    from .onnx_export import export

    try:
        identity = export(name or settings.embedding_model, settings, Path(dest) if dest else None, force=force,
                          quantize=int8)
    except ModelUnavailable as exc:
        print(f"lakerag: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(identity, indent=2))
    return 0


@model_app.command("check")
def model_check(
    name: Annotated[str, typer.Argument(help="model name or directory (default LAKERAG_EMBEDDING_MODEL)")] = "",
    dest: Annotated[str, typer.Option(help="the export's directory (default: <LAKERAG_MODEL_CACHE_DIR>/onnx/<name>, "
                                           "where the encoder looks)")] = "",
) -> int:
    """Check an installed ONNX export against sentence-transformers (needs torch); changes nothing.

    Exit 0 when it makes the model's own vectors (or is int8, lossy by choice), 1 when it does not."""
    from .embedding import ModelUnavailable, _torch_available

    settings = _settings()
    name = name or settings.embedding_model
    if not _torch_available():
        print("lakerag: model check needs torch and sentence-transformers (the torch image variant, "
              "images/build.sh api-torch, or a dev venv) beside ONNX Runtime", file=sys.stderr)
        return 2
    from .onnx_encoder import SAME_VECTORS_COSINE
    from .onnx_export import check_installed

    try:
        checked = check_installed(name, settings, Path(dest) if dest else None)
    except ModelUnavailable as exc:
        print(f"lakerag: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(checked, indent=2))
    if checked["same_vectors"]:
        return 0
    if checked["precision"] == "int8":
        print(f"lakerag: an int8 export: other vectors by choice (lowest cosine {checked['lowest_cosine']:.4f}; its "
              "nDCG cost is in docs/retrieval.md)", file=sys.stderr)
        return 0
    # Made again, it has another sha256: an index built with this one is refused until the next embed + index.
    print(f"lakerag: the ONNX export of {name} in {checked['dest']} makes other vectors than sentence-transformers "
          f"(lowest cosine {checked['lowest_cosine']:.4f} over {checked['texts']} texts, below "
          f"{SAME_VECTORS_COSINE}): make it again (`lakerag model export {name} --force`, checked before it is "
          "installed), then embed and index again; until then serve this model with torch "
          "(LAKERAG_ENCODER=torch, the api-torch image)", file=sys.stderr)
    return 1


# --- entry points ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Parsed:
    """An argv as the CLI understands it, without running anything."""

    command: tuple[str, ...]  # e.g. ("pipeline",) or ("index", "sync")
    params: dict  # the command's parameters, typed


FLAG_VALUES = {"--full-rebuild": "true"}  # options that may stand alone, meaning this value


def _with_flag_values(argv: list[str]) -> list[str]:
    """``--full-rebuild`` alone means ``--full-rebuild=true``; ``--full-rebuild true|false``
    means the same as with ``=`` (Typer has no options with an optional value)."""
    out: list[str] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in FLAG_VALUES:
            given = args[0] if args and args[0].lower() in {"true", "false", "1", "0", "yes", "no", "on", "off"} \
                else None
            if given is not None:
                args.pop(0)
            arg = f"{arg}={given or FLAG_VALUES[arg]}"
        out.append(arg)
    return out


def parse(argv: list[str]) -> Parsed:
    """Parse ``argv`` with the real CLI (a typer.TyperException when invalid) without running
    anything; the chart, image and DAG contract tests check their commands with it."""
    command = typer.main.get_command(app)
    ctx = command.make_context("lakerag", _with_flag_values(argv))
    path: list[str] = []
    while hasattr(command, "resolve_command"):  # a group: descend into the named subcommand
        args = [*ctx._protected_args, *ctx.args]
        if not args:
            break
        name, command, rest = command.resolve_command(ctx, args)
        path.append(name)
        ctx = command.make_context(name, rest, parent=ctx)
    return Parsed(tuple(path), dict(ctx.params))


class _Sigterm:
    """SIGTERM stops any command the way Ctrl-C does (raises Terminated, a KeyboardInterrupt). Without
    a handler, a pod's PID 1 ignores it until the kubelet's SIGKILL, and any other process dies with
    nothing said. `serve`, `pipeline watch` and `index sync` install their own."""

    def __init__(self):
        self.received = False

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    def _raise(self, *_) -> None:
        from .lake import Terminated

        self.received = True
        raise Terminated

    def __exit__(self, *_):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def main(argv: list[str] | None = None) -> int:
    with _Sigterm() as sigterm:
        code = _run_command(sys.argv[1:] if argv is None else argv)
    if sigterm.received and code == 130:  # typer answers an interrupt it caught with 130, silently
        print("lakerag: stopped (SIGTERM)", file=sys.stderr)
        return 143
    return code


def _run_command(argv: list[str]) -> int:
    from .store import StoreError  # no boto3: store.py imports it only for an s3:// store

    command = typer.main.get_command(app)
    try:
        result = command.main(args=_with_flag_values(argv), prog_name="lakerag", standalone_mode=False)
    except StoreError as exc:  # the store is unreachable or refuses us: what to check, not botocore's traceback
        logging.getLogger("lakerag").debug("store error", exc_info=True)  # the traceback with -v
        print(f"lakerag: {exc}; check LAKERAG_STORE_URI, AWS_ENDPOINT_URL and the credentials, and that the store "
              "is up", file=sys.stderr)
        return 1
    except BrokenPipeError:
        raise
    except OSError as exc:  # the machine, not the data: a full disk, a permission (the traceback with -v)
        logging.getLogger("lakerag").debug("OS error", exc_info=True)
        # A copy's error names the source first, the destination second.
        where = exc.filename2 or exc.filename or f"{tempfile.gettempdir()}, TMPDIR"
        what = "could not be written" if exc.errno in WRITE_ERRNOS else "operation failed"
        print(f"lakerag: {exc.strerror or exc} (a local file {what}; check the free space and permissions of "
              f"{where}); -v shows where", file=sys.stderr)
        return 1
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return 1
    except typer.TyperException as exc:  # usage errors and bad parameters: said on stderr, exit 2
        if isinstance(exc, typer.BadParameter):  # typer checks choices with pydantic, which prefixes this
            exc.message = exc.message.removeprefix("Value error, ")
        exc.show()
        return exc.exit_code
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
