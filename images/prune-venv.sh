#!/bin/sh
# Drop from /opt/venv what no LakeRAG process imports: the packages' own test
# suites, C/C++ headers and static libraries, type stubs. Builder stages only.
set -eu
site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
find "$site" -type d \( -name tests -o -name __pycache__ \) -not -path '*.dist-info*' -prune -exec rm -rf {} +
find "$site" \( -name '*.pyi' -o -name '*.a' \) -type f -delete
find "$site" -type d -name include -path '*/site-packages/*/include' -prune -exec rm -rf {} +
