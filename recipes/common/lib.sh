# The recipes' shared options and helpers (sourced by recipes/<corpus>/run.sh).
#
# A recipe sets recipe_dir and its default config, sources this file, parses its own
# options and hands the rest to shared_option, then calls setup_recipe. After its
# preparation stages (0-1) it sets the corpus's names and sources stages.sh.

stage=0
stop_stage=100
work_dir=$recipe_dir
nj=2
dask_scheduler=
specialists=auto
sweeps=auto
alignment=tri1
tri2=auto
realign=no
transfer=auto

# The options every recipe takes (see shared_usage). shared_option OPTION VALUE sets one;
# an option it does not know is refused with the recipe's name.
shared_usage="  [--stage N] [--stop-stage M] [--work-dir DIR] [--nj N] [--dask-scheduler ADDR]
  [--specialists yes|no] [--sweeps yes|no] [--alignment NAME] [--tri2 yes|no]
  [--realign yes|no] [--transfer yes|no]
--specialists: stages 19-21 (generalist + specialists, their student); default: the
  config's protocol.specialists.
--sweeps: optional stages 22-23 (ensemble size; temperature and alpha); default: the
  config's protocol.sweeps.
Which students, data fractions and seeds are trained and decoded is the config's
protocol: section (asr-kd protocol --config C KEY; see asr_kd/protocol.py).
--alignment: the alignment the senone targets (stage 9) come from, exp/NAME_ali:
  tri1 (default), tri2, mono, or a model's alignment (asr-kd align --model).
--tri2: stage 8 also trains tri2 (LDA+MLLT, Kaldi's train_lda_mllt.sh) and its
  alignment exp/tri2_ali; default: yes when --alignment tri2.
--realign: after stage 12, align with the baseline DNN (exp/baseline_ali), and train a
  baseline on it (exp/baseline_realigned) and on every other finished alignment
  (exp/baseline_mono, _tri1, _tri2), each decoded and scored against the stage-9 targets
  (exp/eval/realigned); default no.
--transfer: optional stages 25-27 (an omitted phone; untranscribed audio); default: the
  config's transfer.enabled."
shared_option() {
  if [[ $# -lt 2 ]]; then
    echo "$0: option $1 takes a value" >&2
    exit 1
  fi
  case $1 in
    --stage) stage=$2 ;;
    --stop-stage) stop_stage=$2 ;;
    --config) config=$2 ;;
    --work-dir) work_dir=$2 ;;
    --nj) nj=$2 ;;
    --dask-scheduler) dask_scheduler=$2 ;;
    --specialists) specialists=$2 ;;
    --sweeps) sweeps=$2 ;;
    --alignment) alignment=$2 ;;
    --tri2) tri2=$2 ;;
    --realign) realign=$2 ;;
    --transfer) transfer=$2 ;;
    *) echo "$0: unknown option $1" >&2; exit 1 ;;
  esac
}

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') ($fname:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

timed() {
  local start=$SECONDS
  "$@"
  log "stage $current took $((SECONDS - start)) s"
}

# Independent trainings run as up to protocol.train_jobs background jobs of one thread
# each, as Kaldi's recipes run jobs with `&` and `wait` (on 2 CPU cores two one-thread
# trainings do 1.47x the frames of one two-thread training: bench/RESULTS.md).
# bg_job NAME CMD...: runs CMD once fewer than train_jobs jobs run, its output and its time
# in $exp/log/NAME.log (train_jobs 1: `timed CMD` in the foreground, as any command).
# wait_jobs: waits for them all; if any failed, prints the end of each failed job's log
# and exits 1. Ctrl-C, a TERM or an error of the recipe stops the running jobs with a
# TERM (asr-kd removes its temporary output and exits 143): background jobs of a script
# ignore Ctrl-C themselves.
bg_pids=()
bg_names=()
bg_job() {
  local name=$1
  shift
  if [[ $train_jobs -le 1 ]]; then
    timed "$@"
    return
  fi
  while [[ $(jobs -rp | wc -l) -ge $train_jobs ]]; do wait -n || true; done
  [[ ${#bg_pids[@]} -gt 0 ]] || { trap 'stop_jobs; exit 130' INT TERM; trap stop_jobs EXIT; }
  log "$name: started in the background (one thread; log: $exp/log/$name.log)"
  (
    export OMP_NUM_THREADS=1
    start=$SECONDS
    "$@" &
    child=$!
    trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 143' TERM
    if wait "$child"; then rc=0; else rc=$?; fi
    log "stage $current took $((SECONDS - start)) s"
    exit $rc
  ) > "$exp/log/$name.log" 2>&1 &
  bg_pids+=($!)
  bg_names+=("$name")
}

stop_jobs() {
  local pid
  for pid in "${bg_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${bg_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  bg_pids=()
  bg_names=()
}

wait_jobs() {
  local i name failed=()
  for i in "${!bg_pids[@]}"; do
    name=${bg_names[$i]}
    if wait "${bg_pids[$i]}"; then
      log "$name: $(grep -h ' took ' "$exp/log/$name.log" | tail -n 1 | sed 's/.*stage/stage/')"
    else
      failed+=("$name")
      echo "--- the end of $exp/log/$name.log:" >&2
      tail -n 15 "$exp/log/$name.log" >&2
    fi
  done
  bg_pids=()
  bg_names=()
  if [[ ${#failed[@]} -gt 0 ]]; then
    log "stage $current: ${failed[*]} failed (logs in $exp/log/)" >&2
    exit 1
  fi
}

# setup_recipe SCRIPT: checks the arguments (recipes/check_args.sh), resolves the config
# and the protocol, makes W/data and W/exp; sets config, data, exp, jobs, par, kd and the
# protocol's lists.
setup_recipe() {
  source "$recipe_dir/../check_args.sh"
  config=$(check_recipe_args "$1" "$stage" "$stop_stage" "$config" "$recipe_dir/conf" "$work_dir")
  [[ $specialists == auto ]] && specialists=$(protocol specialists)
  [[ $sweeps == auto ]] && sweeps=$(protocol sweeps)
  [[ $tri2 == auto ]] && { [[ $alignment == tri2 ]] && tri2=yes || tri2=no; }
  [[ $transfer == auto ]] && transfer=$(asr-kd transfer-config --config "$config" enabled 2>/dev/null)
  read -ra student_seeds <<< "$(protocol student_seeds)"
  read -ra fractions <<< "$(protocol fractions)"
  read -ra subset_seeds <<< "$(protocol subset_seeds)"
  read -ra decode_fractions <<< "$(protocol decode_fractions)"
  train_jobs=$(protocol train_jobs)
  data=$work_dir/data
  exp=$work_dir/exp
  mkdir -p "$data" "$exp/log"
  jobs=(--num-jobs "$nj")  # local processes (decode, train-specialists)
  par=("${jobs[@]}")  # ... or a Dask cluster (corpus, features, GMM stages)
  [[ -n $dask_scheduler ]] && par+=(--dask-scheduler "$dask_scheduler")
  kd=(asr-kd --log-file "$exp/log/run.log")
}

protocol() { asr-kd protocol --config "$config" "$@" 2>/dev/null; }
