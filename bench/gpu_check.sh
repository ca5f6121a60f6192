#!/usr/bin/env bash
# The one prepared GPU check: everything only a GPU shows, in one command, <= 8 minutes on one GPU.
#
#   bench/gpu_check.sh [--device cuda|cpu]
#
# Runs, each as one step that is timed and recorded (a failed step does not stop the others):
#   cuda_tests      pytest -m cuda (CUDA numerics = CPU, autocast stays finite and close)
#   data            a small synthetic RealBinaural dataset
#   stage1_fp32 / stage1_bf16 / stage1_fp16
#                   a few Stage 1 training steps (base size on CUDA, tiny on CPU) with --amp none/bf16/fp16
#                   (on CPU only stage1_fp32: the trainer ignores --amp there)
#   stage1_both_bf16 Stage 1 with box and grid tokens (--visual_tokens both) under bf16 autocast
#   ddp_2proc       Stage 1 with --num_gpus 2: NCCL when >= 2 GPUs, else gloo with both ranks on one GPU
#   vocoder_step    a few BigVGAN training steps
#   binauralize_mono / binauralize_vocoder
#                   binauralize.py --device DEVICE with each renderer
#   bench_stage1 / bench_vocoder
#                   bench/stage1.py and bench/vocoder.py on DEVICE
# Writes $OUT/gpu_check_{device}.log and .json (OUT defaults to bench/results), the JSON holding the
# machine, each step's status and seconds, and the two benchmarks' results. Exit status: 0 when every
# step passed. --device cpu (tiny sizes, CUDA hidden) is what the test suite runs so this cannot rot.
set -uo pipefail
cd "$(dirname "$0")/.."

DEVICE=cuda
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE=${2:-}; shift 2 ;;
        --device=*) DEVICE=${1#*=}; shift ;;
        -h|--help) sed -n 2,20p "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (use --device cuda|cpu)" >&2; exit 2 ;;
    esac
done
case "$DEVICE" in cuda|cpu) ;; *) echo "gpu_check.sh: --device must be cuda or cpu, got '$DEVICE'" >&2; exit 2 ;; esac

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=$PWD/.venv/bin/python; else PY=python; fi
DEST=${OUT:-bench/results}
mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)
LOG=$DEST/gpu_check_$DEVICE.log
JSON=$DEST/gpu_check_$DEVICE.json
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
: > "$LOG"
STEPS=$WORK/steps.tsv
: > "$STEPS"

if [ "$DEVICE" = cpu ]; then
    export CUDA_VISIBLE_DEVICES=""  # the CPU path, even on a GPU machine
    CLIPS=8; SECONDS_PER_CLIP=1.5; TRAIN_STEPS=2; BATCH=2; VOC_STEPS=2  # 4 train clips: a batch on 2 ranks
    MODEL=(--config micro)
    # Loader workers in stage1_fp32 only: each epoch spawns them afresh (imports torch), on 2 CPU cores that
    # was 40 of the 52 s of the 2-rank run
    LATER_WORKERS=0
    BENCH_S1=(--sizes tiny --batches 1 --repeats 1 --tokens both)  # both: the box and the grid code paths at once
    BENCH_VOC=(--configs tiny --seconds 0.5 --repeats 1)
    VOC_CONFIG=BigVGAN/configs/bigvgan_tiny.json
else
    CLIPS=40; SECONDS_PER_CLIP=4; TRAIN_STEPS=30; BATCH=8; VOC_STEPS=20  # 20 train clips: a batch on 2 ranks
    MODEL=(--config gpu)  # the preset GPU users are given
    LATER_WORKERS=2
    BENCH_S1=(--sizes tiny default --batches 1 8 32)
    BENCH_VOC=(--seconds 10)
    VOC_CONFIG=BigVGAN/configs/bigvgan_binaural_22khz_80band_256x.json
fi

step() {  # step NAME COMMAND...: run, log, record "name<TAB>status<TAB>seconds"
    local name=$1; shift
    local t0 status
    echo "=== $name: $*" >> "$LOG"
    t0=$EPOCHREALTIME
    if "$@" >> "$LOG" 2>&1; then status=ok; else status=failed; fi
    printf '%s\t%s\t%s\n' "$name" "$status" "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')" >> "$STEPS"
    echo "$name: $status" | tee -a "$LOG"
}

if [ "$DEVICE" = cuda ]; then
    nvidia-smi >> "$LOG" 2>&1 || true
    if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu_check.sh: torch sees no CUDA device (use --device cpu)" | tee -a "$LOG" >&2
        exit 2
    fi
fi

