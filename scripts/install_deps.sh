#!/usr/bin/env bash
# Installs the Debian packages curv needs to build and test, when any is missing: the compilers
# (g++ for the default build; clang with its compiler-rt for the fuzzers and sanitizer runtimes),
# the libraries, and the Python modules the fixture scripts and documentation tests use.
set -euo pipefail
PKGS=(cmake g++ make ccache pkg-config git libeigen3-dev libspectra-dev libtbb-dev libhdf5-dev doctest-dev
      libonnx-dev libprotobuf-dev protobuf-compiler libcli11-dev nlohmann-json3-dev libzip-dev zlib1g-dev libxxhash-dev libdnnl-dev
      dataset-fashion-mnist
      clang libclang-rt-14-dev
      python3 python3-numpy python3-h5py)
if [[ "${CURV_WITH_PLOTS:-0}" == 1 ]]; then PKGS+=(python3-matplotlib); fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  if [[ $(id -u) != 0 ]]; then SUDO=sudo; fi
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
