#!/usr/bin/env bash
# One-time set-up on a fresh machine: the offline data set, then the project's virtual
# environment .venv with the Python packages. A venv works where the system Python is
# externally managed (PEP 668: Debian 12, Ubuntu 24.04 refuse a bare `pip install`).
# Afterwards: .venv/bin/python run_ablation.py, .venv/bin/python -m pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3 || command -v python)}"
VENV=.venv
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
apt_install() {
  $SUDO apt-get install -y -q "$@" || { $SUDO apt-get update -q && $SUDO apt-get install -y -q "$@"; }
}

# Fashion-MNIST from Debian's dataset-fashion-mnist (MIT): /usr/share/datasets/fashion-mnist/
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then
  apt_install dataset-fashion-mnist
fi

# The project venv (Debian/Ubuntu ship `venv` apart, as python3-venv / python3.X-venv).
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PY" -m venv "$VENV"; then
    rm -rf "$VENV"
    command -v apt-get >/dev/null || { echo "setup: '$PY -m venv' failed; install Python's venv module" >&2; exit 1; }
    ver="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    apt_install python3-venv "python$ver-venv" || apt_install python3-venv
    "$PY" -m venv "$VENV"
  fi
fi
VPY="$VENV/bin/python"

# This torch/torchvision pair lies on the machine's disk; other pairs download gigabytes.
"$VPY" -m pip install -q torch==2.14.1 torchvision==0.29.1
"$VPY" -m pip install -q setuptools
"$VPY" -m pip install -q --no-build-isolation -e '.[test]'
