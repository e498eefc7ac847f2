#!/bin/sh
# `pip install ARGS` into /opt/venv inside an image build (builder stages only).
# pip itself lives in /opt/build (`--python` points it at /opt/venv), so the venv
# that ships holds no pip, setuptools or wheel.
# - the proxy CA, when the build passes one as the BuildKit secret `cacert`, is
#   used for this command only; it is never written into a layer;
# - a local wheelhouse, when bind-mounted at /wheels, is searched first (the CPU
#   torch wheel where download.pytorch.org cannot be reached);
# - TORCH_INDEX_URL (build arg, PyTorch's CPU index by default) is an extra index
#   so `torch==X` resolves to the CPU build, never PyPI's multi-GB CUDA one.
set -eu
if [ -s /run/secrets/cacert ]; then
    export PIP_CERT=/run/secrets/cacert REQUESTS_CA_BUNDLE=/run/secrets/cacert SSL_CERT_FILE=/run/secrets/cacert
fi
if [ -n "${TORCH_INDEX_URL:-}" ]; then
    set -- --extra-index-url "$TORCH_INDEX_URL" "$@"
fi
if [ -d /wheels ] && [ -n "$(ls /wheels)" ]; then
    set -- --find-links /wheels "$@"
fi
exec /opt/build/bin/pip --python "${INSTALL_PYTHON:-/opt/venv/bin/python}" install --no-cache-dir \
    --disable-pip-version-check "$@"
