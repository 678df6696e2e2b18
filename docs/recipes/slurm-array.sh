#!/usr/bin/env bash
# xai shap over a folder of images as a Slurm job array: array task i explains the i-th of
# $SHARDS blocks of the images and writes $OUT/shard-i. Submit it, then the merge once every
# task has succeeded (slurm-merge.sh):
#
#   export MODEL=$PWD/model.onnx INPUT=$PWD/images OUT=$PWD/xai-results
#   jobid=$(sbatch --parsable docs/recipes/slurm-array.sh)
#   sbatch --dependency=afterok:"${jobid%%;*}" docs/recipes/slurm-merge.sh
#
# sbatch passes the submitting shell's environment to the tasks; every variable below has a
# default and can be set there. More shards: change --array and SHARDS together, e.g.
#   SHARDS=16 sbatch --array=0-15 docs/recipes/slurm-array.sh
# (`--array=0-15%4` runs at most 4 at a time). Rerun failed shards alone, e.g. shards 1 and 3:
#   SHARD=id sbatch --array=1,3 docs/recipes/slurm-array.sh
# (SHARD=id: the task id is the shard's index, as it is for xai's --shard auto/n too; SHARD=id
# skips the check that the array has SHARDS tasks). SHARD=i runs shard i without Slurm.
#
# Every shard runs the same command line but for --out and --shard: `xai merge` refuses shards
# whose parameters, seeds, inputs or model differ. The #SBATCH lines are comments to bash, so
# the script also runs as is with SLURM_ARRAY_TASK_ID set, e.g. to try it on one machine:
#   for i in 0 1 2 3; do SLURM_ARRAY_TASK_ID=$i bash docs/recipes/slurm-array.sh; done
#
#SBATCH --job-name=xai-shap
#SBATCH --array=0-3
#SBATCH --cpus-per-task=4
#SBATCH --mem=4G
#SBATCH --time=02:00:00
#SBATCH --output=xai-shap-%A_%a.out

set -euo pipefail

XAI="${XAI:-xai}"                  # the xai binary
MODEL="${MODEL:-model.onnx}"       # an ONNX file or a shipped model's name
INPUT="${INPUT:-images}"           # images, .npy arrays, or folders of them
OUT="${OUT:-xai-results}"          # the shards go to $OUT/shard-<i>
SHARDS="${SHARDS:-4}"              # the number of shards: as many as --array has tasks
SHARD="${SHARD:-auto}"             # auto, id (the task id is the shard) or i (see above)
XAI_ARGS="${XAI_ARGS:---seed 0}"   # more flags for xai shap, split on spaces (same for every shard)

fail() {
  echo "slurm-array.sh: $*" >&2
  exit 2
}
if [[ "$SHARD" == auto || "$SHARD" == id ]] && [[ -z "${SLURM_ARRAY_TASK_ID:-}" ]]; then
  fail "SLURM_ARRAY_TASK_ID is not set: submit with sbatch (an array job), or set SHARD=i"
fi
case "$SHARD" in
  auto)
    # xai reads the index itself: SLURM_ARRAY_TASK_ID (submit the array as --array=0-(SHARDS-1)).
    if [[ -n "${SLURM_ARRAY_TASK_COUNT:-}" && "$SLURM_ARRAY_TASK_COUNT" != "$SHARDS" ]]; then
      fail "the array has $SLURM_ARRAY_TASK_COUNT tasks but SHARDS=$SHARDS: set SHARDS to its" \
        "size, or SHARD=id to rerun some shards (their task ids are their indices)"
    fi
    index="$SLURM_ARRAY_TASK_ID"
    shard=auto
    ;;
  id) index="$SLURM_ARRAY_TASK_ID" shard="$SLURM_ARRAY_TASK_ID" ;;
  *) index="$SHARD" shard="$SHARD" ;;
esac

# xai's threads: the CPUs Slurm gave the task.
if [[ -n "${SLURM_CPUS_PER_TASK:-}" && -z "${RAYON_NUM_THREADS:-}" ]]; then
  export RAYON_NUM_THREADS="$SLURM_CPUS_PER_TASK"
fi

read -r -a extra <<< "$XAI_ARGS"
mkdir -p "$OUT"
"$XAI" shap --model "$MODEL" --input "$INPUT" --out "$OUT/shard-$index" \
  --shard "$shard/$SHARDS" --quiet ${extra[@]+"${extra[@]}"}
