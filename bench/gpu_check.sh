#!/usr/bin/env bash
# The whole GPU check of issue 18 in one call on a lent GPU machine (under ~9 minutes).
#
# Usage: bench/gpu_check.sh WORK_DIR OUT_DIR
#
# On the device: run(command="bench/gpu_check.sh .carry/work $OUT", carry=[".carry"],
# timeout_s=600), after bench/prepare_gpu_carry.sh here (wheels in .carry/whl, the work
# dir in .carry/work.tar.xz, unpacked to WORK_DIR when WORK_DIR has no exp/graph yet).
# Runs anywhere else too (a CUDA machine with asr-kd and riva installed: no .carry).
#
# Steps, each under its own timeout so that one failure leaves the rest (seconds):
#   1. GPU tests: CPU/GPU decoder agreement, GPU 1-best, binary vs text lattice
#      archives, DDP on NCCL vs gloo (tests/train/test_nccl.py)              90
#   2. a baseline DNN for the model scores (WORK_DIR/exp/baseline if carried, else
#      trained here on the GPU: the small teacher, 3 epochs)                  90
#   3. decoding speed: CPU x1 / x16 and GPU lattice (binary, text) and 1-best at batch
#      64/256/1024 on noisy-oracle dev scores joined 2 by 2; the model's scores and the
#      model-included chain; the profile at batch 256                       240
#   4. CPU/GPU agreement on 20 dev utterances, noisy oracle and model         120
#   5. fbank on the CPU and the GPU (bench/fbank.py)                           30
#      the paper DNN on 16k-128k-frame batches, bf16, fused Adam, eager and
#      torch.compile: MFU (bench/mfu.py)                                       75
#   6. training: presets, the paper DNN in bf16, 10 fused teachers vs 10 one after
#      another (bench/train.py)                                               150
#   7. the frame-level path, 10 teachers, one epoch, 16k-frame batches: fused vs
#      one after another (train-ensemble; what the large run needs)       2 x 90
# The steps share GPU_CHECK_BUDGET seconds (default 540): a step gets at most what is
# left, and one that would get under 10 s is skipped; GPU_CHECK_SKIP=tests,decode_speed
# leaves named steps out (a second call for the steps the first had no time for; the
# names are those of the log: tests, baseline, decode_speed, decode_agreement, fbank,
# mfu, train, frames_fused, frames_loop). Prints a summary table and writes
# OUT_DIR/summary.json next to each step's JSON and OUT_DIR/log.txt (a device call
# brings back 8 files at most).
set -u -o pipefail

