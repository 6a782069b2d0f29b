# The stages every recipe shares, 2-24: features, lang and LM, GMM alignment, tree,
# senone targets, graph, teachers, ensemble, distillation, decoding, report. Sourced by
# recipes/<corpus>/run.sh after its preparation stages (0-1) and lib.sh's setup_recipe.
#
# The recipe sets:
#   corpus                         the manifests' corpus name (<corpus>_cuts_<split>...)
#   train_split dev_split test_split  its split names (the report calls them dev and test)
#   lang_opts=(...)                prepare-lang options besides the training words
#   lm_text, lm_opts=(...)         stage 5 trains the 3-gram on lm_text with lm_opts...
#   lm_arpa                        ...or, when set, imports this ARPA file instead
#   eval_sets=(NAME...)            extra test sets in $data/manifests_NAME (may be empty):
#                                  stage 2 extracts their fbank, stage 18 decodes them with
#                                  the baseline, the ensemble and the student at dev's LM
#                                  weight, the report scores them by voice
#   extra_test_splits=(SPLIT...)   more test splits of $data/manifests (LibriSpeech's
#                                  test-other...): stage 18 decodes them as eval_sets, the
#                                  report lists their WER beside the voices (may be empty)
#   subset_dirs=(DIR...)           manifest dirs whose <split>_<name> subsets (voice engines)
#                                  the report scores from the test decode (may be empty)
# Stage 2-3 manifests are read from $data/manifests.

splits=(--train-split "$train_split" --dev-split "$dev_split")
report_splits=(--dev-split "$dev_split" --test-split "$test_split")
[[ -v eval_sets ]] || eval_sets=()
[[ -v subset_dirs ]] || subset_dirs=()
[[ -v extra_test_splits ]] || extra_test_splits=()
voice_splits=()  # the report's WER per subset (voice engine) and per extra test set
for d in "${subset_dirs[@]}"; do voice_splits+=(--voice-splits "$d"); done
for set in "${eval_sets[@]}"; do voice_splits+=(--voice-splits "$data/manifests_$set"); done
manifest() { echo "$data/manifests/${corpus}_$1_$2.jsonl.gz"; }
senone_cuts() { echo "$data/senones/${corpus}_cuts_$1.jsonl.gz"; }

# decode_system SCORES OUT [decode options]: dev with the LM-weight sweep, then test at
# dev's point (never tuned on test), in one command (the model and graph loaded once);
# writes OUT/decode_dev and OUT/decode_test. SCORES: --model SPEC or --oracle DIR. The
# options come last: --priors DIR replaces the stage-9 targets' priors.
decode_system() {
  local scores=("$1" "$2") out=$3
  shift 3
  timed "${kd[@]}" decode --config "$config" "${jobs[@]}" --priors "$data/senones" \
    --lang "$data/lang" --dev "$(senone_cuts "$dev_split")" --test "$(senone_cuts "$test_split")" \
    "${scores[@]}" "$@" "$exp/graph" "$out"
}

# decode_model NAME MODEL: decode_system of MODEL into exp/NAME with the config's decoder
# settings for NAME (protocol.decode_overrides; asr-kd protocol decode_options:NAME).
decode_model() {
  local opts
  read -ra opts <<< "$(protocol "decode_options:$1")"
  decode_system --model "$2" "$exp/$1" "${opts[@]}"
}

current=2
if [[ $stage -le 2 && $stop_stage -ge 2 ]]; then
  log "Stage 2: 80-dim log-mel fbank features"
  timed "${kd[@]}" compute-features --config "$config" --section features "${par[@]}" \
    --stats-split "$train_split" "$data/manifests" "$data/fbank"
  for set in "${eval_sets[@]}"; do
    timed "${kd[@]}" compute-features --config "$config" --section features "${par[@]}" \
      --stats-split "$set" "$data/manifests_$set" "$data/fbank_$set"
  done
fi

current=3
if [[ $stage -le 3 && $stop_stage -ge 3 ]]; then
  log "Stage 3: 13-dim MFCC features (for the GMM stage)"
  timed "${kd[@]}" compute-features --config "$config" --section mfcc "${par[@]}" \
    --stats-split "$train_split" "$data/manifests" "$data/mfcc"
fi

