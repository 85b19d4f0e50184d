#!/usr/bin/env bash
# One prepared check for a GPU machine (H100/H200, no network): gpu-marked tests, EfficientViT-SAM
# encoder/decoder throughput (bf16 and fp16, compiled and not), GroundingDINO images/s at 800x1333,
# and `autolabel label --random-weights` end to end on synthetic images (embedded SQLite).
# Writes gpu_check.json, gpu_check.txt (the table) and gpu_check.log into the output folder.
#
#   bench/gpu_check.sh [OUT_DIR]          on the GPU machine (OUT_DIR default: $OUT, else
#                                         bench/results/gpu_check); about 7 minutes
#   bench/gpu_check.sh --cpu [OUT_DIR]    small sizes on the CPU (L0, batch 1-2, a few images)
#   bench/gpu_check.sh --fetch-wheels     here, with PyPI: the wheels the GPU image lacks, into
#                                         bench/results/gpu-wheels (carry that folder there)
#
# A failing step is recorded in the JSON and the next step still runs; the exit code is non-zero
# when any step failed. See bench/README.md.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=gpu
OUT_DIR="${OUT:-}"
for arg in "$@"; do
  case "$arg" in
    --cpu) MODE=cpu ;;
    --fetch-wheels) MODE=fetch ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "gpu_check: unknown option $arg" >&2; exit 2 ;;
    *) OUT_DIR="$arg" ;;
  esac
done
WHEELS="${GPU_CHECK_WHEELS:-$ROOT/bench/results/gpu-wheels}"
if [ "$MODE" = fetch ]; then
  exec "$ROOT/.venv/bin/python" "$ROOT/bench/_gpu_env.py" wheels "$WHEELS"
fi

# Extra flags for `autolabel label`, appended as given (word-split), e.g. backend selection:
# GPU_CHECK_LABEL_FLAGS="--segmenter-backend torch --detector-precision bf16".
GPU_CHECK_LABEL_FLAGS="${GPU_CHECK_LABEL_FLAGS:-}"
if [ "$MODE" = gpu ]; then
  DEVICE=cuda DTYPES="bf16 fp16" VARIANTS="l0 l1 l2 xl0 xl1" BATCHES="1 8 32 64" BOXES="1 16 64"
  COMPILE_VARIANTS="${GPU_CHECK_COMPILE_VARIANTS:-l0}" COMPILE_BATCHES="1 8 32 64"
  TIMING="--warmup 2 --repeats 5" DET_DTYPES="float32 bfloat16 float16" DET_BATCHES="1 4 8"
  DET_HW="800 1333" DET_REPEATS=5 IMAGES="${GPU_CHECK_IMAGES:-300}" LABEL_BATCH=8
  BUDGET_S="${GPU_CHECK_BUDGET_S:-440}" RUNTIMES=auto CAP_SCALE=1
else
  DEVICE=cpu DTYPES="fp32" VARIANTS="l0" BATCHES="1 2" BOXES="1 4"
  COMPILE_VARIANTS="l0" COMPILE_BATCHES="1" TIMING="--warmup 1 --repeats 2"
  DET_DTYPES="float32" DET_BATCHES="1 2" DET_HW="320 480" DET_REPEATS=1
  IMAGES="${GPU_CHECK_IMAGES:-2}" LABEL_BATCH=2 BUDGET_S="${GPU_CHECK_BUDGET_S:-420}" RUNTIMES=none
  CAP_SCALE=3  # the 2-core machines are often shared: the total budget is what bounds a step
fi
OUT_DIR="${OUT_DIR:-$ROOT/bench/results/gpu_check}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
LOG="$OUT_DIR/gpu_check.log"
: >"$LOG"
printf 'step\treturncode\tseconds\ttimeout_s\n' >"$WORK/steps.tsv"
export PREFECT_SERVER_ANALYTICS_ENABLED=false PYTHONUNBUFFERED=1
START=$(date +%s)

# The Python: GPU_CHECK_PYTHON, else the project's .venv, else python3 (the GPU image's) with
# the carried wheels installed into a temporary folder and the checkout mapped as `autolabel`.
PY="${GPU_CHECK_PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi
export ROOT PY WORK MODE DEVICE RUNTIMES BOXES TIMING IMAGES LABEL_BATCH GPU_CHECK_LABEL_FLAGS

seconds_since() {  # seconds_since NANOSECONDS: elapsed seconds, 3 decimals
  awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'
}

