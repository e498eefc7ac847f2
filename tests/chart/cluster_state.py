"""Render the chart as `helm upgrade` does against a cluster that already holds some Secrets.

The templates' ``lookup`` calls (generated secrets kept across upgrades) return nothing
under plain `helm template`. Here helm renders with ``--dry-run=server`` against a minimal
Kubernetes API on loopback: discovery for the kinds the chart renders, and GET of the
Secrets given. Helm makes the same requests of a real API server.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import yaml
from json_http import send_json

from .helm import CHART, NAMESPACE, RELEASE, helm, render


def _plural(kind: str) -> str:
    lower = kind.lower()
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + ("es" if lower.endswith("s") else "s")


def _discovery(objects: list[dict]) -> dict[str, dict]:
    """Path -> discovery document for the API groups and kinds of ``objects``."""
    kinds: dict[str, set[str]] = {}
    for obj in objects:
        kinds.setdefault(obj["apiVersion"], set()).add(obj["kind"])
    documents = {"/version": {"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"},
                 "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}}
    groups = []
    kinds.setdefault("v1", set()).add("Secret")
    for api_version, names in sorted(kinds.items()):
        resources = [{"name": _plural(kind), "singularName": kind.lower(), "kind": kind, "namespaced": True,
                      "verbs": ["get", "list", "create", "update", "patch", "delete"]} for kind in sorted(names)]
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        documents[path] = {"kind": "APIResourceList", "groupVersion": api_version, "resources": resources}
        if api_version != "v1":
            group, version = api_version.split("/")
            entry = {"groupVersion": api_version, "version": version}
            groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
    documents["/apis"] = {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    return documents


class _Handler(BaseHTTPRequestHandler):
    documents: ClassVar[dict[str, dict]] = {}  # set per server by a subclass

    def do_GET(self):
        path = self.path.split("?")[0]
        body = self.documents.get(path)
        if body is None:
            body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
        send_json(self, 404 if body.get("kind") == "Status" else 200, body)

    def log_message(self, *args):
        pass


def render_upgrade(existing_secrets: dict[str, dict[str, str]], values_files=(), sets=()) -> list[dict]:
    """The objects `helm upgrade` would apply, given Secret name -> {key: base64 value} already in the
    release namespace."""
    documents = _discovery(render(values_files, sets))
    for name, data in existing_secrets.items():
        documents[f"/api/v1/namespaces/{NAMESPACE}/secrets/{name}"] = {
            "kind": "Secret", "apiVersion": "v1", "data": data,
            "metadata": {"name": name, "namespace": NAMESPACE,  # owned by this release, as helm checks
                         "labels": {"app.kubernetes.io/managed-by": "Helm"},
                         "annotations": {"meta.helm.sh/release-name": RELEASE,
                                         "meta.helm.sh/release-namespace": NAMESPACE}}}
    handler = type("Handler", (_Handler,), {"documents": documents})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=server",
                "--disable-openapi-validation", "--kube-apiserver", f"http://127.0.0.1:{server.server_address[1]}"]
        for path in values_files:
            args += ["-f", str(path)]
        for item in sets:
            args += ["--set", item]
        result = helm(*args, check=False)
    finally:
        server.shutdown()
        server.server_close()
    if result.returncode != 0:
        raise AssertionError(f"helm template --dry-run=server failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
