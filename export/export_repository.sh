#!/usr/bin/env bash
# Weights and configs into a Triton model repository (the CPU step of every deployment form):
# segmenter_{arterial,venous}/1/model.onnx and locator/1/model.onnx from the embedded checkpoints
# (or --models DIR), s4c/1/segmenters.json and every config.pbtxt / configs/<form>.pbtxt.
#   export/export_repository.sh [REPOSITORY] [s4c export repository flags: --mode full, --models DIR]
# S4C names the command (default: s4c on PATH).
set -euo pipefail
S4C=${S4C:-s4c}
repo=${1:-model_repository}
shift || true
$S4C export repository --model-repository "$repo" "$@"
