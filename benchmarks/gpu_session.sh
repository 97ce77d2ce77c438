#!/usr/bin/env bash
# Everything issue 6 measures on a GPU, in two device calls (each call may run 10 minutes at most):
#   bash benchmarks/gpu_session.sh tests attacks     # ~4 min: GPU-vs-CPU agreement, attack timings
#   bash benchmarks/gpu_session.sh extract           # ~5 min: embedding throughput
# (no argument: all three stages, for a machine without the 10-minute limit).
#
# The device image has torch, torchvision, scikit-learn, click and tqdm but not open_clip_torch.
# Before the calls, here in the repo root (wheels travel with the working tree, 64 MiB at most):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 --platform any -d .whl open_clip_torch ftfy wcwidth
# then call the device tool's `run` with carry [".whl"]. Results land in $OUT (extract_cuda.json,
# attacks_cuda.json, the logs); copy the JSON files into benchmarks/results/ and the tables into
# benchmarks/RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/creepscan-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, torchvision, open_clip; print(torch.__version__, torchvision.__version__, open_clip.__version__)" \
  | tee -a "$OUT/gpu.txt" || exit 2

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(tests attacks extract)
status=0
for stage in "${stages[@]}"; do
  case "$stage" in
    tests)    # the GPU paths against the CPU reference, and the fast-path tests
      timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_decode.py 2>&1 \
        | tee "$OUT/pytest_gpu.log" || status=1 ;;
    attacks)  # the attack set on 10,000 x 512, 100 classes: CPU, GPU, scikit-learn's protocol
      timeout 300 python3 benchmarks/attacks.py --out "$OUT/attacks_cuda.json" 2>&1 | tee "$OUT/attacks.log" || status=1 ;;
    extract)  # embedding throughput: arithmetic limit, precisions, fast vs PIL decode, the peer loop
      timeout 540 python3 benchmarks/extract.py --device cuda --n 20000 --out "$OUT/extract_cuda.json" 2>&1 \
        | tee "$OUT/extract.log" || status=1 ;;
    *) echo "unknown stage '$stage' (tests, attacks, extract)"; exit 2 ;;
  esac
done
exit $status
