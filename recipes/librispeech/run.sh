#!/usr/bin/env bash
# asr-kd on LibriSpeech or mini-LibriSpeech: corpus, manifests, features, lang and LM.
# The stages after these (alignment, tree, graph, teachers, ...) are the ones every
# recipe shares.
#
# Usage: recipes/librispeech/run.sh --corpus-dir DIR [--work-dir W]
#          [--config mini|train-clean-100|tiny|FILE] [--stage N] [--stop-stage M] [--nj N]
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
stage=0
stop_stage=100
config=mini
work_dir=$recipe_dir
corpus_dir=
nj=2
download=no
download_lm=no
fake_corpus=no
lexicon=
lm_arpa=
lm_text=

while [[ $# -gt 0 ]]; do
  case $1 in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --work-dir) work_dir=$2; shift 2 ;;
    --corpus-dir) corpus_dir=$2; shift 2 ;;
    --nj) nj=$2; shift 2 ;;
    --download) download=yes; shift ;;
    --download-lm) download_lm=yes; shift ;;
    --fake-corpus) fake_corpus=yes; shift ;;
    --lexicon) lexicon=$2; shift 2 ;;
    --lm-arpa) lm_arpa=$2; shift 2 ;;
    --lm-text) lm_text=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "$0: unknown option $1" >&2; exit 1 ;;
  esac
done

[[ -n $corpus_dir ]] || { echo "$0: --corpus-dir is required" >&2; exit 1; }
[[ -f $config ]] || config=$recipe_dir/conf/$config.yaml
[[ -f $config ]] || { echo "$0: no config $config" >&2; exit 1; }
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
read -r train_part <<< "$(python3 "$local_dir/parts.py" "$config" train)"
read -r dev_part <<< "$(python3 "$local_dir/parts.py" "$config" dev)"
read -r -a all_parts <<< "$(python3 "$local_dir/parts.py" "$config" all)"
data=$work_dir/data
exp=$work_dir/exp
mkdir -p "$data" "$exp/log"
kd=(asr-kd --log-file "$exp/log/run.log")
manifest() { echo "$data/manifests/librispeech_$1_$2.jsonl.gz"; }

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') ($fname:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

if [[ $stage -le 0 && $stop_stage -ge 0 ]]; then
  if [[ $fake_corpus == yes ]]; then
    log "Stage 0: synthesise a LibriSpeech-layout corpus into $download_dir"
    python3 "$local_dir/make_fake_corpus.py" "$config" "$download_dir"
  elif [[ $download == yes ]]; then
    log "Stage 0: download ${all_parts[*]} into $download_dir"
    part_opts=()
    for p in "${all_parts[@]}"; do part_opts+=(--part "$p"); done
    "${kd[@]}" download librispeech "${part_opts[@]}" "$download_dir"
  elif [[ ! -d $corpus_dir ]]; then
    echo "$0: $corpus_dir does not exist; pass --download or --fake-corpus" >&2
    exit 1
  fi
  if [[ $download_lm == yes ]]; then
    log "Stage 0: LibriSpeech lexicon, LM text and 3-gram into $download_dir"
    "$local_dir/download_lm.sh" "$download_dir"
  fi
fi

if [[ $stage -le 1 && $stop_stage -ge 1 ]]; then
  log "Stage 1: Lhotse manifests of ${all_parts[*]}"
  part_opts=()
  for p in "${all_parts[@]}"; do part_opts+=(--part "$p"); done
  "${kd[@]}" prepare librispeech "${part_opts[@]}" --num-jobs "$nj" "$corpus_dir" "$data/manifests"
fi

if [[ $stage -le 2 && $stop_stage -ge 2 ]]; then
  log "Stage 2: 80-dim log-mel fbank features (global statistics from $train_part)"
  "${kd[@]}" compute-features --config "$config" --section features --num-jobs "$nj" \
    --stats-split "$train_part" "$data/manifests" "$data/fbank"
fi

if [[ $stage -le 3 && $stop_stage -ge 3 ]]; then
  log "Stage 3: 13-dim MFCC features (for the GMM stages)"
  "${kd[@]}" compute-features --config "$config" --section mfcc --num-jobs "$nj" \
    --stats-split "$train_part" "$data/manifests" "$data/mfcc"
fi

if [[ $stage -le 4 && $stop_stage -ge 4 ]]; then
  log "Stage 4: lang directory (${lexicon:-CMUdict}; out-of-lexicon words -> <UNK>)"
  lexicon_opts=()
  [[ -z $lexicon ]] || lexicon_opts=(--lexicon "$lexicon" --whole-lexicon)
  "${kd[@]}" prepare-lang --words-from "$(manifest supervisions "$train_part")" \
    "${lexicon_opts[@]}" --map-oov "$data/lang"
fi

if [[ $stage -le 5 && $stop_stage -ge 5 ]]; then
  if [[ -n $lm_arpa ]]; then
    log "Stage 5: G.fst from $lm_arpa (perplexity on $dev_part)"
    "${kd[@]}" import-lm --dev "$(manifest supervisions "$dev_part")" \
      "$lm_arpa" "$data/lang" "$data/lm"
  else
    log "Stage 5: 3-gram on the $train_part transcripts ${lm_text:+and $lm_text} (perplexity on $dev_part)"
    text_opts=()
    [[ -z $lm_text ]] || text_opts=(--add-text "$lm_text")
    "${kd[@]}" train-lm "${text_opts[@]}" --dev "$(manifest supervisions "$dev_part")" \
      "$(manifest supervisions "$train_part")" "$data/lang" "$data/lm"
  fi
fi

log "Done: stages $stage..$stop_stage finished under $work_dir"
