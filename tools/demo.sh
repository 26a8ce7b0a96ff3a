#!/usr/bin/env bash
# The whole path on the built-in demo corpus, on a fresh machine with Python 3.11:
#   raw images -> TFRecords -> training -> SavedModel -> predictions.
#   bash tools/demo.sh [WORK_DIR]      (default: ./demo_run; about 5 minutes on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VENV="${VENV:-.venv}"
WORK="${1:-demo_run}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e .
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
py="$VENV/bin/python"
rm -rf "$WORK"
step() { printf '\n==> %s\n' "$*"; }

step "1/5 Generating the demo corpus (10 ImageNet classes, drawn on the spot) in $WORK/raw"
"$py" -m alexnet_tf.demo_data --output_dir="$WORK/raw"

step "2/5 Converting it to TFRecords in $WORK/records"
"$py" tools/build_tfrecords.py --input_dir="$WORK/raw" --output_dir="$WORK/records" \
  --train_shards=8 --validation_shards=2

step "3/5 Training AlexNet with configs/demo.cfg into $WORK/model"
"$py" -m alexnet_tf.train --flagfile=configs/demo.cfg \
  --data_dir="$WORK/records" --model_dir="$WORK/model"

step "4/5 Exporting a SavedModel for TensorFlow Serving to $WORK/export"
"$py" -m alexnet_tf.export --model="$WORK/model/model.keras" --export_base="$WORK/export"

step "5/5 Predicting a few validation images with the exported SavedModel"
mapfile -t samples < <(ls "$WORK"/raw/val/*.JPEG | sort | awk 'NR % 100 == 1' | head -n 5)
"$py" -m alexnet_tf.predict --model="$WORK/export" "${samples[@]}"

cat <<DONE

Artifacts:
  raw demo images       $WORK/raw
  TFRecords + manifest  $WORK/records  (manifest.json lists every image written, repaired or skipped)
  trained model         $WORK/model/model.keras  (summary.json, training_curves.png, logs/ for TensorBoard)
  SavedModel            $WORK/export/1  (models.config and request.json beside it for TensorFlow Serving)
DONE
