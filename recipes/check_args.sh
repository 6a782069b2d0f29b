# Argument checks shared by the recipes' run.sh (sourced): a stage range that runs
# nothing, a config that does not exist, a work dir that is a file are refused with
# one line before any stage runs.
#
# check_recipe_args SCRIPT STAGE STOP_STAGE CONFIG CONF_DIR WORK_DIR
#   prints the config file to use (CONFIG itself, or CONF_DIR/CONFIG.yaml).
check_recipe_args() {
  local script=$1 stage=$2 stop_stage=$3 config=$4 conf_dir=$5 work_dir=$6 last
  # the recipe's own stages and the shared ones (common/stages.sh)
  last=$(cat "$script" "${BASH_SOURCE[0]%/*}/common/stages.sh" | grep -o 'stop_stage -ge [0-9]*' |
    awk '{print $3}' | sort -n | tail -1)
  if [[ ! $stage =~ ^[0-9]+$ || ! $stop_stage =~ ^[0-9]+$ ]]; then
    echo "$script: --stage and --stop-stage take stage numbers (0-$last), got '$stage' and '$stop_stage'" >&2
    return 1
  fi
  if (( stage > stop_stage || stage > last )); then
    echo "$script: --stage $stage --stop-stage $stop_stage runs no stage (stages are 0-$last)" >&2
    return 1
  fi
  if [[ -e $work_dir && ! -d $work_dir ]]; then
    echo "$script: --work-dir $work_dir is a file, not a directory" >&2
    return 1
  fi
  if [[ -f $config ]]; then
    echo "$config"
  elif [[ -f $conf_dir/$config.yaml ]]; then
    echo "$conf_dir/$config.yaml"
  else
    local known
    known=$(cd "$conf_dir" && ls -- *.yaml | sed 's/\.yaml$//' | paste -sd ' ')
    echo "$script: no config $config (not a file, nor $conf_dir/$config.yaml); the recipe's configs: $known" >&2
    return 1
  fi
}
