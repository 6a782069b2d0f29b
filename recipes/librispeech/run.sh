#!/usr/bin/env bash
# asr-kd on a local LibriSpeech (or mini-LibriSpeech) copy, through Lhotse's recipe.
# Stage 0 downloads only when --corpus-dir does not exist yet (needs network access).
# Later stages (lang, alignment, senone tree, graph, teachers, ...) follow the synth
# recipe and are added here as they land.
#
# Usage: recipes/librispeech/run.sh --corpus-dir DIR [--stage N] [--stop-stage M]
#          [--config mini|full|FILE] [--part PART ...] [--work-dir DIR] [--nj N]
set -euo pipefail

recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
stage=0
stop_stage=100
config=mini
work_dir=$recipe_dir
corpus_dir=
nj=2
parts=()

while [[ $# -gt 0 ]]; do
  case $1 in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --work-dir) work_dir=$2; shift 2 ;;
    --corpus-dir) corpus_dir=$2; shift 2 ;;
    --part) parts+=(--part "$2"); shift 2 ;;
    --nj) nj=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "$0: unknown option $1" >&2; exit 1 ;;
  esac
done

[[ -n $corpus_dir ]] || { echo "$0: --corpus-dir is required" >&2; exit 1; }
source "$recipe_dir/../check_args.sh"
config=$(check_recipe_args "$0" "$stage" "$stop_stage" "$config" "$recipe_dir/conf" "$work_dir")
data=$work_dir/data
exp=$work_dir/exp
mkdir -p "$data" "$exp/log"
kd=(asr-kd --log-file "$exp/log/run.log")

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') ($fname:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

if [[ $stage -le 0 && $stop_stage -ge 0 ]]; then
  if [[ -d $corpus_dir ]]; then
    log "Stage 0: $corpus_dir exists; skipping the download"
  else
    log "Stage 0: download LibriSpeech into $(dirname "$corpus_dir")"
    "${kd[@]}" download librispeech "${parts[@]}" "$(dirname "$corpus_dir")"
  fi
fi

if [[ $stage -le 1 && $stop_stage -ge 1 ]]; then
  log "Stage 1: Lhotse manifests"
  "${kd[@]}" prepare librispeech "${parts[@]}" --num-jobs "$nj" "$corpus_dir" "$data/manifests"
fi

if [[ $stage -le 2 && $stop_stage -ge 2 ]]; then
  log "Stage 2: 80-dim log-mel fbank features"
  "${kd[@]}" compute-features --config "$config" --section features --num-jobs "$nj" \
    "$data/manifests" "$data/fbank"
fi

if [[ $stage -le 3 && $stop_stage -ge 3 ]]; then
  log "Stage 3: 13-dim MFCC features (for the GMM stage)"
  "${kd[@]}" compute-features --config "$config" --section mfcc --num-jobs "$nj" \
    "$data/manifests" "$data/mfcc"
fi

log "Done: stages $stage..$stop_stage finished under $work_dir"