D=$WORK/data
S1=(--data_root "$D" --ckpt "$WORK/ckpt" --list_train "$D/splits/train.csv" --list_val "$D/splits/val.csv"
    --batch_size_per_gpu "$BATCH" --workers 2 --max_steps "$TRAIN_STEPS" --num_epoch 1000 --eval_epoch 1000
    --steps 5 --disp_iter 5 --interaural_phase "${MODEL[@]}")

step cuda_tests "$PY" -m pytest -q -m cuda -p no:cacheprovider tests/test_cuda.py
step data "$PY" -m DiffBinaural.dataset.synthetic --out "$D" --num_clips "$CLIPS" --seconds "$SECONDS_PER_CLIP" \
    --seed 0 --split_fractions 0.5 0.25 0.25 --image_size 160 96 --workers 2
AMPS=(none bf16 fp16)
[ "$DEVICE" = cpu ] && AMPS=(none)  # autocast is CUDA-only here (the trainer runs fp32 on CPU): no duplicates
for amp in "${AMPS[@]}"; do
    name=stage1_${amp/none/fp32}
    step "$name" "$PY" DiffBinaural/train_realBinaural.py "${S1[@]}" --id "$name" --amp "$amp"
done
# box and grid tokens together (the whole frame's feature map) under bf16 autocast
step stage1_both_bf16 "$PY" DiffBinaural/train_realBinaural.py "${S1[@]}" --id both --amp bf16 --visual_tokens both \
    --workers "$LATER_WORKERS"
if [ "$DEVICE" = cuda ] && [ "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" -lt 2 ]; then
    step ddp_2proc env DIFFBINAURAL_DIST_BACKEND=gloo "$PY" DiffBinaural/train_realBinaural.py "${S1[@]}" \
        --id ddp --num_gpus 2 --workers "$LATER_WORKERS"
else
    step ddp_2proc "$PY" DiffBinaural/train_realBinaural.py "${S1[@]}" --id ddp --num_gpus 2 --workers "$LATER_WORKERS"
fi
step vocoder_step "$PY" BigVGAN/train_binaural_mel.py --config "$VOC_CONFIG" --audio_dir "$D/processed/binaural_audios_22050Hz" \
    --train_list "$D/splits/train.csv" --val_list "$D/splits/val.csv" --checkpoint_path "$WORK/vocoder" \
    --batch_size_per_gpu "$BATCH" --workers 2 --num_val 1 --segment_size 8192 --max_steps "$VOC_STEPS" \
    --checkpoint_interval "$VOC_STEPS" --validation_interval "$VOC_STEPS"
name=$(sed -n 2p "$D/splits/test.csv")
for renderer in mono vocoder; do
    extra=()
    [ "$renderer" = vocoder ] && extra=(--vocoder "$(ls "$WORK"/vocoder/g_* 2>/dev/null | tail -1)")
    step "binauralize_$renderer" "$PY" binauralize.py --mono "$D/processed/mono_audios_22050Hz/$name.wav" \
        --frames "$D/processed/frames/$name" --stage1 "$WORK/ckpt/stage1_fp32" --renderer "$renderer" \
        --device "$DEVICE" --steps 5 --out "$WORK/binauralized_$renderer.wav" "${extra[@]}"
done
step bench_stage1 "$PY" bench/stage1.py --device "$DEVICE" "${BENCH_S1[@]}" --out "$WORK/bench_stage1.json"
step bench_vocoder "$PY" bench/vocoder.py --device "$DEVICE" "${BENCH_VOC[@]}" --out "$WORK/bench_vocoder.json"

"$PY" - "$STEPS" "$JSON" "$DEVICE" "$WORK" <<'EOF'
import json, os, platform, sys

import torch

steps_path, out, device, work = sys.argv[1:]
steps = []
for line in open(steps_path):
    name, status, seconds = line.rstrip("\n").split("\t")
    steps.append({"name": name, "status": status, "seconds": round(float(seconds), 2)})
doc = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
       "gpu": torch.cuda.get_device_name(0) if device == "cuda" and torch.cuda.is_available() else None,
       "cpu": platform.processor() or platform.machine(), "steps": steps,
       "passed": all(s["status"] == "ok" for s in steps)}
for key in ("bench_stage1", "bench_vocoder"):
    path = os.path.join(work, f"{key}.json")
    doc[key] = json.load(open(path)) if os.path.isfile(path) else None
with open(out + ".tmp", "w") as f:
    json.dump(doc, f, indent=2)
os.replace(out + ".tmp", out)
print(f"{sum(s['status'] == 'ok' for s in steps)}/{len(steps)} steps passed; wrote {out}")
sys.exit(0 if doc["passed"] else 1)
EOF
