#!/usr/bin/env bash
# Download LibriSpeech's lexicon, LM text and published 3-gram (OpenSLR resource 11)
# into DIR; files already there are kept. Only run when asked (run.sh --download-lm).
#
# Usage: local/librispeech/download_lm.sh DIR [BASE_URL]
set -euo pipefail
[[ $# -ge 1 ]] || { sed -n '2,6p' "$0"; exit 1; }
dir=$1
base_url=${2:-https://www.openslr.org/resources/11}
mkdir -p "$dir"
for f in librispeech-lexicon.txt librispeech-lm-norm.txt.gz 3-gram.pruned.1e-7.arpa.gz; do
  if [[ -s $dir/$f ]]; then
    echo "$0: $dir/$f exists; skipping"
    continue
  fi
  echo "$0: fetching $base_url/$f"
  curl -fL --retry 3 -o "$dir/$f.part" "$base_url/$f"
  mv "$dir/$f.part" "$dir/$f"
done
