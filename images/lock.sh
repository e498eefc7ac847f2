#!/usr/bin/env bash
# Re-lock the images' dependencies: images/locks/<image>.txt, every pin with its
# hashes, compiled from pyproject.toml's extras (images/pyproject_deps.py).
# Run after changing dependencies in pyproject.toml (make lock); commit the result.
# Needs pip-tools (LOCK_COMPILER, default: pip-compile on PATH) and PyPI; CPU torch
# comes from PIP_FIND_LINKS (a local wheelhouse) or TORCH_INDEX_URL (PyTorch's CPU index).
set -euo pipefail
cd "$(dirname "$0")/.."
LOCK_COMPILER=${LOCK_COMPILER:-pip-compile}
TORCH_INDEX_URL=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 images/pyproject_deps.py pyproject.toml "$work"
mkdir -p images/locks
extra=()
if [ -z "${PIP_FIND_LINKS:-}" ] && [ -n "$TORCH_INDEX_URL" ]; then extra+=(--extra-index-url "$TORCH_INDEX_URL"); fi
for input in "$work"/*.in; do
    image=$(basename "$input" .in)
    [ $# -eq 0 ] || [[ " $* " == *" $image "* ]] || continue
    cp "$input" "$work/$image-requirements.in"
    # The torch variant stacks export.txt on api.txt (--no-deps): what both pin, pin alike.
    if [ "$image" = export ]; then echo "-c $PWD/images/locks/api.txt" >> "$work/$image-requirements.in"; fi
    # --allow-unsafe: pin setuptools & co. too, so --require-hashes installs never reach for them.
    CUSTOM_COMPILE_COMMAND="images/lock.sh $image" "$LOCK_COMPILER" --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
        --no-emit-find-links --resolver=backtracking "${extra[@]}" \
        -o "images/locks/$image.txt" "$work/$image-requirements.in"
    sed -i -e "s#-r $work/$image-requirements.in#pyproject.toml#" -e "s#$PWD/##" "images/locks/$image.txt"
    echo "locked images/locks/$image.txt"
done
