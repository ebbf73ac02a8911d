#!/bin/sh
# Regenerates the image's hash-locked requirements from pyproject.toml: requirements.lock (the
# runtime dependencies and everything they pull in) and build-requirements.lock (build-system's
# setuptools and wheel). Needs uv (`pip install uv`) and the package index; run from anywhere,
# commit both files, and tests/unit/test_deploy.py checks them against pyproject.toml.
set -eu
cd "$(dirname "$0")/.."
compile() { uv pip compile "$1" --generate-hashes --python-version 3.11 --python-platform linux \
  --annotation-style line --custom-compile-command deploy/lock.sh --quiet -o "$2"; }
compile pyproject.toml deploy/requirements.lock
python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' \
  >deploy/build-requirements.in
compile deploy/build-requirements.in deploy/build-requirements.lock
rm deploy/build-requirements.in