current=4
if [[ $stage -le 4 && $stop_stage -ge 4 ]]; then
  log "Stage 4: lang directory (lexicon, L.fst) for the $train_split vocabulary ${lang_opts[*]}"
  timed "${kd[@]}" prepare-lang --words-from "$(manifest supervisions "$train_split")" \
    "${lang_opts[@]}" "$data/lang"
fi

current=5
if [[ $stage -le 5 && $stop_stage -ge 5 ]]; then
  if [[ -n ${lm_arpa:-} ]]; then
    log "Stage 5: G.fst from $lm_arpa, $dev_split perplexity"
    timed "${kd[@]}" import-lm --dev "$(manifest supervisions "$dev_split")" \
      "$lm_arpa" "$data/lang" "$data/lm"
  else
    log "Stage 5: Kneser-Ney 3-gram on $lm_text ${lm_opts[*]}, G.fst, $dev_split perplexity"
    timed "${kd[@]}" train-lm --config "$config" "${lm_opts[@]}" \
      --dev "$(manifest supervisions "$dev_split")" "$lm_text" "$data/lang" "$data/lm"
  fi
fi

current=6
if [[ $stage -le 6 && $stop_stage -ge 6 ]]; then
  log "Stage 6: monophone GMM-HMM (flat start, EM with Viterbi realignment)"
  timed "${kd[@]}" train-mono --config "$config" --set "split=$train_split" "${par[@]}" \
    "$data/mfcc" "$data/lang" "$exp/mono"
fi

current=7
if [[ $stage -le 7 && $stop_stage -ge 7 ]]; then
  log "Stage 7: forced alignment of every split"
  timed "${kd[@]}" align --config "$config" "${par[@]}" \
    "$data/mfcc" "$data/lang" "$exp/mono" "$exp/mono_ali"
fi

current=8
if [[ $stage -le 8 && $stop_stage -ge 8 ]]; then
  log "Stage 8: phonetic decision tree (senones); tri-phone GMM (tri1) on it, its alignment"
  timed "${kd[@]}" build-tree --config "$config" --split "$train_split" "${par[@]}" \
    "$exp/mono_ali" "$data/mfcc" "$data/lang" "$exp/tree"
  timed "${kd[@]}" train-tri --config "$config" --section tri1 --set "split=$train_split" \
    "${par[@]}" \
    "$exp/mono_ali" "$data/mfcc" "$data/lang" "$exp/tree" "$exp/tri1"
  timed "${kd[@]}" align --config "$config" "${par[@]}" \
    "$data/mfcc" "$data/lang" "$exp/tri1" "$exp/tri1_ali"
  if [[ $tri2 == yes ]]; then
    # Kaldi's train_lda_mllt.sh: LDA on spliced MFCC with tri1's senones as classes, a
    # tree on those features (exp/tree2, used by tri2 alone: senone targets, the graph and
    # the DNNs stay on exp/tree), tri2 with MLLT re-estimated on Kaldi's iterations
    timed "${kd[@]}" estimate-lda --config "$config" --set "split=$train_split" "${par[@]}" \
      "$exp/tri1_ali" "$data/mfcc" "$data/lang" "$exp/tree" "$exp/tri2_lda"
    timed "${kd[@]}" build-tree --config "$config" --split "$train_split" "${par[@]}" \
      --transform "$exp/tri2_lda" "$exp/tri1_ali" "$data/mfcc" "$data/lang" "$exp/tree2"
    timed "${kd[@]}" train-tri --config "$config" --section tri2 --set "split=$train_split" \
      "${par[@]}" --transform "$exp/tri2_lda" \
      "$exp/tri1_ali" "$data/mfcc" "$data/lang" "$exp/tree2" "$exp/tri2"
    timed "${kd[@]}" align --config "$config" "${par[@]}" \
      "$data/mfcc" "$data/lang" "$exp/tri2" "$exp/tri2_ali"
  fi
fi

current=9
if [[ $stage -le 9 && $stop_stage -ge 9 ]]; then
  log "Stage 9: per-frame senone targets on the fbank cuts, senone priors"
  timed "${kd[@]}" senone-targets --train-split "$train_split" \
    "$exp/${alignment}_ali" "$data/fbank" "$exp/tree" "$data/senones"
fi

