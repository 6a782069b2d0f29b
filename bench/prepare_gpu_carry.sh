#!/usr/bin/env bash
# Collect what bench/gpu_check.sh needs on a lent GPU machine into .carry/ (git-ignored).
#
# Usage: bench/prepare_gpu_carry.sh WORK_DIR [MODEL_DIR] [TRAIN_FILES]
#
# The GPU machines (see the device README) have Python 3.12 with torch 2.11.0+cu130,
# numpy, scipy, h5py, click, tqdm, pyyaml, toolz, sortedcontainers, tabulate, packaging
# and no network. What asr-kd needs beyond that travels as cp312 manylinux wheels
# (--no-deps each; the list below is what the decode, train and fbank benches import;
# kaldilm, TTS and synthesis packages are not needed there):
#   riva-asrlib-decoder 0.4.4 (the CUDA decoder), lhotse 1.33.0 and its lilcom, cytoolz,
#   intervaltree, audioread, soundfile (+ cffi, pycparser), kaldi-hmm-gmm 1.1.4,
#   kaldifst 1.7.17, kaldi-decoder 0.2.11, kaldialign, kaldiio, jiwer (+ rapidfuzz).
# (The H100 runs of bench/RESULTS.md ran riva, lhotse and the kaldi decoders there; this
# list is what the code imports, not a record of what was carried then.)
#
# The work dir travels as .carry/work.tar.xz, trimmed to fit the 64 MiB a call may carry:
# exp/graph, the senone targets (dev and train), the dev features and the first
# TRAIN_FILES (default 1) lilcom files of the train features, with the train manifests
# cut down to the cuts whose features travel; MODEL_DIR (a trained DNN, e.g.
# WORK_DIR/exp/baseline) goes as exp/baseline, else gpu_check.sh trains one there.
# The manifests hold absolute feature paths: ORIGIN records WORK_DIR, and gpu_check.sh
# links that path to the unpacked copy.
#
# Then, from the repository root: run(command="bench/gpu_check.sh .carry/work $OUT",
# carry=[".carry"], timeout_s=600).
set -euo pipefail

[[ $# -ge 1 ]] || { echo "usage: $0 WORK_DIR [MODEL_DIR] [TRAIN_FILES]" >&2; exit 2; }
work=$(realpath "$1")
model=${2:-}
train_files=${3:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
carry=$root/.carry
python=${PYTHON:-$root/.venv/bin/python}
for need in exp/graph/HCLG.fst data/senones/priors.json data/fbank/synth_cuts_dev.jsonl.gz; do
  [[ -e $work/$need ]] || { echo "$work/$need is missing: run the recipe to stage 11" >&2; exit 1; }
done
grep -qx '/.carry/' "$root/.git/info/exclude" 2>/dev/null \
  || { mkdir -p "$root/.git/info"; echo '/.carry/' >> "$root/.git/info/exclude"; }
rm -rf "$carry" && mkdir -p "$carry/whl"

wheels=(
  riva-asrlib-decoder==0.4.4 lhotse==1.33.0 lilcom cytoolz intervaltree audioread
  soundfile cffi pycparser kaldi-hmm-gmm==1.1.4 kaldifst==1.7.17 kaldi-decoder==0.2.11
  kaldialign kaldiio jiwer rapidfuzz
)
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d "$carry/whl" "${wheels[@]}"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
echo "$work" > "$stage/ORIGIN"
mkdir -p "$stage/exp" "$stage/data/senones" "$stage/data/fbank/synth_fbank_train"
cp -r "$work/exp/graph" "$stage/exp/"
cp "$work"/data/senones/{.done.json,info.json,priors.json,tree.json} "$stage/data/senones/"
cp "$work"/data/senones/{senones_dev.h5,senones_train.h5,synth_cuts_dev.jsonl.gz} \
  "$stage/data/senones/"
cp -r "$work/data/fbank/stats" "$work/data/fbank/synth_fbank_dev" "$stage/data/fbank/"
cp "$work"/data/fbank/{.done.json,synth_cuts_dev.jsonl.gz} "$stage/data/fbank/"
kept=()
for i in $(seq 0 $((train_files - 1))); do
  f=$work/data/fbank/synth_fbank_train/feats-$i.lca
  [[ -f $f ]] && cp "$f" "$stage/data/fbank/synth_fbank_train/" && kept+=("$f")
done
# train manifests: only the cuts whose features travel
"$python" - "$work" "$stage" "${kept[@]}" <<'EOF'
import gzip, json, sys
work, stage, kept = sys.argv[1], sys.argv[2], set(sys.argv[3:])
for part in ("senones", "fbank"):
    src = f"{work}/data/{part}/synth_cuts_train.jsonl.gz"
    lines = [l for l in gzip.open(src, "rt") if json.loads(l)["features"]["storage_path"] in kept]
    with gzip.open(f"{stage}/data/{part}/synth_cuts_train.jsonl.gz", "wt") as f:
        f.writelines(lines)
    print(f"{part}: {len(lines)} train cuts travel")
EOF
if [[ -n $model ]]; then
  mkdir -p "$stage/exp/baseline" && cp "$model"/{model.pt,train.json,.done.json} "$stage/exp/baseline/"
fi
tar -C "$stage" -cJf "$carry/work.tar.xz" .
du -shc "$carry/whl" "$carry/work.tar.xz"
echo "wrote $carry; with the tracked files it must stay under 64 MiB"