[[ $# -eq 2 ]] || { echo "usage: $0 WORK_DIR OUT_DIR" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
work=$1
out=$2
mkdir -p "$out"
log=$out/log.txt
: > "$log"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
py=${PYTHON:-python3}
say() { echo "[gpu_check $(date +%T)] $*" | tee -a "$log"; }
deadline=$((SECONDS + ${GPU_CHECK_BUDGET:-540}))  # the whole call, summary included
step() {  # step NAME SECONDS COMMAND...: run with a timeout, log, record the status
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  if [[ ,${GPU_CHECK_SKIP:-}, == *,$name,* ]]; then
    say "$name: skipped (GPU_CHECK_SKIP)"
    echo "$name skipped 0" >> "$out/.steps"
    return
  fi
  local left=$((deadline - SECONDS - 10))
  ((limit > left)) && limit=$left
  if ((limit < 10)); then
    say "$name: skipped, the time budget is spent"
    echo "$name skipped 0" >> "$out/.steps"
    return
  fi
  say "$name (at most $limit s): $*"
  timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1
  local rc=$?
  say "$name: exit $rc after $((SECONDS - start)) s"
  echo "$name $rc $((SECONDS - start))" >> "$out/.steps"
}

# 0. setup: carried wheels, the work dir at the absolute path its manifests name
if [[ -d $root/.carry/whl ]]; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$root"/.carry/whl/*.whl >> "$log" 2>&1 || say "wheel install failed"
  export PYTHONPATH=$root:/tmp/site${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}
fi
if [[ ! -e $work/exp/graph && -f $root/.carry/work.tar.xz ]]; then
  mkdir -p "$work" && tar -C "$work" -xJf "$root/.carry/work.tar.xz"
fi
work=$(realpath "$work")
if [[ -f $work/ORIGIN ]]; then
  origin=$(cat "$work/ORIGIN")
  if [[ $origin != "$work" && ! -e $origin ]]; then
    mkdir -p "$(dirname "$origin")" && ln -s "$work" "$origin"
  fi
fi
: > "$out/.steps"
nvidia-smi -L >> "$log" 2>&1
$py -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())" \
  | tee -a "$log"
kd=(-c "from asr_kd.cli.main import cli; cli(prog_name='asr-kd')")

# 1. GPU tests
step tests 90 $py -m pytest -q -p no:cacheprovider "$root/tests/decode/test_decode.py" \
  "$root/tests/train/test_nccl.py" -k "gpu or nccl" -rs

# 2. a model for the model scores
model=$work/exp/baseline
if [[ ! -f $model/model.pt ]]; then
  step baseline 90 $py "${kd[@]}" train --config "$root/recipes/synth/conf/small.yaml" --section teacher \
    --set seed=0 --set max_epochs=3 --device cuda "$work/data/senones" "$work/data/fbank" "$model"
fi

# 3. decoding speed and profile; 4. agreement
step decode_speed 240 $py "$root/bench/decode.py" --work-dir "$work" --no-graph-build \
  --model "$model" --cpu-jobs "$(nproc)" --gpu-batches 64,256,1024 --concat 2 --cpu-utts 12 \
  --parts speed,model-speed --profile --profile-batch 256 --out "$out/decode_speed"
step decode_agreement 120 $py "$root/bench/decode.py" --work-dir "$work" --no-graph-build \
  --model "$model" --cpu-jobs "$(nproc)" --max-utts 20 --parts agreement \
  --out "$out/decode_agreement"

# 5. fbank; the paper DNN's MFU on frame batches; 6. training throughput, fused teachers
step fbank 30 $py "$root/bench/fbank.py" --batch 64 --seconds 3 --batches 8 --out "$out/fbank"
step mfu 75 $py "$root/bench/mfu.py" --frames 16384,65536,131072 --compile --out "$out/mfu"
step train 150 $py "$root/bench/train.py" --work-dir "$work" --teachers 10 --steps 60 \
  --out "$out/train"

# 7. the frame-level path (data_path: frames) with large frame batches: 10 teachers,
#    one epoch, fused vs one after another (the rate the large run needs)
for mode in fused loop; do
  fused=$([[ $mode == fused ]] && echo true || echo false)
  rm -rf "/tmp/gpu_check_$mode"  # a warm machine may hold an earlier call's run
  step "frames_$mode" 90 $py "${kd[@]}" train-ensemble --config \
    "$root/recipes/synth/conf/small.yaml" --set ensemble.num_teachers=10 \
    --set ensemble.fused=$fused --set data_path=frames --set frame_batch_size=16384 \
    --set max_epochs=1 --device cuda "$work/data/senones" "$work/data/fbank" "/tmp/gpu_check_$mode"
done

# summary: one table of the figures that answer the issue, and summary.json
$py - "$out" <<'EOF' | tee -a "$log"
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
steps = [line.split() for line in (out / ".steps").read_text().splitlines()]
summary = {"steps": {name: {"exit": rc, "seconds": int(s)} for name, rc, s in steps}}

def load(path):
    p = out / path
    return json.loads(p.read_text()) if p.is_file() else {}

speed, agree = load("decode_speed/decode.json"), load("decode_agreement/decode.json")
train, fbank, mfu = load("train/train.json"), load("fbank/fbank.json"), load("mfu/mfu.json")
summary["gpu"] = speed.get("gpu") or train.get("gpu")
rows = [(f"{r['scores'][:22]} | {r['decoder']} | batch {r['batch']}", f"{r['x_real_time']:.0f}x RT")
        for r in speed.get("rows", []) if "x_real_time" in r]
for r in agree.get("agreement", []):
    for label in ("decode_point", "best_cpu_point"):
        if label in r:
            a = r[label]
            rows.append((f"agreement {r['scores'][:18]} {r['mode']} {label}",
                         f"{100 * a['same_words']:.1f}% same, WER {a['cpu_wer']:.2f}/{a['gpu_wer']:.2f}"))
for r in train.get("models", []):
    mfu = f", MFU {100 * r['mfu']:.1f}%" if "mfu" in r else ""
    rows.append((f"train {r['model']} {r['dtype']}", f"{r['frames_per_s']:.0f} frames/s{mfu}"))
ens = train.get("ensemble", [])
if len(ens) == 2:
    rows.append((f"{ens[0]['teachers']} teachers fused / one after another",
                 f"{ens[0]['frames_per_s'] / ens[1]['frames_per_s']:.2f}x"))
rates = {}
for mode in ("fused", "loop"):
    runs = sorted(Path(f"/tmp/gpu_check_{mode}").glob("teacher*/train.json"))
    step = summary["steps"].get(f"frames_{mode}", {})
    if runs and step.get("exit") == "0":
        docs = [json.loads(p.read_text()) for p in runs]
        frames = sum(d["total_frames"] for d in docs)
        seconds = [d["total_seconds"] for d in docs]  # training loops: fused share one
        train_s = max(seconds) if mode == "fused" else sum(seconds)
        rates[mode] = frames / train_s
        rows.append((f"frames path, {len(runs)} teachers, 1 epoch, {mode}",
                     f"{rates[mode]:.0f} teacher-frames/s ({frames / step['seconds']:.0f} "
                     "counting the whole command)"))
if len(rates) == 2:
    rows.append(("frames path fused / one after another", f"{rates['fused'] / rates['loop']:.2f}x"))
summary["frames_path"] = rates
for r in mfu.get("rows", []):
    if "frames_per_s" in r:
        share = f", MFU {100 * r['mfu']:.1f}%" if r.get("mfu") is not None else ""
        rows.append((f"paper DNN {r['frames']} frames{' compiled' if r['compiled'] else ''}",
                     f"{r['frames_per_s']:.0f} frames/s, {r['tflops']:.0f} TFLOP/s{share}"))
for r in fbank.get("rows", []):
    rows.append((f"fbank {r['device']} batch {r['batch']}", f"{r['x_real_time']:.0f}x RT"))
for b in speed.get("profile", []):
    top = sorted(b["steps"].items(), key=lambda kv: -kv[1])[:3]
    rows.append((f"profile {b['decoder']} batch {b['batch']}",
                 ", ".join(f"{k} {100 * v / b['wall_s']:.0f}%" for k, v in top)))
summary["table"] = rows
width = max((len(k) for k, _ in rows), default=10)
print(f"\n{'check':<{width}}  result")
for name, result in rows:
    print(f"{name:<{width}}  {result}")
print("steps:", ", ".join(f"{n} exit {v['exit']} ({v['seconds']} s)" for n, v in summary["steps"].items()))
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
EOF
rm -f "$out/.steps"
