#!/usr/bin/env bash
# The default asr-kd recipe: an offline synthetic English corpus (libespeak-ng),
# Lhotse manifests and features. Later stages (lang, alignment, senone tree, graph,
# teachers, ensemble, distillation, decoding, report) are added to this script.
#
# Usage: recipes/synth/run.sh [--stage N] [--stop-stage M] [--config tiny|small|large|FILE]
#                             [--work-dir DIR] [--nj N] [--dask-scheduler ADDR]
set -euo pipefail

recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
stage=0
stop_stage=100
config=small
work_dir=$recipe_dir
nj=2
dask_scheduler=

while [[ $# -gt 0 ]]; do
  case $1 in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --work-dir) work_dir=$2; shift 2 ;;
    --nj) nj=$2; shift 2 ;;
    --dask-scheduler) dask_scheduler=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "$0: unknown option $1" >&2; exit 1 ;;
  esac
done

[[ -f $config ]] || config=$recipe_dir/conf/$config.yaml
[[ -f $config ]] || { echo "$0: no config $config" >&2; exit 1; }
data=$work_dir/data
exp=$work_dir/exp
mkdir -p "$data" "$exp/log"

par=(--num-jobs "$nj")
[[ -n $dask_scheduler ]] && par+=(--dask-scheduler "$dask_scheduler")
kd=(asr-kd --log-file "$exp/log/run.log")

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') ($fname:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

timed() {
  local start=$SECONDS
  "$@"
  log "stage $current took $((SECONDS - start)) s"
}

current=0
if [[ $stage -le 0 && $stop_stage -ge 0 ]]; then
  log "Stage 0: synthesise the corpus ($config)"
  timed "${kd[@]}" synth-corpus --config "$config" "${par[@]}" "$data/corpus"
fi

current=1
if [[ $stage -le 1 && $stop_stage -ge 1 ]]; then
  log "Stage 1: Lhotse manifests"
  timed "${kd[@]}" prepare synth "$data/corpus" "$data/manifests"
fi

current=2
if [[ $stage -le 2 && $stop_stage -ge 2 ]]; then
  log "Stage 2: 80-dim log-mel fbank features"
  timed "${kd[@]}" compute-features --config "$config" --section features "${par[@]}" \
    "$data/manifests" "$data/fbank"
fi

current=3
if [[ $stage -le 3 && $stop_stage -ge 3 ]]; then
  log "Stage 3: 13-dim MFCC features (for the GMM stage)"
  timed "${kd[@]}" compute-features --config "$config" --section mfcc "${par[@]}" \
    "$data/manifests" "$data/mfcc"
fi

log "Done: stages $stage..$stop_stage finished under $work_dir"
