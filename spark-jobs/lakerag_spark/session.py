"""The one SparkSession of an ETL run (local[*] by default, any spark:// or k8s:// master)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
import warnings

from lakerag.config import SECRET_VARS, Settings, env_var
from lakerag.lake import Terminated

# Only errors from the JVM: Spark's INFO/WARN chatter would bury the run summary.
_LOG4J2 = """\
# Errors only. Spark's own logger must have the root's level too, else PySpark prints a
# "Setting default log level" banner.
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
logger.spark.name = org.apache.spark
logger.spark.level = error
"""


LOOPBACK = "127.0.0.1"
log = logging.getLogger(__name__)


def for_executors(settings: Settings) -> Settings:
    """The settings an executor function closes over: executors need the store settings only, so
    every secret (``config.SECRET_VARS``), the LLM's address and the Airflow login stay on the driver."""
    secrets = {field: "" for field in Settings.model_fields if env_var(field) in SECRET_VARS}
    return settings.replace(**secrets, gemini_base_url="", airflow_username="")


def _log4j2_file() -> str:
    path = os.path.join(tempfile.gettempdir(), f"lakerag-spark-log4j2-{os.getuid()}.properties")
    with open(path, "w") as handle:
        handle.write(_LOG4J2)
    return path


def spark_session(settings: Settings, app_name: str = "lakerag-etl"):
    """Get the active session or start one for ``settings.spark_master``.

    In local mode executors are Python subprocesses of this machine: they must run this
    interpreter (the venv with lakerag installed), not whatever ``python3`` is on PATH.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    local = settings.spark_master.startswith("local")
    if local:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    log_option = f"-Dlog4j2.configurationFile=file:{_log4j2_file()}"
    builder = (
        SparkSession.builder.master(settings.spark_master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", log_option)
        .config("spark.executor.extraJavaOptions", log_option)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # Parquet that Spark writes must be readable by delta-rs (no INT96).
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    )
    if local:
        # A handful of small documents per run: 200 shuffle partitions would be pure overhead.
        builder = builder.config("spark.sql.shuffle.partitions", str(max(4, 2 * (os.cpu_count() or 2))))
        # Driver and executors share this machine: bind to loopback, not to whatever interface the
        # host name resolves to (a vanishing interface failed runs with BindException).
        builder = builder.config("spark.driver.bindAddress", LOOPBACK).config("spark.driver.host", LOOPBACK)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    _cancel_jobs_on_interrupt(spark)
    _quiet_py4j(spark)
    return spark


def _quiet_py4j(spark) -> None:
    """Tracebacks of what is said in one line elsewhere stay out of the log: py4j's of calls an
    interrupt cut short or that it retries (a dead JVM's: session_alive, stop_session, py4j's
    garbage-collection thread), and the EOFError PySpark's accumulator server printed when the JVM
    died first (the OOM killer; SIGTERM to the whole process group, as systemd and `timeout` send
    it), which the watcher and stop_session() report."""
    server = getattr(spark.sparkContext, "_accumulatorServer", None)  # PySpark's: absent in Spark Connect
    if server is not None:
        server.handle_error = _accumulator_connection_failed
    # A logger's filters see only the records logged on it: py4j logs on its own and the root logger.
    for logger in map(logging.getLogger, ("", "py4j.clientserver", "py4j.java_gateway")):
        if _drop_py4j_noise not in logger.filters:
            logger.addFilter(_drop_py4j_noise)


def _accumulator_connection_failed(_request, _address) -> None:
    # socketserver calls it in the except block of the failed request
    log.debug("the Spark JVM's accumulator connection failed (the JVM died?)", exc_info=sys.exc_info())


def _drop_py4j_noise(record: logging.LogRecord) -> bool:
    """py4j logs a call it retries at INFO with its traceback (the caller gets the outcome), and
    on the root logger, which `lakerag` shows at INFO. A call whose connection the JVM broke (it
    died mid-call) it logs at ERROR with its traceback and returns as a bare Py4JError, which the
    caller reports: that record stays, as one line with what broke the connection."""
    if f"{os.sep}py4j{os.sep}" not in record.pathname or not record.exc_info:
        return True
    error = record.exc_info[1]
    if record.levelno < logging.WARNING or interrupted(error):
        return False
    from py4j.protocol import Py4JNetworkError

    if isinstance(error, Py4JNetworkError):
        cause = error.cause or error
        record.msg, record.args = f"{record.getMessage()} The Spark JVM is gone? {type(cause).__name__}: {cause}", ()
        record.exc_info = record.exc_text = None
    return True


# The interrupt that cancelled the session's jobs (KeyboardInterrupt for Ctrl-C, Terminated for
# SIGTERM): a Spark job it cancelled fails with an error that need not chain it.
_cancelled_by: list[type[KeyboardInterrupt]] = []


def _cancel_jobs_on_interrupt(spark) -> None:
    """Ctrl-C and SIGTERM cancel the session's jobs and raise KeyboardInterrupt (Terminated), as
    PySpark's own Ctrl-C handler does, but cancel from another thread: PySpark's, run while this
    thread waits for a py4j answer, called py4j on that same connection ("reentrant call"), left
    the jobs running and logged tracebacks (_quiet_py4j drops py4j's of the interrupted call)."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers belong to the main thread (and PySpark installed none)

    def cancel_jobs() -> None:
        with contextlib.suppress(Exception):  # the session may have stopped since
            spark.sparkContext.cancelAllJobs()

    def interrupt(signum, _frame) -> None:
        raised = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        _cancelled_by.append(raised)
        threading.Thread(target=cancel_jobs, name="cancel-spark-jobs", daemon=True).start()
        raise raised

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def interrupted(exc: BaseException | None) -> type[KeyboardInterrupt] | None:
    """The interrupt (Ctrl-C's KeyboardInterrupt, SIGTERM's Terminated) ``exc`` is or came from (raised
    while handling it, or after it cancelled the jobs); None when it is neither."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return type(exc)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return _cancelled_by[-1] if _cancelled_by else None


def error_text(exc: BaseException) -> str:
    """One line for a run summary. A Py4JJavaError's text is the call plus the whole Java stack trace
    (60 lines and more in `pipeline status`, the DAG's health task and the console): keep the call
    and the root cause."""
    from py4j.protocol import Py4JError, Py4JJavaError

    if not isinstance(exc, Py4JJavaError):
        return f"{type(exc).__name__}: {exc}"
    call = exc.errmsg.strip().removesuffix(".")
    try:
        lines = str(exc).splitlines()
    except (Py4JError, OSError):  # str() asks the JVM, which may be gone
        return f"{type(exc).__name__}: {call}"
    causes = [line for line in lines if line.startswith(("Caused by: ", ": "))]
    cause = causes[-1].removeprefix("Caused by: ").removeprefix(": ").strip() if causes else ""
    return f"{type(exc).__name__}: {call}: {cause}" if cause else f"{type(exc).__name__}: {call}"


def session_alive(spark) -> bool:
    """Whether the session's JVM still answers and its SparkContext has not stopped."""
    from py4j.protocol import Py4JError

    try:
        return not spark.sparkContext._jsc.sc().isStopped()
    except (Py4JError, OSError, AttributeError):  # the JVM is unreachable (killed, out of memory); no _jsc
        return False


def stop_session(spark) -> None:
    """Stop ``spark``; when its JVM has died, forget it instead, so that the next spark_session()
    starts a new JVM: PySpark keeps the dead gateway in class attributes and would hand the dead
    session out again (SPARK-18523)."""
    from py4j.protocol import Py4JError
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    try:
        with warnings.catch_warnings():  # "Unable to cleanly shutdown Spark JVM process": said below
            warnings.simplefilter("ignore", RuntimeWarning)
            spark.stop()
        return
    except (Py4JError, OSError) as exc:  # py4j cannot reach the JVM
        log.warning("the Spark JVM is gone (%s); forgetting its session", type(exc).__name__)
    SparkSession._instantiatedSession = SparkSession._activeSession = None
    with SparkContext._lock:
        SparkContext._active_spark_context = None
        gateway, SparkContext._gateway, SparkContext._jvm = SparkContext._gateway, None, None
    if gateway is not None:
        with contextlib.suppress(Exception):
            gateway.shutdown()  # the Python side's sockets and callback server
