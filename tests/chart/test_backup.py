"""The backup CronJob: off by default; when on, a valid CronJob running `lakerag backup` with
credentials by Secret reference only; the schema refuses it without a destination."""

from __future__ import annotations

import kubernetes_validate

from .helm import find, render, render_profile, template_text

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
