#!/usr/bin/env bash
# Build LakeRAG images from the repository root: images/build.sh [IMAGE ...]
# (default: api embeddings spark airflow; `api-torch` is the api image with torch,
# tagged <IMAGE_TAG>-torch, built only when named). `make images` calls this; settings
# come from the environment (the Makefile passes its variables):
#   IMAGE_TAG (0.1.0), REGISTRY ("" or e.g. ghcr.io/acme/), BASE_IMAGE,
#   BAKE_MODEL (none|packaged), TORCH_INDEX_URL (PyTorch CPU index; "" to skip),
#   PIP_INDEX_URL, CA_BUNDLE (file passed as the BuildKit secret `cacert`),
#   WHEELHOUSE (directory of wheels bind-mounted while pip runs), DOCKER.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE_TAG=${IMAGE_TAG:-0.1.0}
REGISTRY=${REGISTRY:-}
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim-bookworm}
BAKE_MODEL=${BAKE_MODEL:-none}
CA_BUNDLE=${CA_BUNDLE:-}
WHEELHOUSE=${WHEELHOUSE:-}
PIP_INDEX_URL=${PIP_INDEX_URL:-https://pypi.org/simple}
# With a local wheelhouse the CPU torch comes from it; elsewhere from PyTorch's index.
if [ -z "${TORCH_INDEX_URL+set}" ]; then
    if [ -n "$WHEELHOUSE" ]; then TORCH_INDEX_URL=""; else TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu; fi
fi
# BuildKit without buildx: Debian's docker client where the default one lacks buildx.
if [ -z "${DOCKER:-}" ]; then
    DOCKER=docker
    if ! docker buildx version >/dev/null 2>&1 && [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; fi
fi
export DOCKER_BUILDKIT=1

if ! "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1 && ! "$DOCKER" pull "$BASE_IMAGE"; then
    echo "BASE_IMAGE=$BASE_IMAGE is neither local nor pullable. Without a registry, make a stand-in" >&2
    echo "with images/standin-base.sh and build with BASE_IMAGE=lakerag-standin/python:3.11-slim" >&2
    exit 2
fi

args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "BAKE_MODEL=$BAKE_MODEL"
      --build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL" --build-arg "PIP_INDEX_URL=$PIP_INDEX_URL")
if [ -n "$CA_BUNDLE" ]; then
    [ -r "$CA_BUNDLE" ] || { echo "CA_BUNDLE=$CA_BUNDLE is not a readable file" >&2; exit 2; }
    args+=(--secret "id=cacert,src=$CA_BUNDLE")
fi
if [ -n "$WHEELHOUSE" ]; then
    [ -d "$WHEELHOUSE" ] || { echo "WHEELHOUSE=$WHEELHOUSE is not a directory" >&2; exit 2; }
    "$DOCKER" build --quiet -t lakerag-build/wheelhouse:local -f images/wheelhouse.Dockerfile "$WHEELHOUSE" >/dev/null
    args+=(--build-arg WHEELHOUSE_IMAGE=lakerag-build/wheelhouse:local)
fi

images=("$@")
[ ${#images[@]} -gt 0 ] || images=(api embeddings spark airflow)
for image in "${images[@]}"; do
    variant=()
    tag="${REGISTRY}lakerag/$image:$IMAGE_TAG"
    if [ "$image" = api-torch ]; then  # the api image with torch (images/README.md), tagged <tag>-torch
        image=api variant=(--build-arg DEPS=deps-torch) tag="${REGISTRY}lakerag/api:$IMAGE_TAG-torch"
    fi
    [ -f "images/$image/Dockerfile" ] || { echo "no images/$image/Dockerfile" >&2; exit 2; }
    start=$(date +%s)
    "$DOCKER" build "${args[@]}" "${variant[@]}" ${BUILD_FLAGS:-} -t "$tag" -f "images/$image/Dockerfile" .
    echo "built $tag in $(( $(date +%s) - start ))s"
done
