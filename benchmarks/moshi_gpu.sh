#!/bin/sh
# benchmarks/moshi_batch.py on a GPU machine: Moshi 7B's architecture, random bf16 weights, B conversations
# batched on one model, raw and through `serve` (issue 13). The GPU machine's image has torch (CUDA),
# aiohttp, einops, safetensors, sentencepiece and huggingface-hub but no network: the few other packages
# travel as wheels.
#
#   sh benchmarks/moshi_gpu.sh wheels          # here, once (needs the package registry): .whl-moshi/, ~19 MB
#   sh benchmarks/moshi_gpu.sh run [ARGS...]   # on the GPU machine, from the repo root; ARGS go to
#                                              # moshi_batch.py (default: --slots 1,8,16,32,48,64 --seconds 15)
#
# With the device tool: run(command="sh benchmarks/moshi_gpu.sh run", carry=[".whl-moshi"], timeout_s=600);
# the table is printed and also written to $OUT/moshi_batch.txt.
set -eu
WHEELS=.whl-moshi
case "${1:-}" in
wheels)
    grep -qx "/$WHEELS/" .git/info/exclude 2>/dev/null || echo "/$WHEELS/" >> .git/info/exclude
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHEELS" \
        moshi==0.2.13 sphn==0.2.0 soxr==1.1.0 soundfile==0.14.0 cffi==2.1.1 pycparser
    ls -la "$WHEELS"
    ;;
run)
    shift
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv || true
    [ $# -gt 0 ] || set -- --slots 1,8,16,32,48,64 --seconds 15
    python3 benchmarks/moshi_batch.py --full --device cuda "$@" 2>&1 | tee "${OUT:-/tmp}/moshi_batch.txt"
    ;;
*)
    echo "usage: sh benchmarks/moshi_gpu.sh wheels | run [moshi_batch.py arguments]" >&2
    exit 2
    ;;
esac
