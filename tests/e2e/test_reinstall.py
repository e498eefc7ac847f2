"""`helm uninstall` then `helm install` again, for the chart's PostgreSQL and the Airflow
connection to it: the Postgres PVC outlives the release (a StatefulSet claim), and so must
the password initdb wrote into it.

What runs: a real PostgreSQL (the host's binaries; the chart's postgres image cannot be
pulled here) started as the image starts it (initdb with the rendered Secret's password
on an empty data directory; on a data directory that has one, the password setting is
ignored), and psql connecting with the URL the chart assembles for Airflow from that
Secret. What cannot run without a Kubernetes API server is Helm itself; its rules are
applied: uninstall deletes every object without `helm.sh/resource-policy: keep`, and on
the reinstall `lookup` returns a kept Secret (its values win) or nothing (new random ones).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import harness
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from chart.helm import find, pod_spec, template_text
from test_chart_pods import resolve_env

pytestmark = pytest.mark.e2e
PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


def give_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres")


def as_postgres(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def install(sets: tuple[str, ...] = ()) -> list[dict]:
    """A fresh render: what `helm install` creates when `lookup` finds nothing."""
    result = template_text(sets=(f"tests.query=install {uuid.uuid4().hex}", *sets))
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def uninstall_and_reinstall(objects: list[dict]) -> list[dict]:
    """Helm's rules: objects without the keep policy go; the reinstall's lookup reads kept Secrets."""
    kept = [o for o in objects if o["kind"] == "Secret"
            and (o["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") == "keep"]
    fresh = install()
    by_name = {o["metadata"]["name"]: o for o in kept}
    return [by_name.get(o["metadata"]["name"], o) if o["kind"] == "Secret" else o for o in fresh]


class Postgres:
    """The chart's postgres container, started the way its image starts it, on a kept data directory."""

    def __init__(self, root: Path):
        self.bin = PG_BINS[-1]
        self.data = root / "pgdata"  # PGDATA: the PVC's subdirectory
        self.socket = root / "run"  # the pod's /var/run/postgresql emptyDir
        self.socket.mkdir()
        give_to_postgres(self.socket)
        self.port = harness.free_port()

    def start(self, objects: list[dict]) -> None:
        container = pod_spec(find(objects, "StatefulSet", "lakerag-postgres"))["containers"][0]
        env = resolve_env(container, objects)
        if not self.data.exists():  # the image's entrypoint: initdb only on an empty volume
            password_file = self.socket / "pw"
            password_file.write_text(env["POSTGRES_PASSWORD"])
            give_to_postgres(password_file)
            self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", env["POSTGRES_USER"],
                       f"--pwfile={password_file}", "--auth-host=scram-sha-256", "--auth-local=trust"])
            password_file.unlink()
            self._pg_ctl("start")
            self._run([str(self.bin / "createdb"), "-h", str(self.socket), "-p", str(self.port),
                       "-U", env["POSTGRES_USER"], env["POSTGRES_DB"]])
            return
        self._pg_ctl("start")

    def stop(self) -> None:
        self._pg_ctl("stop", check=False)

    def _pg_ctl(self, action: str, check: bool = True) -> None:
        options = f"-p {self.port} -k {self.socket} -c listen_addresses=127.0.0.1"
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-o", options, "-l",
                   str(self.socket / "log"), action], check=check)

    def _run(self, argv: list[str], check: bool = True) -> None:
        result = subprocess.run(as_postgres(argv), capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            log = self.socket / "log"
            raise AssertionError(f"{argv[0]}: {result.stdout}{result.stderr}\n{log.read_text() if log.exists() else ''}")


def airflow_sql(objects: list[dict], port: int, sql: str) -> tuple[bool, str, str]:
    """psql with the database URL the chart gives the Airflow scheduler (Service name → this host)."""
    scheduler = pod_spec(find(objects, "Deployment", "lakerag-airflow-scheduler"))["containers"][0]
    url = resolve_env(scheduler, objects)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port) == ("postgresql+psycopg2", "lakerag-postgres", 5432), url
    # The password goes by environment, not argv: it stays out of process lists and failure reports.
    result = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", parts.username,
                             "-d", parts.path.lstrip("/"), "-tAc", sql], capture_output=True, text=True, timeout=60,
                            check=False, env={**os.environ, "PGPASSWORD": unquote(parts.password)})
    return result.returncode == 0, result.stdout.strip(), result.stderr.strip()


@pytest.fixture
def volume():
    if not PG_BINS or not shutil.which("psql"):
        pytest.skip("PostgreSQL server binaries (/usr/lib/postgresql/*/bin) and psql are not installed")
    root = Path(tempfile.mkdtemp(prefix="lakerag-pg-"))
    root.chmod(0o755)
    give_to_postgres(root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_reinstall_on_the_kept_postgres_volume_reconnects_airflow(volume):
    postgres = Postgres(volume)
    first = install()
    postgres.start(first)
    try:
        ok, _, error = airflow_sql(first, postgres.port, "create table run_history (id int); insert into run_history values (42)")
        assert ok, error
    finally:
        postgres.stop()

    second = uninstall_and_reinstall(first)
    postgres.start(second)  # the kept PVC: initdb does not run again
    try:
        password = base64.b64decode(find(second, "Secret", "lakerag-postgres")["data"]["password"]).decode()
        ok, rows, error = airflow_sql(second, postgres.port, "select id from run_history")
        assert ok, f"Airflow cannot log in after the reinstall: {error}"
        assert rows == "42"
        # The check means something: a regenerated password is refused by the kept database.
        regenerated = install()
        assert base64.b64decode(find(regenerated, "Secret", "lakerag-postgres")["data"]["password"]).decode() != password
        ok, _, error = airflow_sql(regenerated, postgres.port, "select 1")
        assert not ok and "password authentication failed" in error
    finally:
        postgres.stop()
