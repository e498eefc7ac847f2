"""The backup CronJob: off by default; when on, a valid CronJob running `lakerag backup` with
credentials by Secret reference only; the schema refuses it without a destination."""

from __future__ import annotations

import kubernetes_validate

from .helm import KIND_VALUES, find, render, render_profile, template_text

ON = ("backup.enabled=true", "backup.destination=s3://lakerag-backup/nightly")


def test_off_by_default_in_every_profile():
    for profile in ("default", "kind", "production"):
        assert not [o for o in render_profile(profile) if o["kind"] == "CronJob"]


def test_enabled_renders_a_strictly_valid_cronjob_that_runs_the_backup():
    cron = find(render(sets=ON), "CronJob", "lakerag-backup")
    kubernetes_validate.validate(cron, "1.29.0", strict=True)
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["lakerag"] and container["args"] == ["backup", "s3://lakerag-backup/nightly"]
    assert container["envFrom"] == [{"configMapRef": {"name": "lakerag-config"}},
                                    {"secretRef": {"name": "lakerag-secrets"}}]
    assert "env" not in container  # no credential value in the pod spec
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["restartPolicy"] == "Never" and pod["securityContext"]["runAsNonRoot"] is True


def test_schema_refuses_backup_without_destination_or_with_a_typo():
    missing = template_text(sets=("backup.enabled=true",), check=False)
    assert missing.returncode != 0 and "destination" in missing.stderr
    typo = template_text(sets=(*ON, "backup.shedule=daily"), check=False)
    assert typo.returncode != 0 and "shedule" in typo.stderr
    local = template_text(sets=("backup.enabled=true", "backup.destination=file:///backups"), check=False)
    assert local.returncode != 0


def test_with_the_charts_minio_the_backup_bucket_is_made_before_the_backup(moto_endpoint, monkeypatch):
    """MinIO starts with the store's bucket only: the CronJob's init container makes the backup's
    bucket (idempotently), running its script as rendered against an S3 API server."""
    import subprocess
    import sys

    import boto3

    objects = render((KIND_VALUES,), sets=("backup.enabled=true", "backup.destination=s3://lakerag-backup/nightly"))
    pod = find(objects, "CronJob", "lakerag-backup")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    assert init["env"] == [{"name": "BUCKET", "value": "lakerag-backup"}]
    assert init["envFrom"] == pod["containers"][0]["envFrom"]  # MinIO's endpoint and credentials
    assert init["command"][:2] == ["python", "-c"]
    env = {"PATH": "/usr/bin:/bin", "BUCKET": "lakerag-backup", "AWS_ENDPOINT_URL": moto_endpoint,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
    for _night in range(2):  # the next night the bucket exists: still a success
        run = subprocess.run([sys.executable, "-c", init["command"][2]], env=env, capture_output=True, text=True,
                             timeout=120, check=False)
        assert run.returncode == 0 and "bucket lakerag-backup" in run.stdout, run
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    assert "lakerag-backup" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    # Against a real S3 (no chart MinIO) the bucket is the operator's: no init container.
    cron = find(render(sets=ON), "CronJob", "lakerag-backup")
    assert "initContainers" not in cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_a_destination_inside_the_store_or_around_it_is_refused_at_render():
    """`lakerag backup` refuses it at run time; the chart says so before anything is installed."""
    store = render(sets=ON)  # the default store's URI, as rendered into the ConfigMap
    uri = find(store, "ConfigMap", "lakerag-config")["data"]["LAKERAG_STORE_URI"]
    bucket = uri.removeprefix("s3://").split("/")[0]
    for destination in (uri, f"{uri}/raw/backup", f"s3://{bucket}"):
        done = template_text(sets=("backup.enabled=true", f"backup.destination={destination}"), check=False)
        assert done.returncode != 0 and "overlaps global.config.LAKERAG_STORE_URI" in done.stderr, destination
    beside = template_text(sets=("backup.enabled=true", f"backup.destination={uri.rstrip('/')}-backup"), check=False)
    assert beside.returncode == 0, beside.stderr