current=10
if [[ $stage -le 10 && $stop_stage -ge 10 ]]; then
  log "Stage 10: HCLG decoding graph (tree + lang + 3-gram)"
  timed "${kd[@]}" make-graph --config "$config" "$data/lang" "$data/lm" "$exp/tree" "$exp/graph"
fi

current=11
if [[ $stage -le 11 && $stop_stage -ge 11 ]]; then
  log "Stage 11: oracle check: decode dev and test from the reference senone alignments"
  decode_system --oracle "$data/senones" "$exp/oracle"
fi

current=12
if [[ $stage -le 12 && $stop_stage -ge 12 ]]; then
  log "Stage 12: baseline: one DNN on the hard senone targets"
  timed "${kd[@]}" train --config "$config" --section teacher --set seed=0 "${splits[@]}" \
    "$data/senones" "$data/fbank" "$exp/baseline"
fi

if [[ $realign == yes && $stage -le 12 && $stop_stage -ge 12 ]]; then
  log "Stage 12 (--realign yes): align with the baseline DNN; a baseline on each alignment"
  timed "${kd[@]}" align --config "$config" "${par[@]}" --model "$exp/baseline" \
    "$data/fbank" "$data/lang" "$data/senones" "$exp/baseline_ali"
  # the DNN's alignment and every other finished one (mono, tri1, tri2) besides the
  # targets' own ($alignment): senone targets on exp/tree, a baseline trained on them
  # (exp/baseline_realigned for the DNN's, exp/baseline_<ali> for the others)
  compared=("$exp/baseline")
  for ali in baseline mono tri1 tri2; do
    [[ $ali != "$alignment" && -f $exp/${ali}_ali/.done.json ]] || continue
    name=baseline_$ali
    [[ $ali == baseline ]] && name=baseline_realigned
    timed "${kd[@]}" senone-targets --train-split "$train_split" \
      "$exp/${ali}_ali" "$data/fbank" "$exp/tree" "$data/senones_${ali}_ali"
    timed "${kd[@]}" train --config "$config" --section teacher --set seed=0 "${splits[@]}" \
      "$data/senones_${ali}_ali" "$data/fbank" "$exp/$name"
    decode_system --model "$exp/$name" "$exp/$name" --priors "$data/senones_${ali}_ali"
    compared+=("$exp/$name")
  done
  # frame accuracy of every baseline against one fixed reference ($data/senones)
  timed "${kd[@]}" eval-ensemble --method arithmetic --split "$dev_split" --split "$test_split" \
    --out-dir "$exp/eval/realigned" "$data/senones" "${compared[@]}"
fi

current=13
if [[ $stage -le 13 && $stop_stage -ge 13 ]]; then
  log "Stage 13: the teachers: N DNNs that differ in their initialisation seed"
  timed "${kd[@]}" train-ensemble --config "$config" --train-section teacher "${splits[@]}" \
    --num-jobs "$train_jobs" "$data/senones" "$data/fbank" "$exp"
fi

# the ensemble's members: exp/teacher<N>, and first the baseline when the protocol says
# so (protocol.baseline_in_ensemble)
trained=()
for d in "$exp"/teacher[0-9]*; do [[ -f $d/model.pt ]] && trained+=("$d"); done
teachers=("${trained[@]}")
[[ $(protocol baseline_in_ensemble) == yes ]] && teachers=("$exp/baseline" "${trained[@]}")
teacher_args=()
for t in "${teachers[@]}"; do teacher_args+=(--teacher "$t"); done
ensemble_spec="ensemble:$(IFS=,; echo "${teachers[*]}")"
# the full-data students' settings (protocol.student_overrides: stages 16, 23, 25, 27)
read -ra student_opts <<< "$(protocol student_options)"
student_cache=(--cache-dir "$data/soft")
[[ $(protocol student_source) == cache ]] || student_cache=()

current=14
if [[ $stage -le 14 && $stop_stage -ge 14 ]]; then
  log "Stage 14: dev/test frame accuracy of every teacher and the ensemble"
  timed "${kd[@]}" eval-ensemble --method arithmetic --method geometric \
    --split "$dev_split" --split "$test_split" \
    --out-dir "$exp/eval/ensemble" "$data/senones" "${teachers[@]}"
fi

current=15
if [[ $stage -le 15 && $stop_stage -ge 15 ]]; then
  log "Stage 15: cache the ensemble's top-k soft targets at temperature T"
  timed "${kd[@]}" cache-soft-targets --config "$config" --split "$train_split" \
    "${teacher_args[@]}" "$data/senones" "$data/fbank" "$data/soft"
