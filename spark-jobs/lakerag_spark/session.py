"""The one SparkSession of an ETL run (local[*] by default, any spark:// or k8s:// master)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings

from lakerag.config import Settings

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
    return spark


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
