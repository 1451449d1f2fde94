#!/usr/bin/env bash
# Your own photos, two commands from an answer: drafts a study spec from an image folder with
# `hpoctl init`, runs it with two workers (deploy/demo.sh), then prints the best trial with per-class
# recall by class name and the diagnosis (what to try next).
#   deploy/photos-demo.sh [PHOTOS_DIR]   PHOTOS_DIR holds train/<class>/*.jpg (and val/<class>/..., test/...)
# Without PHOTOS_DIR it first writes a sample folder from Fashion-MNIST (examples/photos/make_photos.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
bash deploy/build.sh
B=${BUILD_DIR:-build}
PHOTOS=${1:-}
if [ -z "$PHOTOS" ]; then
  PHOTOS=/tmp/hpo-photos/photos
  [ -d "$PHOTOS/train" ] || /usr/bin/python3 examples/photos/make_photos.py "$PHOTOS"
fi
PHOTOS=$(cd "$PHOTOS" && pwd)
SPEC=$(mktemp /tmp/hpo-photos-spec.XXXXXX.json)
"$B"/client/hpoctl init "$PHOTOS" --out="$SPEC"
echo
HPO_DATA_ROOT=$(dirname "$PHOTOS") bash deploy/demo.sh "$SPEC"
