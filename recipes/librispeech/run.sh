#!/usr/bin/env bash
# asr-kd on LibriSpeech or mini-LibriSpeech: the corpus (downloaded, or synthesised in
# LibriSpeech's layout) and its Lhotse manifests (stages 0-1), then the stages every
# recipe shares (recipes/common/stages.sh, 2-24) through W/exp/report/results.json. The
# report's dev and test are the config's librispeech.dev part and its first test part.
#
# Usage: recipes/librispeech/run.sh --corpus-dir DIR [--work-dir W]
#          [--config mini|train-clean-100|tiny|FILE] (default: mini)
#          [--download] [--download-lm] [--fake-corpus]
#          [--lexicon FILE] [--lm-arpa FILE] [--lm-text FILE]
#   --corpus-dir DIR  the corpus: DIR/<part>/<spk>/<chapter>/*.flac (DIR ends in LibriSpeech)
#   --download        stage 0 downloads the config's parts into DIR/.. (network needed)
#   --download-lm     stage 0 also fetches LibriSpeech's lexicon, LM text and 3-gram
#   --fake-corpus     stage 0 synthesises a LibriSpeech-layout corpus into DIR/.. instead
#   --lexicon FILE    Kaldi-format lexicon; its words are the vocabulary (default: CMUdict,
#                     vocabulary = training words; with --fake-corpus or --download-lm:
#                     DIR/../librispeech-lexicon.txt)
#   --lm-arpa FILE    use this ARPA LM (e.g. 3-gram.pruned.1e-7.arpa.gz) instead of training
#   --lm-text FILE    train the LM on the training transcripts plus FILE (.gz read)
set -euo pipefail

recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
local_dir=$recipe_dir/../../local/librispeech
config=mini
source "$recipe_dir/../common/lib.sh"
corpus_dir=
download=no
download_lm=no
fake_corpus=no
lexicon=
lm_arpa=
lm_text=

while [[ $# -gt 0 ]]; do
  case $1 in
    --corpus-dir) corpus_dir=$2; shift 2 ;;
    --download) download=yes; shift ;;
    --download-lm) download_lm=yes; shift ;;
    --fake-corpus) fake_corpus=yes; shift ;;
    --lexicon) lexicon=$2; shift 2 ;;
    --lm-arpa) lm_arpa=$2; shift 2 ;;
    --lm-text) lm_text=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; echo "$shared_usage"; exit 0 ;;
    *) shared_option "${@:1:2}"; shift 2 ;;
  esac
done

[[ -n $corpus_dir ]] || { echo "$0: --corpus-dir is required" >&2; exit 1; }
setup_recipe "$0"
download_dir=$(dirname "$corpus_dir")
if [[ $download == yes || $fake_corpus == yes ]] && [[ $(basename "$corpus_dir") != LibriSpeech ]]; then
  echo "$0: with --download or --fake-corpus, --corpus-dir must end in LibriSpeech" >&2
  exit 1
fi
if [[ -z $lexicon && ( $fake_corpus == yes || $download_lm == yes ) ]]; then
  lexicon=$download_dir/librispeech-lexicon.txt
fi
if [[ -z $lm_text && -z $lm_arpa && $fake_corpus == yes ]]; then
  lm_text=$download_dir/librispeech-lm-norm.txt
fi
roles=$(python3 "$local_dir/parts.py" "$config" train dev test all)
{ read -r train_part; read -r dev_part; read -r -a test_parts; read -r -a all_parts; } <<< "$roles"

current=0
if [[ $stage -le 0 && $stop_stage -ge 0 ]]; then
  if [[ $fake_corpus == yes ]]; then
    log "Stage 0: synthesise a LibriSpeech-layout corpus into $download_dir"
    timed python3 "$local_dir/make_fake_corpus.py" "$config" "$download_dir"
  elif [[ $download == yes ]]; then
    log "Stage 0: download ${all_parts[*]} into $download_dir"
    part_opts=()
    for p in "${all_parts[@]}"; do part_opts+=(--part "$p"); done
    timed "${kd[@]}" download librispeech "${part_opts[@]}" "$download_dir"
  elif [[ ! -d $corpus_dir ]]; then
    echo "$0: $corpus_dir does not exist; pass --download or --fake-corpus" >&2
    exit 1
  fi
  if [[ $download_lm == yes ]]; then
    log "Stage 0: LibriSpeech lexicon, LM text and 3-gram into $download_dir"
    "$local_dir/download_lm.sh" "$download_dir"
  fi
fi

current=1
if [[ $stage -le 1 && $stop_stage -ge 1 ]]; then
  log "Stage 1: Lhotse manifests of ${all_parts[*]}"
  part_opts=()
  for p in "${all_parts[@]}"; do part_opts+=(--part "$p"); done
  timed "${kd[@]}" prepare librispeech "${part_opts[@]}" --num-jobs "$nj" "$corpus_dir" \
    "$data/manifests"
fi

# The shared stages: LibriSpeech's names; the lexicon (out-of-lexicon words -> <UNK>);
# the LM on the training transcripts (plus --lm-text), or the given ARPA file.
corpus=librispeech
train_split=$train_part
dev_split=$dev_part
test_split=${test_parts[0]}
extra_test_splits=("${test_parts[@]:1}")  # dev-other, test-other...: decoded, reported too
lang_opts=(--map-oov)
[[ -z $lexicon ]] || lang_opts+=(--lexicon "$lexicon" --whole-lexicon)
lm_opts=()
[[ -z $lm_text ]] || lm_opts=(--add-text "$lm_text")
lm_text=$data/manifests/librispeech_supervisions_${train_part}.jsonl.gz
source "$recipe_dir/../common/stages.sh"