setup_env() {  # runs in this shell (it exports PYTHONPATH for the later steps)
  if compgen -G "$WHEELS/*.whl" >/dev/null && ! "$PY" -c "import prefect" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --target "$WORK/site" "$WHEELS"/*.whl || return 1
  fi
  export PYTHONPATH="$WORK/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  if ! "$PY" -c "import autolabel.models" 2>/dev/null; then
    "$PY" "$ROOT/bench/_gpu_env.py" shim "$WORK/site" || return 1
  fi
  "$PY" -c "import autolabel.flows.cli.app, torch; print('torch', torch.__version__, \
'cuda', torch.cuda.is_available())"
}

# step NAME CAP_S COMMAND...: run COMMAND (a program or a function below) with a timeout of CAP_S
# seconds, cut so that every later step keeps RESERVE_S seconds of the budget; its output goes
# to the log, its outcome to steps.tsv. A failure never stops the script.
RESERVE_S=40
STEPS_LEFT=$((4 + 2 * $(wc -w <<<"$DTYPES")))
record() {  # record NAME RETURNCODE STARTED_NS LIMIT_S
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$(seconds_since "$3")" "$4" >>"$WORK/steps.tsv"
}
step() {
  local name=$1 cap=$(($2 * CAP_SCALE)) limit rc began
  shift 2
  STEPS_LEFT=$((STEPS_LEFT - 1))
  limit=$((BUDGET_S - ($(date +%s) - START) - STEPS_LEFT * RESERVE_S))
  [ "$limit" -gt "$cap" ] && limit=$cap
  [ "$limit" -lt 10 ] && limit=10
  printf '\n===== %s (limit %s s): %s\n' "$name" "$limit" "$*" >>"$LOG"
  echo "gpu_check: $name (limit $limit s)"
  began=$(date +%s%N)
  # timeout leads its own process group; what is left of it afterwards (a command that outlived
  # its killed parent while shutting down gracefully) is killed with it.
  timeout -k 10 "$limit" bash -c '"$@"' "$name" "$@" >>"$LOG" 2>&1 &
  local group=$!
  wait "$group"
  rc=$?
  kill -KILL -- "-$group" 2>/dev/null
  record "$name" "$rc" "$began" "$limit"
}

encoder() {  # encoder TAG DTYPE [flags...]: bench/model_throughput.py without the official model
  local tag=$1 dtype=$2
  shift 2
  # shellcheck disable=SC2086  # the size lists are meant to split
  "$PY" "$ROOT/bench/model_throughput.py" --device "$DEVICE" --dtype "$dtype" --no-official \
    --rounds 1 --runtimes "$RUNTIMES" --box-counts $BOXES $TIMING "$@" \
    --json "$WORK/encoder_$tag.json"
}

pipeline() {  # synthetic images -> `autolabel label --random-weights` on a fresh embedded home
  local width=1333 height=800 began rc device=auto
  [ "$MODE" = cpu ] && width=480 height=320 device=cpu
  "$PY" "$ROOT/bench/_gpu_check_report.py" images "$WORK/images" "$IMAGES" "$width" "$height" \
    || return 1
  local cli=("$PY" -c "import sys; from autolabel.flows.cli import main; main(sys.argv[1:])")
  local unset_autolabel=()
  for name in $(env | grep -o '^AUTOLABEL_[A-Z0-9_]*'); do unset_autolabel+=(-u "$name"); done
  began=$(date +%s%N)
  # shellcheck disable=SC2086  # GPU_CHECK_LABEL_FLAGS is a list of flags
  env "${unset_autolabel[@]}" AUTOLABEL_HOME="$WORK/home" PREFECT_HOME="$WORK/prefect" \
    AUTOLABEL_MODELS__DEVICE="$device" COLUMNS=160 \
    "${cli[@]}" label --source "file://$WORK/images" --dataset gpu-check \
    --prompts "person . car . dog" --random-weights --batch-size "$LABEL_BATCH" \
    $GPU_CHECK_LABEL_FLAGS
  rc=$?
  printf '{"wall_seconds": %s, "images": %s, "returncode": %s}\n' \
    "$(seconds_since "$began")" "$IMAGES" "$rc" >"$WORK/pipeline_wall.json"
  return "$rc"
}
export -f seconds_since encoder pipeline

echo "gpu_check: mode $MODE, output $OUT_DIR, python $PY"
STEPS_LEFT=$((STEPS_LEFT - 1))
began=$(date +%s%N)
printf '\n===== environment\n' >>"$LOG"
setup_env >>"$LOG" 2>&1
record environment $? "$began" 0
mapfile -t GPU_TESTS < <(grep -rl "pytest.mark.gpu" "$ROOT/tests" --include='*.py' | sort)
step tests 120 "$PY" -m pytest -m gpu -p no:xdist -q -o addopts="-ra --strict-markers" \
  --junitxml="$WORK/tests.xml" "${GPU_TESTS[@]:-$ROOT/tests/no-gpu-marked-test-found}"
for dtype in $DTYPES; do
  # shellcheck disable=SC2086
  step "encoder_$dtype" 110 encoder "$dtype" "$dtype" --variants $VARIANTS --batch-sizes $BATCHES
done
# shellcheck disable=SC2086
step detector 90 "$PY" "$ROOT/bench/detector_throughput.py" --device "$DEVICE" \
  --dtype $DET_DTYPES --batch-sizes $DET_BATCHES --image-hw $DET_HW --no-onnx \
  --repeats "$DET_REPEATS" --json "$WORK/detector.json"
step pipeline 180 pipeline
for dtype in $DTYPES; do
  # shellcheck disable=SC2086
  step "encoder_${dtype}_compiled" 150 encoder "${dtype}_compiled" "$dtype" \
    --torch-options fold_bn+channels_last+compile --variants $COMPILE_VARIANTS \
    --batch-sizes $COMPILE_BATCHES
done

"$PY" "$ROOT/bench/_gpu_check_report.py" summary --work "$WORK" --out "$OUT_DIR" --mode "$MODE" \
  --label-batch "$LABEL_BATCH" --total-seconds "$(($(date +%s) - START))"
status=$?
echo "gpu_check: $OUT_DIR/gpu_check.json (exit $status)"
exit "$status"
