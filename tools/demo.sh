#!/usr/bin/env bash
# The whole path on the built-in demo corpus, on a fresh machine with Python 3.11:
#   raw images -> TFRecords -> training -> SavedModel -> predictions.
#   bash tools/demo.sh [WORK_DIR]      (default: ./demo_run; about 5 minutes on 2 CPU cores)
# WORK_DIR is taken from where you stand. It must be new, empty, or an earlier demo run (which
# holds the marker file .alexnet_tf_demo); a rerun replaces only the demo's own raw/, records/,
# model/ and export/ in it. VENV=DIR: the virtualenv to use (default: .venv in the repository).
set -euo pipefail
absolute() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac; }
WORK="$(absolute "${1:-demo_run}")"
MARKER="$WORK/.alexnet_tf_demo"
if [ -e "$WORK" ] && [ ! -d "$WORK" ]; then
  echo "demo.sh: $WORK is not a folder; name a new or empty folder for the demo" >&2
  exit 2
fi
if [ -d "$WORK" ] && [ ! -f "$MARKER" ] && [ -n "$(ls -A "$WORK")" ]; then
  echo "demo.sh: $WORK is not empty and not an earlier demo run (no $(basename "$MARKER") in" \
    "it); nothing was touched: name a new or empty folder" >&2
  exit 2
fi
OWN_VENV=""
if [ -n "${VENV:-}" ]; then VENV="$(absolute "$VENV")"; OWN_VENV=1; fi
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VENV="${VENV:-$PWD/.venv}"
mkdir -p "$WORK"
echo "Made by alexnet_tf's tools/demo.sh; a rerun into this folder replaces raw/, records/," \
  "model/ and export/ here, nothing else." > "$MARKER"
rm -rf "$WORK/raw" "$WORK/records" "$WORK/model" "$WORK/export"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# A VENV you name is used as it is once it imports alexnet_tf; the default one is kept current.
if [ -z "$OWN_VENV" ] || ! "$VENV/bin/python" -c "import alexnet_tf" 2>/dev/null; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e .
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
py="$VENV/bin/python"
step() { printf '\n==> %s\n' "$*"; }

step "1/5 Generating the demo corpus (10 ImageNet classes, drawn on the spot) in $WORK/raw"
"$py" -m alexnet_tf.demo.corpus --output_dir="$WORK/raw"

step "2/5 Converting it to TFRecords in $WORK/records"
"$py" tools/build_tfrecords.py --input_dir="$WORK/raw" --output_dir="$WORK/records" \
  --train_shards=8 --validation_shards=2

step "3/5 Training AlexNet with configs/demo.cfg into $WORK/model"
"$py" -m alexnet_tf.train --flagfile=configs/demo.cfg \
  --data_dir="$WORK/records" --model_dir="$WORK/model"

step "4/5 Exporting a SavedModel for TensorFlow Serving to $WORK/export"
"$py" -m alexnet_tf.export --model="$WORK/model/model.keras" --export_base="$WORK/export"

step "5/5 Predicting a few validation images (true class from ImageNet's ground truth)"
mapfile -t samples < <(ls "$WORK"/raw/val/*.JPEG | sort | awk 'NR % 100 == 1' | head -n 5)
"$py" -m alexnet_tf.predict --model="$WORK/export" --true_class=imagenet_val "${samples[@]}"

"$py" -m alexnet_tf.demo.report --work_dir="$WORK"
