#!/usr/bin/env bash
# Configures and builds curv (Release, -O3 -march=native) into build/.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >&2
cmake --build build -j"$(nproc)" >&2
