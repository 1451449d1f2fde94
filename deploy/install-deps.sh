#!/usr/bin/env bash
# Installs hpo's build and run dependencies from Debian 12's archive (needs root or sudo).
# Skips apt entirely when everything is already installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libsqlite3-dev libspdlog-dev nlohmann-json3-dev zlib1g-dev
  libssl-dev openssl
  libturbojpeg0-dev libspng-dev libcpp-httplib-dev prometheus-cpp-dev
  libtorch-dev libopenblas0-openmp
  googletest libgtest-dev libgmock-dev
  dataset-fashion-mnist
  python3 python3-grpcio python3-protobuf python3-pil python3-venv python3-pip python3-setuptools python3-wheel
  chromium chromium-driver python3-selenium prometheus
)
# npm installs the dashboard's chart library at build time (web/package-lock.json). Debian's npm package
# only where no npm is installed: it conflicts with a nodejs from elsewhere.
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root (or install sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# LibTorch uses whatever libblas.so.3 is selected; OpenBLAS (OpenMP build) makes training ~3x faster
# than the reference BLAS. Its alternative has the higher priority; make sure it is the one selected.
if [ -e /usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3 ]; then
  $SUDO update-alternatives --set libblas.so.3-x86_64-linux-gnu \
    /usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3 >/dev/null 2>&1 || true
fi
