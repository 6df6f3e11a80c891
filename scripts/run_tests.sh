#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: install packages, build, run CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
