"""``lakerag`` command line: the one set of entry points used by make, the images,
the Helm chart and the Airflow DAG. Each command is a thin call into a module;
heavy imports (Spark, torch) happen only inside the command that needs them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from . import config


def _settings() -> config.Settings:
    try:
        return config.from_env()
    except config.ConfigError as exc:
        print(f"lakerag: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_config_check(args) -> int:
    lines, ok = config.report(role=args.role)
    print("LakeRAG configuration:")
    print("\n".join(lines))
    print("OK" if ok else "configuration is incomplete: set the variables marked MISSING")
    return 0 if ok else 1


def _print_summary(summary: dict) -> None:
    from .summary import format_summary

    print(format_summary(summary))


def cmd_pipeline(args) -> int:
    settings = _settings()
    stage = args.stage
    if stage in {"bronze", "silver", "gold", "etl"}:
        from lakerag_spark.pipeline import run_etl

        stages = ("bronze", "silver", "gold") if stage == "etl" else (stage,)
        summary = run_etl(settings, stages=stages, full_rebuild=args.full_rebuild)
    elif stage == "embed" and args.spark:
        from lakerag_spark.embed import run_embed_spark
        from lakerag_spark.session import spark_session

        spark = spark_session(settings, app_name="lakerag-embed")
        try:
            summary = run_embed_spark(spark, settings, full_rebuild=args.full_rebuild)
        finally:
            spark.stop()
    elif stage == "embed":
        from .embed_job import run_embed

        summary = run_embed(settings, full_rebuild=args.full_rebuild)
    elif stage == "index":
        from .index.publish import run_index

        summary = run_index(settings, force=args.full_rebuild)
    elif stage == "run":
        from .pipeline import run_all

        summary = run_all(settings, full_rebuild=args.full_rebuild)
    elif stage == "watch":
        return cmd_pipeline_watch(settings)
    elif stage == "vacuum":
        from .retention import vacuum

        summary = vacuum(settings, dry_run=args.dry_run)
    elif stage == "status":
        from .pipeline import status

        summary = status(settings)
        if args.json:
            print(json.dumps(summary, indent=2, default=str))
            return 0 if summary["healthy"] else 1
    else:  # argparse restricts choices; keep mypy happy
        raise SystemExit(f"unknown stage {stage}")
    _print_summary(summary)
    return 0 if summary.get("ok", True) else 1


def cmd_serve(args) -> int:
    from .api.main import serve

    return serve(_settings())


def cmd_run(args) -> int:
    """The embedded default: pipeline over the store, then serve it while watching raw/
    (each change runs the incremental pipeline; the API swaps in the new index at once)."""
    import signal

    from .watch import PipelineWatcher

    settings = _settings()
    watcher = PipelineWatcher(settings)

    def interrupt(*_) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # a stop during the first run ends it like Ctrl-C, with a status
    try:
        summary = watcher.run_once()
        _print_summary(summary)
        if not summary.get("ok", True):
            return 1
        from .api.main import serve

        def start_watching(state) -> None:
            # In-process notify: reload as soon as a run publishes, not at the next index poll.
            watcher.on_published = lambda _summary: state.watcher and state.watcher.check()
            watcher.start()

        # serve() ends the process when the server stops: stop the watcher first (a run finishes).
        return serve(settings, announce=True, on_ready=start_watching, on_shutdown=watcher.stop)
    except KeyboardInterrupt:
        print("lakerag run: stopped", file=sys.stderr)
        return 0
    finally:
        watcher.stop()


def cmd_pipeline_watch(settings) -> int:
    """`lakerag pipeline watch`: run the pipeline whenever raw/ changes, until SIGTERM/SIGINT."""
    import signal

    from .watch import PipelineWatcher

    watcher = PipelineWatcher(settings, on_published=lambda s: print(
        f"published index {s['index'].get('version')}", flush=True))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: watcher.request_stop())
    print(f"watching {watcher.store.url('raw/')} every {settings.watch_poll_seconds}s; Ctrl-C stops", flush=True)
    try:
        watcher.run_forever()
    finally:
        watcher.stop()
    return 0 if (watcher.last_summary or {}).get("ok", True) else 1


def cmd_index(args) -> int:
    settings = _settings()
    from .index import publish
    from .index import sync as index_sync

    if args.action == "sync":
        dest = args.dest or settings.index_dir
        if args.once:
            return index_sync.sync_once(settings, dest)
        return index_sync.watch(settings, dest)
    if args.action == "list":
        for line in publish.describe_versions(settings):
            print(line)
        return 0
    if args.action == "rollback":
        from .index.artifacts import IndexRejected

        try:
            publish.rollback(settings, args.version)
        except IndexRejected as exc:
            print(f"lakerag: rollback refused: {exc}", file=sys.stderr)
            return 1
        print(f"index/CURRENT now points to {args.version}")
        return 0
    if args.action == "diff":
        from .index.artifacts import IndexRejected
        from .index.diff import diff_versions, format_diff

        try:
            diff = diff_versions(publish.Lake.open(settings).store, args.old, args.new)
        except IndexRejected as exc:
            print(f"lakerag: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(diff, indent=2) if args.json else format_diff(diff))
        return 0
    raise SystemExit(f"unknown index action {args.action}")


def cmd_query(args) -> int:
    from . import client

    url = args.url
    if args.command == "search":
        return client.search(url, args.text, k=args.k, api_key=args.api_key, mode=args.mode)
    return client.ask(url, args.text, k=args.k, api_key=args.api_key, mode=args.mode)


def cmd_export_jsonl(args) -> int:
    from .export import export_jsonl

    count = export_jsonl(_settings(), args.out)
    print(f"wrote {count} records to {args.out}")
    return 0


def cmd_model_export(args) -> int:
    from pathlib import Path

    from .embedding import ModelUnavailable, _torch_available

    settings = _settings()
    if not _torch_available():
        print("lakerag: model export needs torch and sentence-transformers (the embeddings image's torch "
              "variant or a dev venv); the exported files then serve without them", file=sys.stderr)
        return 2
    from .onnx_export import export

    name = args.name or settings.embedding_model
    try:
        identity = export(name, settings, Path(args.dest) if args.dest else None, force=args.force,
                          quantize=args.int8)
    except ModelUnavailable as exc:
        print(f"lakerag: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(identity, indent=2))
    return 0


def cmd_backup(args) -> int:
    from .backup import BackupError, backup, restore
    from .store import StoreError

    settings = _settings()
    try:
        summary = backup(settings, args.uri) if args.command == "backup" else restore(settings, args.uri)
    except (BackupError, StoreError) as exc:
        print(f"lakerag {args.command}: {exc}", file=sys.stderr)
        return 1
    _print_summary(summary)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lakerag", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("config", help="configuration").add_subparsers(dest="action", required=True)
    check_cmd = check.add_parser("check", help="print settings, exit non-zero when something required is missing")
    check_cmd.add_argument("--role", choices=["api", "batch", "all"], default="all")
    check_cmd.set_defaults(func=cmd_config_check)

    pipe = sub.add_parser("pipeline", help="batch stages: bronze, silver, gold, etl, embed, index, run, status; "
                                           "watch: run whenever raw/ changes; vacuum: Delta vacuum that keeps what retained "
                                           "index versions need")
    pipe.add_argument("stage", choices=["bronze", "silver", "gold", "etl", "embed", "index", "run", "status",
                                        "watch", "vacuum"])
    # `--full-rebuild` alone or `--full-rebuild=true|false`: the DAG always passes the explicit form,
    # so a templated Airflow param never has to add or drop an argument.
    pipe.add_argument("--full-rebuild", nargs="?", const=True, default=False, type=config._bool,
                      metavar="true|false", help="reprocess everything instead of what changed")
    pipe.add_argument("--json", action="store_true", help="status: machine-readable output")
    pipe.add_argument("--spark", action="store_true",
                      help="embed: encode on Spark executors (LAKERAG_SPARK_MASTER), for backfills")
    pipe.add_argument("--dry-run", action="store_true", help="vacuum: list what would be removed")
    pipe.set_defaults(func=cmd_pipeline)

    sub.add_parser("serve", help="run the API (one uvicorn worker)").set_defaults(func=cmd_serve)
    sub.add_parser("run", help="pipeline over the store, then serve it and rerun on every raw/ change "
                                             "(the embedded default)").set_defaults(
        func=cmd_run)

    index = sub.add_parser("index", help="published index versions")
    index_sub = index.add_subparsers(dest="action", required=True)
    sync = index_sub.add_parser("sync", help="copy the CURRENT index version into a local directory")
    sync.add_argument("--once", action="store_true", help="sync once and exit (init container)")
    sync.add_argument("--dest", default="", help="local directory (default LAKERAG_INDEX_DIR)")
    index_sub.add_parser("list", help="list published versions")
    rollback = index_sub.add_parser("rollback", help="point CURRENT at an older version")
    rollback.add_argument("version")
    diff = index_sub.add_parser("diff", help="documents and chunks added, removed and changed between two versions")
    diff.add_argument("old")
    diff.add_argument("new")
    diff.add_argument("--json", action="store_true", help="machine-readable output")
    index.set_defaults(func=cmd_index)

    for name, help_text in (("search", "semantic search against a running API"),
                            ("ask", "question answering against a running API")):
        query = sub.add_parser(name, help=help_text)
        query.add_argument("text")
        query.add_argument("-k", type=int, default=5)
        query.add_argument("--url", default="http://127.0.0.1:8000")
        query.add_argument("--api-key", default="")
        query.add_argument("--mode", choices=["dense", "lexical", "hybrid"], default="",
                           help="retrieval mode (default: the server's LAKERAG_SEARCH_MODE)")
        query.set_defaults(func=cmd_query)

    model = sub.add_parser("model", help="embedding model files").add_subparsers(dest="action", required=True)
    model_export = model.add_parser("export", help="export a sentence-transformers model to ONNX in the model cache "
                                    "(needs torch; the export then serves without it)")
    model_export.add_argument("name", nargs="?", default="",
                              help="model name or directory (default LAKERAG_EMBEDDING_MODEL)")
    model_export.add_argument("--dest", default="",
                              help="directory (default: <LAKERAG_MODEL_CACHE_DIR>/onnx/<name>, where the encoder looks)")
    model_export.add_argument("--force", action="store_true", help="export again even if an export is there")
    model_export.add_argument("--int8", action="store_true",
                              help="dynamic int8 quantisation: 4x smaller, lower quality (see docs/architecture.md)")
    model_export.set_defaults(func=cmd_model_export)

    backup = sub.add_parser("backup", help="copy raw/, the Delta tables and the retained index versions to another "
                                           "store (checksum-verified; incremental on later runs)")
    backup.add_argument("uri", metavar="DEST_URI", help="file://DIR or s3://BUCKET/PREFIX")
    backup.set_defaults(func=cmd_backup)
    restore = sub.add_parser("restore", help="copy a backup into the empty store LAKERAG_STORE_URI")
    restore.add_argument("uri", metavar="SRC_URI", help="where `lakerag backup` wrote it")
    restore.set_defaults(func=cmd_backup)

    export = sub.add_parser("export-jsonl", help="write gold chunks as a JSONL fine-tuning dataset")
    export.add_argument("out")
    export.set_defaults(func=cmd_export_jsonl)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