fi

current=16
if [[ $stage -le 16 && $stop_stage -ge 16 ]]; then
  log "Stage 16: distil the ensemble into students of the same size (protocol.student_seeds)"
  # protocol.student_overrides: their settings beside the student and distill sections,
  # and their targets: the cache, or the teachers run on every (perturbed) window
  for seed in "${student_seeds[@]}"; do
    name=$(protocol "system:student::$seed")
    bg_job "$name" "${kd[@]}" distill --config "$config" --set "student.seed=$seed" \
      "${student_opts[@]}" "${splits[@]}" "${student_cache[@]}" "${teacher_args[@]}" \
      "$data/senones" "$data/fbank" "$exp/$name"
  done
fi

current=17
if [[ $stage -le 17 && $stop_stage -ge 17 ]]; then
  log "Stage 17: fractions of the training data: hard targets vs the ensemble's soft targets"
  # the soft models' distill settings (protocol.soft_fraction_distill), and their targets:
  # the cache, or the teachers run on every (perturbed) window
  read -ra frac_opts <<< "$(protocol soft_fraction_options)"
  frac_cache=(--cache-dir "$data/soft")
  [[ $(protocol soft_fraction_source) == cache ]] || frac_cache=()
  for f in "${fractions[@]}"; do
    read -ra seeds <<< "$(protocol "subset_seeds:$f")"
    for s in "${seeds[@]}"; do
      subset=(--set "train_fraction=$f" --set "subset_seed=$s")
      hard=$(protocol "system:hard:$f:$s")
      soft=$(protocol "system:soft:$f:$s")
      bg_job "$hard" "${kd[@]}" train --config "$config" --section hard_3pct "${subset[@]}" \
        "${splits[@]}" "$data/senones" "$data/fbank" "$exp/$hard"
      bg_job "$soft" "${kd[@]}" distill --config "$config" --train-section student_3pct \
        "${splits[@]}" --set "student_3pct.train_fraction=$f" --set "student_3pct.subset_seed=$s" \
        "${frac_opts[@]}" "${frac_cache[@]}" "${teacher_args[@]}" "$data/senones" \
        "$data/fbank" "$exp/$soft"
    done
  done
fi
# stages 16 and 17's trainings share one pool of train_jobs background jobs
wait_jobs

