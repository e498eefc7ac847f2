"""The images, built and run for real (`make e2e`): the sample documents go through
the spark image's ETL and the embeddings image's embed + index publish against a
moto S3 server; the api image syncs that index into a volume and serves it as its
non-root user on a read-only root filesystem; the airflow image parses the DAGs.
Plus what every image must (not) contain, and layer caching after a code change."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import harness
import pytest
from dockerfiles import context_files
from docmaker import encrypted_pdf
from harness import IMAGES, REPORT

REPO = harness.REPO
SAMPLES = REPO / "services" / "lakerag" / "samples"
QUESTIONS = json.loads((SAMPLES / "questions.json").read_text())
RESTRICTED_PDF = "restricted-notice.pdf"
CONTRACT = {  # docs: k8s naming contract
    "api": (["lakerag"], ["serve"]),
    "embeddings": (["lakerag"], ["pipeline", "embed"]),
    "spark": (["lakerag"], ["pipeline", "etl"]),
    "airflow": (["airflow"], ["api-server"]),
}
INDEX_DIR = "/var/lib/lakerag/index"
MODEL_DIR = "/var/cache/lakerag/models"
READ_ONLY = ("--read-only", "--tmpfs", "/tmp")
# Spark's JVMs load native libraries (zstd, snappy, netty) they unpack into /tmp: an exec
# tmpfs, as the chart's emptyDir is (Docker's --tmpfs is noexec by default).
READ_ONLY_EXEC_TMP = ("--read-only", "--tmpfs", "/tmp:exec")


# ---------------------------------------------------------------- what is in the images

@pytest.mark.parametrize("image", IMAGES)
def test_image_runs_as_lakerag_with_the_contract_entry_point(docker, images, image):
    config = docker.inspect(images[image])["Config"]
    assert config["User"] == "10001:10001"
    assert (config["Entrypoint"], config["Cmd"]) == CONTRACT[image]
    assert config["WorkingDir"] == "/app"
    env = dict(item.split("=", 1) for item in config["Env"])
    for name in ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PIP_NO_CACHE_DIR"):
        assert env.get(name) == "1", f"{image}: {name}"
    assert env["PATH"].startswith("/opt/venv/bin:")
    probe = docker.run(images[image], "-c", (
        "id -u; id -g; python -c 'import sys; print(sys.version_info[:2] == (3, 11))'; "
        "for tool in gcc cc g++ c++ clang make ld; do command -v $tool; done; "
        "ls -d /wheels /run/secrets/cacert 2>/dev/null; "
        # build inputs: wheels, requirement lists, the project's sources (the base image's own
        # ensurepip wheels under /usr are not ours)
        "find /opt /app /var /root /home /srv /tmp -xdev \\( -name '*.whl' -o -name 'requirements*' "
        "-o -name pyproject.toml -o -name pip-install.sh \\) 2>/dev/null | grep -v /site-packages/ | head"),
        options=("--entrypoint", "sh"))
    assert probe.returncode == 0, probe.stderr
    lines = probe.stdout.split()
    assert lines[:3] == ["10001", "10001", "True"], probe.stdout
    assert lines[3:] == [], f"{image} holds build tools or build inputs: {lines[3:]}"


@pytest.mark.parametrize("image", ["api", "embeddings"])
def test_no_torch_and_the_baked_onnx_export_loads_offline(docker, images, image):
    """torch, transformers and sentence-transformers stay out; the default model's ONNX
    export (BAKE_MODEL=packaged, made in a build stage) encodes with the network off."""
    torch = docker.run(images[image], "-c", "import torch", options=("--entrypoint", "python"))
    assert torch.returncode != 0 and "No module named 'torch'" in torch.stderr, torch.stdout + torch.stderr
    probe = docker.run(images[image], "-c", (
        "import importlib.util as u, importlib.metadata as m; from lakerag import config; "
        "from lakerag.embedding import load_embedder; "
        "e = load_embedder(config.from_env()); v = e.encode_queries(['retention of logs']); "
        "print([n for n in ('torch', 'transformers', 'sentence_transformers', 'pip', 'setuptools') if u.find_spec(n)], "
        "e.encoder['runtime'], e.encoder['sha256'], v.shape)"),
        options=("--entrypoint", "python", *READ_ONLY), env={"HF_HUB_OFFLINE": "1"})
    assert probe.returncode == 0, probe.stderr
    found, runtime, sha, *shape = probe.stdout.split()
    assert (found, runtime, "".join(shape)) == ("[]", "onnx", "(1,384)"), probe.stdout
    REPORT.setdefault("onnx_sha256", {})[image] = sha


def test_api_and_embeddings_bake_the_same_export(docker, images):
    """The export stage is deterministic: both images carry byte-identical model.onnx files,
    so an index the embeddings image builds is served by the api image."""
    shas = [docker.run(images[image], "/opt/lakerag/models/onnx/sentence-transformers--all-MiniLM-L6-v2/model.onnx",
                       options=("--entrypoint", "sha256sum")).stdout.split()[:1] for image in ("api", "embeddings")]
    assert shas[0] == shas[1] and len(shas[0][0]) == 64, shas


def test_torch_variant_exports_in_a_container_what_the_build_stage_baked(docker, images, build_env):
    """`images/build.sh api-torch` (not in `make images`): the api image plus torch and
    sentence-transformers. `lakerag model export` runs in it as a cluster Job would (model
    cache on a volume, read-only root) and writes the same model.onnx the build stage baked."""
    harness.build(docker, ["api-torch"], build_env, harness.WORK / "build-api-torch.log")
    tag = f"{build_env['REGISTRY']}lakerag/api:{build_env['IMAGE_TAG']}-torch"
    REPORT["api_torch_image_bytes"] = docker.inspect(tag)["Size"]
    models = docker.volume("torch-models")
    mounts = (*READ_ONLY, "-v", f"{models}:{MODEL_DIR}")
    _check(docker.run(tag, "model", "export", env={"HF_HUB_OFFLINE": "1"}, options=mounts), "lakerag model export")
    export = "onnx/sentence-transformers--all-MiniLM-L6-v2/model.onnx"
    probe = docker.run(tag, "-c", (
        f"sha256sum {MODEL_DIR}/{export} /opt/lakerag/models/{export} | cut -c1-64; "
        "python -c 'import torch; from sentence_transformers import CrossEncoder; print(torch.__version__)'"),
        options=("--entrypoint", "sh", *mounts))
    _check(probe, "the torch variant's export and imports")
    fresh, baked, version = probe.stdout.split()
    assert fresh == baked and version.startswith("2.13.0"), probe.stdout
    docker("rmi", tag, check=False)


@pytest.mark.parametrize("image", IMAGES)
def test_no_docs_man_pages_or_apt_caches(docker, images, image):
    """What a slim image never carries (the official base has none, nor the stand-in that
    replaces it here, nor what the Dockerfiles add): docs beyond copyright files, man/info
    pages, translations, apt's package lists and caches."""
    probe = docker.run(images[image], "-c", (
        "find /usr/share/doc -type f ! -name copyright; "
        "find /usr/share/man /usr/share/info /usr/share/locale /var/lib/apt/lists /var/cache/apt -type f "
        "! -name lock; true"), options=("--entrypoint", "sh"))
    assert probe.returncode == 0, probe.stderr
    found = probe.stdout.split()
    assert found == [], f"{image}: {len(found)} such files, e.g. {found[:10]}"


