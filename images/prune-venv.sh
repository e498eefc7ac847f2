#!/bin/sh
# Drop from /opt/venv what no LakeRAG process imports: the packages' own test
# suites and torch's C++ headers (~300 MB of a 1.9 GB venv). Builder stages only.
set -eu
site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
find "$site" -type d -name tests -not -path '*.dist-info*' -prune -exec rm -rf {} +
rm -rf "$site/torch/test" "$site/torch/include"
