#!/usr/bin/env bash
# The default asr-kd recipe: an offline synthetic English corpus (libespeak-ng and neural
# voices), a held-out set read by voices never trained on, and their Lhotse manifests
# (stages 0-1), then the stages every recipe shares
# (recipes/common/stages.sh, 2-24): features, lang + LM, GMM alignment, the senone tree
# and targets, graph, teachers, ensemble, distillation, specialists, decoding, report.
#
# Usage: recipes/synth/run.sh [--config tiny|small|large|FILE] (default: small)
set -euo pipefail

recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
config=small
source "$recipe_dir/../common/lib.sh"

while [[ $# -gt 0 ]]; do
  case $1 in
    -h|--help) sed -n '2,7p' "$0"; echo "$shared_usage"; exit 0 ;;
    *) shared_option "${@:1:2}"; shift 2 ;;
  esac
done
setup_recipe "$0"

current=0
if [[ $stage -le 0 && $stop_stage -ge 0 ]]; then
  log "Stage 0: synthesise the corpus ($config)"
  timed "${kd[@]}" synth-corpus --config "$config" "${par[@]}" "$data/corpus"
  # voices never trained on read the test sentences (heldout_voices, heldout_speakers)
  timed "${kd[@]}" synth-corpus --config "$config" "${par[@]}" --heldout "$data/corpus_heldout"
fi

current=1
if [[ $stage -le 1 && $stop_stage -ge 1 ]]; then
  log "Stage 1: Lhotse manifests"
  timed "${kd[@]}" prepare synth "$data/corpus" "$data/manifests"
  timed "${kd[@]}" prepare synth "$data/corpus_heldout" "$data/manifests_heldout"
fi

# The shared stages: the corpus's names, its lexicon words and LM text.
corpus=synth
train_split=train
dev_split=dev
test_split=test
lang_opts=(--words-from "$data/corpus/lm/lm_text.txt")  # CMUdict for train + LM words
lm_text=$data/corpus/lm/lm_text.txt
lm_opts=()
lm_arpa=
eval_sets=(heldout)  # $data/manifests_heldout: decoded by baseline, ensemble and student
subset_dirs=("$data/manifests")  # test_<engine>: WER per voice engine
source "$recipe_dir/../common/stages.sh"