BYTECODE_PROBE = """
import importlib.util, json, pathlib, sys, sysconfig
site, stdlib = (pathlib.Path(sysconfig.get_paths()[k]) for k in ("purelib", "stdlib"))
report = {"py": sum(1 for _ in site.rglob("*.py")), "pyc": 0, "site_pyc": 0, "bytes": 0, "problems": []}
for root in (site, stdlib, pathlib.Path("/opt/venv")):
    for pyc in root.rglob("*.pyc"):
        if root.name == "venv" and pyc.is_relative_to(site):
            continue  # counted under site
        report["pyc"] += 1
        report["site_pyc"] += pyc.is_relative_to(site)
        report["bytes"] += pyc.stat().st_size
        data = pyc.read_bytes()
        try:
            source = pathlib.Path(importlib.util.source_from_cache(str(pyc)))
        except ValueError:
            report["problems"].append(f"not in a __pycache__ of its source: {pyc}")
            continue
        project = source.is_relative_to(site) and source.relative_to(site).parts[0] in ("lakerag", "lakerag_spark")
        flags = int.from_bytes(data[4:8], "little")
        if data[:4] != importlib.util.MAGIC_NUMBER or flags != (0b11 if project else 0b01):
            report["problems"].append(f"magic {data[:4].hex()} flags {flags:#04b}: {pyc}")
        elif not source.is_file() or data[8:16] != importlib.util.source_hash(source.read_bytes()):
            report["problems"].append(f"stale or without a source: {pyc}")
        elif {"tests", "test", "testing"} & set(source.parts):
            report["problems"].append(f"a test module: {pyc}")
print(json.dumps(report))
"""
# Bytes of .pyc an image may carry. The start-up's own bytecode measured 19.8 MB (api) and 23.8 MB
# (embeddings, with pandas), S3 client included, plus 0.3-0.5 MB of the project's; a bulk compileall of the api image's
# site-packages alone adds 58 MB. 32 MB leaves room for a few more start-up imports and fails on bulk.
PYC_BYTES_LIMIT = 32 * 2**20
START_UP_BYTECODE = {"api", "embeddings"}  # images/startup-pyc.py; spark and airflow: see images/README.md


