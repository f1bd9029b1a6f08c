#!/usr/bin/env bash
# One-time set-up on a fresh machine: the offline data set and the Python packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

# Fashion-MNIST from Debian's dataset-fashion-mnist (MIT): /usr/share/datasets/fashion-mnist/
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then
  $SUDO apt-get install -y -q dataset-fashion-mnist \
    || { $SUDO apt-get update -q && $SUDO apt-get install -y -q dataset-fashion-mnist; }
fi

# This torch/torchvision pair lies on the machine's disk; other pairs download gigabytes.
"$PY" -m pip install -q torch==2.14.1 torchvision==0.29.1
"$PY" -m pip install -q setuptools
"$PY" -m pip install -q --no-build-isolation -e '.[test]'
