"""The one SparkSession of an ETL run (local[*] by default, any spark:// or k8s:// master)."""

from __future__ import annotations

import logging
import os
import sys
import tempfile

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