@pytest.mark.parametrize("image", IMAGES)
def test_bytecode_only_for_what_the_entry_point_imports(docker, images, image):
    """api and embeddings carry .pyc for exactly the modules their entry point imports at start-up
    (images/startup-pyc.py): hash-based (unchecked for the locked dependencies and the standard
    library, checked for the project), matching their sources, no test modules, a small fraction
    of the venv's modules; spark and airflow carry none."""
    probe = docker.run(images[image], "-c", BYTECODE_PROBE, options=("--entrypoint", "python"))
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    REPORT.setdefault("pyc_bytes", {})[image] = report["bytes"]
    assert report["problems"] == [], f"{image}: {report['problems'][:10]}"
    if image not in START_UP_BYTECODE:
        assert report["pyc"] == 0, report
        return
    # the embeddings job's start-up imports pandas: ~30% of that venv's modules, the api's ~20%
    assert 200 < report["site_pyc"] < report["py"] / 3, report
    assert report["bytes"] < PYC_BYTES_LIMIT, report


PRUNE_PROBE = """
import importlib, importlib.util, sys
import boto3
from botocore.exceptions import UnknownServiceError
problems = []
for name in sys.argv[1:] + ["deltalake", "pandas", "pyarrow.compute", "pyarrow.dataset", "pyarrow.fs",
                            "pyarrow.parquet"]:
    if name in sys.argv[1:] or importlib.util.find_spec(name.split(".")[0]):
        importlib.import_module(name)  # required, or present: must load
for service in ("s3", "sts", "sso", "sso-oidc"):
    boto3.client(service, region_name="us-east-1")
if importlib.util.find_spec("pyarrow"):
    import pyarrow.fs
    pyarrow.fs.S3FileSystem(region="us-east-1")
    try:
        import pyarrow.flight
        problems.append("pyarrow.flight loads")
    except ImportError:
        pass
import onnxruntime
if "CPUExecutionProvider" not in onnxruntime.get_available_providers():
    problems.append("onnxruntime has no CPU provider")
try:
    boto3.client("ec2", region_name="us-east-1")
    problems.append("botocore still has the ec2 model")
except UnknownServiceError:
    pass
if importlib.util.find_spec("hf_xet"):
    problems.append("hf_xet is installed")
print(problems)
"""
NEEDS = {"api": ["onnxruntime", "faiss", "tokenizers", "bm25s", "fastapi", "uvicorn"],
         "embeddings": ["onnxruntime", "faiss", "tokenizers", "bm25s", "deltalake", "pandas", "pyarrow.dataset",
                        "pyarrow.parquet"]}


@pytest.mark.parametrize("image", ["api", "embeddings"])
def test_what_the_venv_prune_removed_is_never_loaded(docker, images, image):
    """images/prune-venv.sh drops Arrow Flight, ONNX Runtime's C API library, botocore's
    models of other AWS services and hf_xet: what LakeRAG loads still imports and makes
    its clients (the pipeline tests below run them for real); the pruned parts are gone."""
    probe = docker.run(images[image], "-c", PRUNE_PROBE, *NEEDS[image], options=("--entrypoint", "python", *READ_ONLY))
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().splitlines()[-1] == "[]", f"{image}: {probe.stdout}"


