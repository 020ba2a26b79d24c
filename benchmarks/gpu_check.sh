#!/usr/bin/env bash
# The GPU checks in one run, for a machine with a CUDA device: the gpu-marked tests, then the speed
# benchmarks and the quality runs that are too slow on a CPU, each under its own time limit and all of it
# under a deadline, the most important first. Every result lands in OUT (default gpu-out/) as it is
# produced, so a run stopped at its deadline keeps what finished.
#
#   benchmarks/gpu_check.sh [OUT] [SECONDS]      # SECONDS: the deadline for the whole run (default 540)
#   ONLY="tests scan_recon" benchmarks/gpu_check.sh  # only the named steps
#
# Needs the project importable (an installed inrecon, or run from the repository root: src/ is put on the
# path) and, for the lungdx runs, INRECON_DATA (default ../shared/data).
set -u
OUT=${1:-gpu-out}
DEADLINE=$(( $(date +%s) + ${2:-540} ))
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}

# step NAME MAX_SECONDS COMMAND...: run COMMAND for at most MAX_SECONDS (less if the deadline is nearer),
# stdout+stderr to OUT/NAME.log, and one line of status to OUT/steps.txt.
step() {
    local name=$1 max=$2
    shift 2
    if [[ -n "${ONLY:-}" && " $ONLY " != *" $name "* ]]; then
        return
    fi
    local left=$(( DEADLINE - $(date +%s) ))
    (( left < max )) && max=$left
    if (( max < 10 )); then
        echo "$name skipped: deadline" | tee -a "$OUT/steps.txt"
        return
    fi
    local t0=$(date +%s)
    timeout "$max" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc seconds=$(( $(date +%s) - t0 )) limit=$max" | tee -a "$OUT/steps.txt"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $PY -c "import torch as t; print(t.__version__, 'cuda', t.version.cuda, t.cuda.get_device_name(0))"
    nproc
} > "$OUT/machine.txt" 2>&1

# 1. Every gpu-marked test: each method, pre-training and the command line on CUDA against the CPU.
step tests 170 $PY -m pytest -m gpu -q -p no:cacheprovider --durations=15 \
    tests/test_cuda.py tests/physics/test_nufft.py tests/physics/test_coils.py \
    tests/recon/classical/test_ct.py tests/recon/classical/test_mri.py
# 2. Speed: the 2000-step scan-specific fit (Bilevel paper: < 6 s on an A40; our target: < 2 s on an H100),
#    and a DisINR pre-training step (reference vs library, 128^2 CT).
step scan_recon 90 $PY benchmarks/scan_recon.py --device cuda --steps 2000
step scan_recon_eager 90 $PY benchmarks/scan_recon.py --device cuda --steps 2000 --set monitor.cuda_graph=false
step scan_recon_profile 60 $PY benchmarks/scan_recon.py --device cuda --steps 300 --profile
#    The hash encoding as a gather + index_add_ instead of cuSPARSE products (57 % of the replayed step above).
step scan_recon_gather 90 $PY benchmarks/scan_recon.py --device cuda --steps 2000 --set net.hash.lookup=gather
step pretrain_speed 60 $PY benchmarks/pretrain_speed.py --device cuda --modality ct --size 128 --steps 20
step pretrain_speed_mri 60 $PY benchmarks/pretrain_speed.py --device cuda --modality mri --size 128 --steps 20
# 3. NGP on CT with the image on the scan's grid and a 2x finer one (four times the pixels), TV-CT beside.
# shellcheck disable=SC2086  # CT_CASES: case names separated by spaces
step ct_supersample 200 $PY benchmarks/ct_supersample.py --device cuda --cases ${CT_CASES:-A0001-60-noisy A0002-60-noisy scope-90}
# 4. Quality at the paper's pre-training budget (4000 steps, 62 augmented A0001 slices), TV and NGP beside.
step disinr_ct_4000 240 $PY benchmarks/disinr_ct.py --device cuda --n-pretrain 62 --pretrain-steps 4000 \
    --output /tmp/disinr_ct_4000.safetensors --methods tv ngp disinr --in-domain 30 45 --out-domain 15 5 25 \
    --curve ''
# 5. The demo, quick (what a CPU user runs in a few minutes) and its default profile (256^2, 20 pre-training
#    subjects), the one meant for a GPU.
step demo_quick 200 $PY -m inrecon.cli demo --quick --device cuda -q --output /tmp/demo-quick
step demo 400 $PY -m inrecon.cli demo --device cuda -q --output /tmp/demo-gpu
exit 0
