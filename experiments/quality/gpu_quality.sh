#!/usr/bin/env bash
# The real-backbone quality suite with the GPU profile (750 steps x 16 per trained system, 4x the training rows,
# 2x the held-out sources of the CPU plan), for a machine with a CUDA GPU and ../shared/data beside the project.
# Training takes the GPU (--device auto, bf16 autocast); decoding (PyTorch and the bundles through ONNX Runtime)
# runs on the CPU cores.
# Results: benchmarks/results/quality/smollm2/results-{gpu,curves-gpu}.{json,md,png} (labelled "GPU"), beside the CPU ones.
# Resumable: finished cells are kept under $EDGEVLM_CACHE/bench-quality/ and skipped by a rerun.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_quality.sh: no CUDA GPU visible to torch')"
test -d ../shared/data || { echo "gpu_quality.sh: ../shared/data not found (see its README)"; exit 2; }
PROFILES=${PROFILES:-gpu curves-gpu}  # curves-gpu: issue 31's learning curves (4 tasks, 30-960 steps x 16)
for profile in $PROFILES; do
    "$PY" -m edgevlm.apps.cli bench --suite quality --backbone smollm2-135m --profile "$profile" \
        --threads "${THREADS:-$(nproc)}" "$@"
done