def test_airflow_image_has_no_torch_spark_or_project(docker, images):
    probe = docker.run(images["airflow"], "-c", (
        "import importlib.util as u; "
        "print([n for n in ('torch', 'pyspark', 'lakerag', 'airflow.providers.cncf.kubernetes') "
        "if u.find_spec(n.split('.')[0]) and (n.count('.') == 0 or u.find_spec(n))])"),
        options=("--entrypoint", "python"))
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "['airflow.providers.cncf.kubernetes']"


def _extra_cas(bundle: Path, image_bundle: str) -> list[str]:
    """Certificates of the host bundle that the image's own bundle lacks (e.g. a proxy's CA)."""
    pem = re.compile(r"-----BEGIN CERTIFICATE-----\n(.*?)-----END CERTIFICATE-----", re.DOTALL)
    ours = set(pem.findall(image_bundle))
    return [body for body in pem.findall(bundle.read_text()) if body not in ours]


def test_the_build_ca_bundle_is_in_no_image(docker, images, build_env):
    if not build_env.get("CA_BUNDLE"):
        pytest.skip("this build passed no CA bundle")
    own = docker.run(images["api"], "/etc/ssl/certs/ca-certificates.crt", options=("--entrypoint", "cat"))
    extra = _extra_cas(Path(build_env["CA_BUNDLE"]), own.stdout)
    if not extra:
        pytest.skip("the CA bundle passed to the build holds no certificate beyond the image's own")
    needle = extra[0].splitlines()[1]  # a base64 line unique to that certificate
    for image in IMAGES:
        found = docker.run(images[image], "-c", f"grep -rlF -- '{needle}' /etc /opt /app /usr/local /root "
                           "2>/dev/null; true", options=("--entrypoint", "sh", "--user", "0"))
        assert found.stdout.strip() == "", f"{image} contains the build's CA certificate: {found.stdout}"


