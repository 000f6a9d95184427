#!/usr/bin/env bash
# Train the default model on one GPU from the training bundle (README: "How the default
# model is made"). Each stage is resumable and runs well under 10 minutes, so a short GPU
# lease can take them one call at a time:
#
#   bash scripts/train-default.sh unpack BUNDLE           # bundle parts -> stores/
#   bash scripts/train-default.sh train MINUTES [CHUNK]   # the run, fitted to MINUTES
#   bash scripts/train-default.sh finish OUT              # int8 weights in parts, figures
#
# `train` first measures this card's training rate on the run's own first steps (inside
# the learning-rate warm-up, so they are the run's first steps whatever its length), sets
# --steps so the whole run takes MINUTES, and trains CHUNK minutes (default 9) per call;
# call it again to go on. Set SWINFACE to the command that runs swinface.
set -euo pipefail
cd "$(dirname "$0")/.."
SWINFACE=${SWINFACE:-swinface}
CONFIG=${CONFIG:-configs/default.yaml}
RUN=${RUN:-runs/default}
PROBE_STEPS=${PROBE_STEPS:-40}

images_per_step() {
    python3 -c "
import sys, yaml
tasks = yaml.safe_load(open(sys.argv[1]))['tasks']
print(sum(t['batch_size'] for t in tasks.values()))" "$CONFIG"
}

case "${1:-}" in
unpack)
    bundle=${2:?usage: train-default.sh unpack BUNDLE}
    if [ -f stores/.unpacked ]; then echo "stores/ already unpacked"; exit 0; fi
    $SWINFACE bundle unpack "$bundle" stores/
    touch stores/.unpacked
    ;;
train)
    minutes=${2:?usage: train-default.sh train MINUTES [CHUNK]}
    chunk=${3:-9}
    if [ ! -f "$RUN/plan.json" ]; then
        # The probe is the run's start; an unfinished earlier probe starts over.
        rm -f "$RUN/log.csv"
        $SWINFACE train "$CONFIG" --output-dir "$RUN" --max-steps "$PROBE_STEPS" --no-resume
        # The rate between the log's middle row and its last (start-up excluded).
        python3 - "$RUN/log.csv" "$minutes" "$(images_per_step)" "$RUN/plan.json" <<'EOF'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
minutes, per_step = float(sys.argv[2]), int(sys.argv[3])
a, b = rows[(len(rows) - 1) // 2], rows[-1]
ta = int(a["step"]) * per_step / float(a["images_per_s"])
tb = int(b["step"]) * per_step / float(b["images_per_s"])
rate = (int(b["step"]) - int(a["step"])) * per_step / (tb - ta)
steps = max(int(b["step"]) + 1, int(rate * minutes * 60 / per_step))
plan = {"images_per_s": round(rate, 1), "minutes": minutes, "images_per_step": per_step,
        "steps": steps}
json.dump(plan, open(sys.argv[4], "w"), indent=1)
print("plan:", plan)
EOF
    fi
    steps=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['steps'])" "$RUN/plan.json")
    $SWINFACE train "$CONFIG" --output-dir "$RUN" --steps "$steps" --max-minutes "$chunk"
    ;;
finish)
    out=${2:?usage: train-default.sh finish OUT}
    mkdir -p "$out"
    $SWINFACE weights compact "$RUN" "$out" --name swinface-default --parts-mib 15.9 \
        --check stores/fer_val stores/utkface stores/celeba --check-faces 2000
    cp "$RUN/log.csv" "$RUN/plan.json" "$out/"
    if [ -f "$RUN/validation.jsonl" ]; then cp "$RUN/validation.jsonl" "$out/"; fi
    ;;
*)
    sed -n 2,14p "$0"
    exit 2
    ;;
esac
