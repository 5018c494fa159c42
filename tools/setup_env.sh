#!/usr/bin/env bash
# Create .venv (if missing) with the CPU build of torch 2.13.0, the runtime requirements, the test/tool extras and
# requirements-interop.txt (diffusers and peft, for the diffusers export/import tools), then install the project itself
# editable (pyproject.toml): its modules import from any folder, no script edits sys.path.
# Idempotent: a second run installs nothing new. Usage: bash tools/setup_env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt -r requirements-interop.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