def test_build_context_is_small(docker, tmp_path):
    """What Docker really sends (after .dockerignore), captured with a scratch build."""
    out = tmp_path / "context"
    docker("build", "-f", "-", "-o", f"type=local,dest={out}", str(REPO), input="FROM scratch\nCOPY . /\n",
           env={**os.environ, "DOCKER_BUILDKIT": "1"})
    files = [p for p in out.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    REPORT["build_context_bytes"] = size
    REPORT["build_context_files"] = len(files)
    sent = {p.relative_to(out).as_posix() for p in files}
    assert sent == {p.relative_to(REPO).as_posix() for p in context_files()}, "tests/images/dockerfiles.py " \
        "disagrees with Docker about .dockerignore"
    assert size < 2 * 2**20, f"build context is {size} bytes"


def build_steps(plain_log: str) -> dict[str, bool]:
    """BuildKit --progress=plain output -> {step title: served from cache?}."""
    titles, cached = {}, set()
    for line in plain_log.splitlines():
        match = re.match(r"#(\d+) (\[.*)", line)
        if match:
            titles[match[1]] = match[2]
        elif re.match(r"#(\d+) CACHED$", line):
            cached.add(line.split()[0][1:])
    return {title: step in cached for step, title in titles.items()}


def _top_layer_bytes(docker, ref: str) -> int:
    """Bytes in an image's last layer (overlay2's upper dir), else the last history entry's size."""
    upper = docker.inspect(ref).get("GraphDriver", {}).get("Data", {}).get("UpperDir", "")
    if upper and Path(upper).is_dir():
        return sum(p.lstat().st_size for p in Path(upper).rglob("*") if p.is_file() and not p.is_symlink())
    return int(docker("history", "--human=false", "--format", "{{.Size}}", ref).stdout.split()[0])


def test_code_change_rebuilds_only_the_code_layers(docker, images, build_env, tmp_path):
    """A one-line change in services/ rebuilds the four images from cache except the
    project's own layer, the last one: what a node pulls again is that layer only."""
    context = tmp_path / "repo"
    for path in context_files() + [REPO / ".dockerignore", *(REPO / "images").rglob("*")]:
        if path.is_file():
            target = context / path.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    env = {**build_env, "IMAGE_TAG": "e2e-rebuild"}
    tag = f"{build_env['REGISTRY']}lakerag/{{}}:e2e-rebuild"
    # First the unchanged copy: teammates may have changed the tree since the session's build.
    harness.build(docker, list(IMAGES), env, harness.WORK / "rebuild-baseline.log", context=context)
    before = {image: docker.inspect(tag.format(image))["RootFS"]["Layers"] for image in IMAGES}
    cli = context / "services" / "lakerag" / "cli.py"
    cli.write_text(cli.read_text() + f"\n# e2e: a one-line change {time.time_ns()}\n")  # never seen before
    log = harness.WORK / "rebuild.log"
    seconds = harness.build(docker, list(IMAGES), env, log, context=context)
    REPORT["rebuild_after_code_change_seconds"] = round(seconds, 1)
    changed_bytes = {}
    for image in IMAGES:
        after = docker.inspect(tag.format(image))["RootFS"]["Layers"]
        changed = [i for i, layer in enumerate(after) if layer not in before[image]]
        assert changed in ([], [len(after) - 1]), f"{image}: layers {changed} of {len(after)} changed"
        changed_bytes[image] = _top_layer_bytes(docker, tag.format(image)) if changed else 0
    REPORT["changed_layer_bytes_after_code_change"] = changed_bytes
    steps = build_steps(log.read_text())
    deps = {title: cached for title, cached in steps.items() if "--require-hashes" in title}
    assert deps and all(deps.values()), f"dependency layers were rebuilt: {deps}"
    assert changed_bytes["airflow"] == 0 and all(changed_bytes[i] > 0 for i in ("api", "embeddings", "spark"))
    assert max(changed_bytes.values()) <= 5 * 2**20, changed_bytes
    for image in IMAGES:
        docker("rmi", tag.format(image), check=False)


# ---------------------------------------------------------------- the pipeline in containers

@pytest.fixture(scope="module")
def lake(moto_endpoint):
    """A bucket holding the sample documents under raw/, and the env every container gets."""
    bucket = f"lakerag-e2e-{int(time.time())}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=bucket)
    for doc in sorted((SAMPLES / "docs").iterdir()):
        s3.upload_file(str(doc), bucket, f"lake-root/raw/{doc.name}")
    # Readable without a password, but only with pypdf's crypto extra in the spark image.
    s3.put_object(Bucket=bucket, Key=f"lake-root/raw/{RESTRICTED_PDF}",
                  Body=encrypted_pdf(["Restricted editing notice: printing is allowed, changes are not."]))
    env = {"LAKERAG_STORE_URI": f"s3://{bucket}/lake-root", "AWS_ENDPOINT_URL": moto_endpoint,
           "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_ALLOW_HTTP": "true", "HF_HUB_OFFLINE": "1", "LAKERAG_SPARK_MASTER": "local[2]"}
    return {"s3": s3, "bucket": bucket, "env": env}


def _check(result, what):
    assert result.returncode == 0, f"{what} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"


def test_spark_image_runs_the_etl(docker, images, lake):
    result = docker.run(images["spark"], env=lake["env"], options=READ_ONLY)  # CMD: pipeline etl
    _check(result, "lakerag pipeline etl (spark image)")
    from deltalake import DeltaTable

    options = {"AWS_ENDPOINT_URL": lake["env"]["AWS_ENDPOINT_URL"], "AWS_REGION": "us-east-1",
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ALLOW_HTTP": "true"}
    root = lake["env"]["LAKERAG_STORE_URI"]
    silver = DeltaTable(f"{root}/lake/silver", storage_options=options).to_pyarrow_table()
    gold = DeltaTable(f"{root}/lake/gold", storage_options=options).to_pyarrow_table()
    sources = {f"raw/{p.name}" for p in (SAMPLES / "docs").iterdir()} | {f"raw/{RESTRICTED_PDF}"}
    assert set(silver.column("key").to_pylist()) == sources
    assert set(gold.column("source").to_pylist()) == sources and gold.num_rows >= len(sources)


def test_embeddings_image_embeds_and_publishes(docker, images, lake):
    models = docker.volume("models")
    options = (*READ_ONLY, "-v", f"{models}:{MODEL_DIR}")
    _check(docker.run(images["embeddings"], env=lake["env"], options=options), "lakerag pipeline embed")
    _check(docker.run(images["embeddings"], "pipeline", "index", env=lake["env"], options=options),
           "lakerag pipeline index")
    current = lake["s3"].get_object(Bucket=lake["bucket"], Key="lake-root/index/CURRENT")["Body"].read().decode()
    manifest = json.loads(lake["s3"].get_object(Bucket=lake["bucket"],
                                                Key=f"lake-root/index/{current.strip()}/manifest.json")["Body"].read())
    assert manifest["vector_count"] > 0 and manifest["dimension"] == 384
    assert manifest["encoder"]["runtime"] == "onnx" and len(manifest["encoder"]["sha256"]) == 64
    lake["version"] = current.strip()
    lake["models"] = models


@pytest.fixture(scope="module")
def api(docker, images, lake):
    """index sync into a volume (the chart's init container), then the API from that volume:
    non-root, read-only root filesystem, /tmp a tmpfs; yields its base URL."""
    if "version" not in lake:
        pytest.fail("no index was published (see test_embeddings_image_embeds_and_publishes)")
    index = docker.volume("index")
    mounts = ("-v", f"{index}:{INDEX_DIR}", "-v", f"{lake['models']}:{MODEL_DIR}")
    _check(docker.run(images["api"], "index", "sync", "--once", "--dest", INDEX_DIR, env=lake["env"],
                      options=(*READ_ONLY, *mounts)), "lakerag index sync --once")
    port = harness.free_port()
    name = docker.start(images["api"], env={**lake["env"], "LAKERAG_PORT": str(port)},
                        options=(*READ_ONLY, *mounts))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        state = docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
        if state != "true":
            logs = docker("logs", name, check=False)
            pytest.fail(f"the api container stopped:\n{logs.stdout[-3000:]}\n{logs.stderr[-5000:]}")
        try:
            status, body = _get(f"{base}/ready")
            if status == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"/ready not 200 after 300s: {docker('logs', name, check=False).stderr[-3000:]}")
        time.sleep(2)
    yield {"base": base, "name": name, "ready": body, "mounts": mounts}


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, json.loads(response.read())


def test_api_serves_the_synced_index_as_non_root_on_a_read_only_root(docker, api, lake):
    assert api["ready"]["ready"] is True and api["ready"]["index_loaded"] is True
    assert api["ready"]["index_version"] == lake["version"]
    assert docker("exec", api["name"], "id", "-u").stdout.strip() == "10001"
    assert docker("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", api["name"]).stdout.strip() == "true"
    question = QUESTIONS[0]
    status, body = _post(f"{api['base']}/search", {"query": question["question"], "k": 3})
    assert status == 200 and body["matched"] and body["index_version"] == lake["version"]
    assert body["hits"][0]["source"] == question["expected_source"], body["hits"]


def _pycs_written(docker, name: str) -> list[str]:
    """.pyc files a container added to the image's filesystem (`docker diff`)."""
    return [line.split()[-1] for line in docker("diff", name).stdout.splitlines() if line.endswith(".pyc")]


def test_api_start_up_finds_bytecode_for_every_module_it_imports(docker, images, api, lake):
    """The API started with bytecode writing allowed (root, writable root filesystem,
    PYTHONDONTWRITEBYTECODE unset) on the same index writes no .pyc up to /ready and its first
    search: every module it imports had a valid one. (Without them the API wrote 815 by /ready
    on a local store, 997 on S3.)"""
    port = harness.free_port()
    name = docker.start(images["api"], env={**lake["env"], "LAKERAG_PORT": str(port), "PYTHONDONTWRITEBYTECODE": ""},
                        options=("--user", "0", "--tmpfs", "/tmp", *api["mounts"]))
    base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 300
    while True:
        try:
            if _get(f"{base}/ready")[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline or docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip() != "true":
            pytest.fail(f"not ready: {docker('logs', name, check=False).stderr[-3000:]}")
        time.sleep(0.5)
    written_by_ready = _pycs_written(docker, name)
    status, body = _post(f"{base}/search", {"query": QUESTIONS[0]["question"], "k": 3})
    assert status == 200 and body["matched"], body
    assert docker("exec", name, "id", "-u").stdout.strip() == "0"  # it could have written them
    written_by_search = _pycs_written(docker, name)
    docker("rm", "-f", name, check=False)
    assert (written_by_ready, written_by_search) == ([], [])


def test_embeddings_jobs_find_bytecode_for_every_module_they_import(docker, images, lake):
    """`lakerag pipeline embed --full-rebuild=true` (the model loaded, every chunk encoded again
    and merged) and `pipeline index`, run with bytecode writing allowed, write no .pyc."""
    if "models" not in lake:
        pytest.fail("no model volume (see test_embeddings_image_embeds_and_publishes)")
    written = {}
    for command in (["pipeline", "embed", "--full-rebuild=true"], ["pipeline", "index"]):
        name = docker.start(images["embeddings"], *command, env={**lake["env"], "PYTHONDONTWRITEBYTECODE": ""},
                            options=("--user", "0", "--tmpfs", "/tmp", "-v", f"{lake['models']}:{MODEL_DIR}"))
        assert docker("wait", name, timeout=600).stdout.strip() == "0", docker("logs", name, check=False).stderr[-3000:]
        written[" ".join(command)] = _pycs_written(docker, name)
    assert written == {"pipeline embed --full-rebuild=true": [], "pipeline index": []}


def test_api_image_fails_fast_on_bad_configuration(docker, images):
    started = time.monotonic()
    result = docker.run(images["api"], env={"LAKERAG_STORE_URI": "s3://some-bucket/lake", "AWS_REGION": ""},
                        options=READ_ONLY, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "AWS_REGION" in result.stderr and "Traceback" not in result.stderr, result.stderr
    result = docker.run(images["api"], env={"LAKERAG_PORT": "eighty"}, options=READ_ONLY, timeout=120)
    assert result.returncode == 2 and "LAKERAG_PORT" in result.stderr, result.stdout + result.stderr
    assert time.monotonic() - started < 120


def test_airflow_image_imports_the_dags(docker, images):
    script = ("import json, os; from airflow.dag_processing.dagbag import DagBag; "
              "bag = DagBag(dag_folder=os.environ['AIRFLOW__CORE__DAGS_FOLDER']); "
              "print(json.dumps({'dags': sorted(bag.dag_ids), 'errors': {k: str(v) for k, v in bag.import_errors.items()}}))")
    result = docker.run(images["airflow"], "-c", script, options=("--entrypoint", "python"))
    _check(result, "DagBag in the airflow image")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["errors"] == {}
    assert "lakerag_pipeline" in report["dags"]


SPARK_JOB = """
import sys
from pyspark.sql import SparkSession, functions as F
spark = (SparkSession.builder.master(sys.argv[1]).config("spark.executor.memory", "512m")
         .config("spark.ui.enabled", "false").getOrCreate())
double = F.udf(lambda x: x * 2, "long")  # a Python worker on the executor
rows = spark.range(1000).withColumn("d", double("id")).groupBy((F.col("id") % 10).alias("k")).agg(F.sum("d")).collect()
print(sorted((r[0], r[1]) for r in rows) == [(k, 2 * sum(range(k, 1000, 10))) for k in range(10)])
"""


def test_spark_image_runs_a_master_and_a_worker(docker, images):
    """The chart's Spark pods: spark-class from the venv, non-root, read-only root, /tmp only;
    a driver from the same image runs a job with a shuffle and a Python UDF on the worker
    (what the pruned Spark jars must still carry)."""
    port, ui = harness.free_port(), harness.free_port()
    spark = ("--entrypoint", "spark-class", *READ_ONLY_EXEC_TMP)
    master = docker.start(images["spark"], "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                          "--port", str(port), "--webui-port", str(ui), options=spark)
    worker = docker.start(images["spark"], "org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}",
                          "--host", "127.0.0.1", "--cores", "1", "--memory", "512m",
                          "--webui-port", str(harness.free_port()), options=spark)
    deadline = time.monotonic() + 120
    while True:
        try:
            status, state = _get(f"http://127.0.0.1:{ui}/json/")
            if status == 200 and [w["state"] for w in state.get("workers", [])] == ["ALIVE"]:
                break
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            logs = [docker("logs", name, check=False).stderr[-2000:] for name in (master, worker)]
            pytest.fail("no ALIVE worker registered with the master after 120s:\n" + "\n".join(logs))
        time.sleep(2)
    assert state["status"] == "ALIVE"
    job = docker.run(images["spark"], "-c", SPARK_JOB, f"spark://127.0.0.1:{port}", env={"SPARK_LOCAL_IP": "127.0.0.1"},
                     options=("--entrypoint", "python", *READ_ONLY_EXEC_TMP), timeout=300)
    _check(job, "a job on the standalone master/worker")
    assert job.stdout.strip().splitlines()[-1] == "True", job.stdout
