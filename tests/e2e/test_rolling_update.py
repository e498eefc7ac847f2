"""A rolling update of the API without a dropped request, under Docker: two API pods of the
rendered chart (the real image, the exact container spec) behind a client that, like a
Service, sends each new connection to a ready endpoint. The old pod is then terminated
the way the kubelet does it: it leaves the endpoints at once, but the removal reaches the
client only after PROPAGATION seconds (kube-proxy and load balancers lag); meanwhile the
rendered preStop hook runs in the container; then SIGTERM, and a kill after
terminationGracePeriodSeconds. Requests loop throughout; an upload whose body is still
arriving when SIGTERM lands must be stored.

The same termination without the preStop hook must drop requests: the guard that this
test can fail, and what `helm upgrade` did before the chart had one.
"""

from __future__ import annotations

import copy
import itertools
import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import harness
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from chart.helm import find, pod_spec
from test_chart_pods import chart_objects, run_api_pod

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PROPAGATION = 3.0  # seconds until every client stops sending to a pod that left the endpoints
CLIENTS = 4


class Endpoints:
    """The client's view of the Service: ready pod addresses, round robin per connection."""

    def __init__(self, *bases: str):
        self.bases = list(bases)
        self.lock = threading.Lock()
        self.counter = itertools.count()

    def pick(self) -> str:
        with self.lock:
            return self.bases[next(self.counter) % len(self.bases)]

    def remove(self, base: str) -> None:
        with self.lock:
            self.bases.remove(base)


class Load:
    """CLIENTS threads sending GET /documents (a store listing) and /health, one connection each."""

    def __init__(self, endpoints: Endpoints):
        self.endpoints = endpoints
        self.stop = threading.Event()
        self.served: dict[str, int] = {}
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]

    def _run(self) -> None:
        for n in itertools.count():
            if self.stop.is_set():
                return
            base = self.endpoints.pick()
            path = "/documents" if n % 2 == 0 else "/health"
            try:
                with urllib.request.urlopen(base + path, timeout=30) as response:
                    response.read()
                    outcome = None if response.status == 200 else f"{base}{path}: {response.status}"
            except (urllib.error.URLError, OSError) as exc:
                outcome = f"{base}{path}: {exc}"
            with self.lock:
                if outcome:
                    self.failures.append(outcome)
                else:
                    self.served[base] = self.served.get(base, 0) + 1

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def start_upload(base: str, api_key: str, name: str, payload: bytes) -> tuple[socket.socket, bytes]:
    """An upload whose headers and first half of the body are sent: in flight from here on."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: text/plain\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    head = (f"POST /documents HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {api_key}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n")
    half = len(body) // 2
    sock.sendall(head.encode() + body[:half])
    return sock, body[half:]


def finish_upload(sock: socket.socket, rest: bytes) -> tuple[int, dict]:
    sock.sendall(rest)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if b"chunked" in head.lower():
        size, _, rest_body = body.partition(b"\r\n")
        body = rest_body[: int(size, 16)]
    return status, json.loads(body or b"{}")


def terminate_like_the_kubelet(docker, pod: dict, endpoints: Endpoints, upload=None) -> dict:
    """Endpoint removal (seen by clients after PROPAGATION), preStop, SIGTERM, kill at the grace period."""
    spec, api, name = pod["spec"], pod["api"], pod["name"]
    grace = spec.get("terminationGracePeriodSeconds", 30)
    started = time.monotonic()
    remover = threading.Timer(PROPAGATION, endpoints.remove, args=(pod["base"],))
    remover.start()
    pre_stop = api.get("lifecycle", {}).get("preStop")
    if pre_stop:
        result = docker("exec", name, *pre_stop["exec"]["command"], check=False, timeout=grace)
        assert result.returncode == 0, f"the preStop hook failed in the image: {result.stderr}"
    pre_stop_seconds = time.monotonic() - started
    docker("kill", "--signal", "TERM", name)
    upload_result = None
    if upload is not None:
        time.sleep(1)  # the server is shutting down with the upload's body still arriving
        upload_result = finish_upload(*upload)
    remaining = max(1, int(grace - (time.monotonic() - started)))
    exit_code = docker("wait", name, timeout=remaining + 5, check=False).stdout.strip()
    if docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true":
        docker("kill", name)
        exit_code = "killed at the grace period"
    remover.join()
    return {"pre_stop_seconds": round(pre_stop_seconds, 1), "exit": exit_code,
            "stopped_after": round(time.monotonic() - started, 1), "upload": upload_result}


def start_pod(docker, store: str, moto: str, build_env: dict, strip_pre_stop: bool = False) -> dict:
    port = harness.free_port()
    objects = chart_objects(store, moto, port, build_env["IMAGE_TAG"], build_env["REGISTRY"])
    if strip_pre_stop:  # what the chart rendered before it had a preStop hook
        objects = copy.deepcopy(objects)
        deployment = find(objects, "Deployment", "lakerag-api")
        pod_spec(deployment)["containers"][0].pop("lifecycle", None)
    pod = run_api_pod(docker, objects, port)
    pod["spec"] = pod_spec(find(objects, "Deployment", "lakerag-api"))
    pod["objects"] = objects
    return pod


def test_terminating_an_api_pod_under_load_fails_no_request(docker, api_image, build_env, empty_store,
                                                            moto_endpoint):
    old = start_pod(docker, empty_store, moto_endpoint, build_env)
    new = start_pod(docker, empty_store, moto_endpoint, build_env)
    api = old["api"]
    pre_stop = int(api["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pre_stop > PROPAGATION
    endpoints = Endpoints(old["base"], new["base"])
    api_key = old["env"]["LAKERAG_API_KEY"]
    payload = b"kept through a rolling update\n" * 2000
    with Load(endpoints) as load:
        time.sleep(3)
        assert load.served.get(old["base"]), f"no request reached the old pod: {load.failures[:5]}"
        upload = start_upload(old["base"], api_key, "in-flight.txt", payload)
        report = terminate_like_the_kubelet(docker, old, endpoints, upload=upload)
        time.sleep(2)
    harness.REPORT["rolling_update"] = {**report, "served": sum(load.served.values()),
                                        "failures": len(load.failures)}
    print(f"rolling update: {harness.REPORT['rolling_update']}")
    assert not load.failures, f"{len(load.failures)} failed requests: {load.failures[:5]}"
    assert load.served[new["base"]] > 0 and sum(load.served.values()) > 100
    # SIGTERM: the server stopped taking connections, finished the upload and exited by itself.
    assert report["exit"] == "0", report
    assert report["pre_stop_seconds"] >= pre_stop
    assert report["stopped_after"] < old["spec"]["terminationGracePeriodSeconds"]
    status, body = report["upload"]
    assert status == 201, body
    listed = json.loads(urllib.request.urlopen(new["base"] + "/documents", timeout=30).read())
    assert "in-flight.txt" in json.dumps(listed), listed

    # Guard: the same termination without the preStop hook drops requests.
    bare = start_pod(docker, empty_store, moto_endpoint, build_env, strip_pre_stop=True)
    endpoints = Endpoints(new["base"], bare["base"])
    with Load(endpoints) as load:
        time.sleep(3)
        assert load.served.get(bare["base"])
        terminate_like_the_kubelet(docker, bare, endpoints)
        time.sleep(1)
    harness.REPORT["rolling_update_without_prestop_failures"] = len(load.failures)
    assert load.failures, "without preStop no request failed: the emulated propagation proves nothing"