current=18
if [[ $stage -le 18 && $stop_stage -ge 18 ]]; then
  log "Stage 18: decode dev (LM weight tuned) and test (dev's LM weight) for every system"
  decoded=("${trained[@]##*/}")
  n_decoded=$(protocol decoded_teachers)  # empty: all
  [[ -z $n_decoded ]] || decoded=("${decoded[@]:0:n_decoded}")
  systems=(baseline "${decoded[@]}" ensemble)
  for seed in "${student_seeds[@]}"; do systems+=("$(protocol "system:student::$seed")"); done
  for f in "${decode_fractions[@]}"; do
    systems+=("$(protocol "system:hard:$f:${subset_seeds[0]}")")
    systems+=("$(protocol "system:soft:$f:${subset_seeds[0]}")")
  done
  for sys in "${systems[@]}"; do
    model=$exp/$sys
    [[ $sys == ensemble ]] && model=$ensemble_spec
    decode_model "$sys" "$model"
  done
  # the extra test sets and splits: protocol.extra_set_systems at dev's point
  read -ra extra_systems <<< "$(protocol extra_set_systems)"
  extra_cuts=()
  for set in "${eval_sets[@]}"; do extra_cuts+=("$data/fbank_$set/${corpus}_cuts_$set.jsonl.gz"); done
  for split in "${extra_test_splits[@]}"; do extra_cuts+=("$(senone_cuts "$split")"); done
  for cuts in "${extra_cuts[@]}"; do
    name=$(basename "$cuts" .jsonl.gz)
    name=${name#"${corpus}_cuts_"}
    for sys in "${extra_systems[@]}"; do
      [[ $sys == student ]] && sys=$(protocol "system:student::${student_seeds[0]}")
      model=$exp/$sys
      [[ $sys == ensemble ]] && model=$ensemble_spec
      read -ra opts <<< "$(protocol "decode_options:$sys")"
      timed "${kd[@]}" decode --config "$config" "${jobs[@]}" "${opts[@]}" --model "$model" \
        --priors "$data/senones" --lang "$data/lang" --tuned-on "$exp/$sys/decode_dev" \
        "$cuts" "$exp/graph" "$exp/$sys/decode_$name"
    done
  done
fi

# Stages 19-21: the paper's second method, specialists over confusable senone clusters.
# The generalist is the baseline: one full model on the hard targets.
current=19
if [[ $specialists == yes && $stage -le 19 && $stop_stage -ge 19 ]]; then
  log "Stage 19: senone clusters from the generalist's predictions; one specialist each"
  timed "${kd[@]}" train-specialists --config "$config" "${jobs[@]}" "${splits[@]}" \
    "$exp/baseline" "$data/senones" "$data/fbank" "$exp/specialists"
fi

current=20
if [[ $specialists == yes && $stage -le 20 && $stop_stage -ge 20 ]]; then
  log "Stage 20: distil the generalist + specialists into one student"
  timed "${kd[@]}" cache-soft-targets --config "$config" --split "$train_split" \
    --teacher "$exp/specialists" \
    "$data/senones" "$data/fbank" "$data/soft_specialists"
  timed "${kd[@]}" distill --config "$config" --cache-dir "$data/soft_specialists" "${splits[@]}" \
    --teacher "$exp/specialists" "$data/senones" "$data/fbank" "$exp/specialists_student"
fi

current=21
if [[ $specialists == yes && $stage -le 21 && $stop_stage -ge 21 ]]; then
  log "Stage 21: frame accuracy in the clusters; decode the specialist systems"
  timed "${kd[@]}" eval-specialists --split "$dev_split" --split "$test_split" \
    --system "ensemble=$ensemble_spec" \
    --system "specialists_student=$exp/specialists_student" \
    --out-dir "$exp/eval/specialists" "$exp/specialists" "$data/senones"
  for sys in specialists specialists_student; do
    decode_model "$sys" "$exp/$sys"
  done
fi

# Stages 22-23 (optional, --sweeps yes): the paper's sweeps.
current=22
if [[ $sweeps == yes && $stage -le 22 && $stop_stage -ge 22 ]]; then
  log "Stage 22: ensembles of 1, 2, 4, ... teachers: frame accuracy and WER"
  n=${#teachers[@]}
  for ((k = 2; k < n; k *= 2)); do
    members=("${teachers[@]:0:k}")
    spec="ensemble:$(IFS=,; echo "${members[*]}")"
    timed "${kd[@]}" eval-ensemble --method arithmetic --split "$dev_split" \
      --split "$test_split" --out-dir "$exp/eval/ensemble_$k" \
      "$data/senones" "${members[@]}"
    decode_model "ensemble_$k" "$spec"
  done
fi

current=23
if [[ $sweeps == yes && $stage -le 23 && $stop_stage -ge 23 ]]; then
  log "Stage 23: students at other temperatures and soft-target weights (exp/sweeps)"
  # A cache per temperature (alpha only weighs the loss). At T >= 5 the top 10 senones
  # hold too little of the flattened mass: those caches keep 40.
  # The student of stage 16 is the point T = 2, alpha = 0.667 (the paper's weighting),
  # unless protocol.student_overrides teaches it otherwise: then the sweep trains it too.
  points=("1 0.667" "5 0.667" "10 0.667" "2 0.25" "2 0.5" "2 0.9" "2 1.0")
  [[ ${#student_opts[@]} -eq 0 ]] || points+=("2 0.667")
  for point in "${points[@]}"; do
    read -r t a <<< "$point"
    k=10
    [[ $t -ge 5 ]] && k=40
    timed "${kd[@]}" cache-soft-targets --config "$config" --set "temperature=$t" --set "k=$k" \
      --split "$train_split" \
      "${teacher_args[@]}" "$data/senones" "$data/fbank" "$data/soft_T$t"
    timed "${kd[@]}" distill --config "$config" --set "temperature=$t" --set "alpha=$a" \
      --set "k=$k" "${splits[@]}" --cache-dir "$data/soft_T$t" "${teacher_args[@]}" "$data/senones" \
      "$data/fbank" "$exp/sweeps/student_T${t}_a${a}"
  done
  [[ ${#student_opts[@]} -eq 0 && -d $exp/student ]] &&
    ln -sfn ../student "$exp/sweeps/student_T2_a0.667"
  "${kd[@]}" report --data-dir "$data/senones" "${report_splits[@]}" "$exp/sweeps" \
    "$exp/sweeps/report"
fi

current=24
if [[ $stage -le 24 && $stop_stage -ge 24 ]]; then
  log "Stage 24: the report (RESULTS.md, results.json, plots)"
  timed "${kd[@]}" report --data-dir "$data/senones" "${report_splits[@]}" "${voice_splits[@]}" \
    "$exp" "$exp/report"
fi

# Stages 25-27 (optional, --transfer yes): knowledge that reaches the student without
# labels (an omitted phone; untranscribed audio). Stage 27 redoes the report.
current=25
if [[ $transfer == yes && $stage -le 25 && $stop_stage -ge 25 ]]; then
  phone=$(asr-kd transfer-config --config "$config" omit_phone 2>/dev/null)
  log "Stage 25: $phone left out of the transfer set: a hard-target control and a student"
  bg_job omit_control "${kd[@]}" train --config "$config" --section teacher --set seed=0 \
    --set "omit_phone=$phone" "${splits[@]}" "$data/senones" "$data/fbank" "$exp/omit_control"
  # taught as stage 16's students are (protocol.student_overrides), the phone aside
  bg_job omit_student "${kd[@]}" distill --config "$config" --set "student.omit_phone=$phone" \
    "${student_opts[@]}" "${splits[@]}" "${student_cache[@]}" "${teacher_args[@]}" \
    "$data/senones" "$data/fbank" "$exp/omit_student"
  wait_jobs
  timed "${kd[@]}" eval-omitted-phone --config "$config" --dev-split "$dev_split" \
    --test-split "$test_split" --system "student=$exp/omit_student" \
    --system "control=$exp/omit_control" --system "full=$exp/student" \
    "$data/senones" "$exp/eval/omitted_phone"
  for sys in omit_student omit_control; do decode_model "$sys" "$exp/$sys"; done
  for name in student control; do
    decode_system --model "$exp/eval/omitted_phone/${name}_bias_corrected/model.pt" \
      "$exp/eval/omitted_phone/${name}_bias_corrected"
  done
fi

current=26
if [[ $transfer == yes && $stage -le 26 && $stop_stage -ge 26 ]]; then
  log "Stage 26: untranscribed audio (transfer.unlabelled_factor x the training audio), features"
  timed "${kd[@]}" synth-unlabelled --config "$config" "${par[@]}" "$data/unlabelled/corpus"
  timed "${kd[@]}" prepare synth "$data/unlabelled/corpus" "$data/unlabelled/manifests"
  timed "${kd[@]}" compute-features --config "$config" --section features "${par[@]}" \
    "$data/unlabelled/manifests" "$data/unlabelled/fbank"
fi

current=27
if [[ $transfer == yes && $stage -le 27 && $stop_stage -ge 27 ]]; then
  log "Stage 27: the ensemble labels the untranscribed audio; a student on both; the report"
  timed "${kd[@]}" unlabelled-set --train-split "$train_split" "$data/senones" \
    "$data/unlabelled/fbank" "$data/senones_unlab"
  # taught as stage 16's students are (protocol.student_overrides): from a cache of the
  # ensemble's targets on both sets, or the teachers on the fly
  unlab_cache=()
  if [[ $(protocol student_source) == cache ]]; then
    timed "${kd[@]}" cache-soft-targets --config "$config" --split "$train_split" \
      "${teacher_args[@]}" "$data/senones_unlab" "$data/fbank" "$data/soft_unlab"
    unlab_cache=(--cache-dir "$data/soft_unlab")
  fi
  timed "${kd[@]}" distill --config "$config" "${student_opts[@]}" "${splits[@]}" \
    "${unlab_cache[@]}" "${teacher_args[@]}" "$data/senones_unlab" "$data/fbank" \
    "$exp/student_unlab"
  decode_model student_unlab "$exp/student_unlab"
  "${kd[@]}" report --data-dir "$data/senones" "${report_splits[@]}" "${voice_splits[@]}" \
    "$exp" "$exp/report"
fi

log "Done: stages $stage..$stop_stage finished under $work_dir"
