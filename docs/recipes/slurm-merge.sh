#!/usr/bin/env bash
# Merges the shards of slurm-array.sh ($OUT/shard-*) into $OUT/merged, exactly what one
# unsharded `xai shap` run writes. Submit it to run after every array task has succeeded:
#
#   jobid=$(sbatch --parsable docs/recipes/slurm-array.sh)
#   sbatch --dependency=afterok:"${jobid%%;*}" docs/recipes/slurm-merge.sh
#
# or run it by hand: `bash docs/recipes/slurm-merge.sh` (OUT as for the shards). `xai merge`
# checks the shards' manifest.json files: a missing, duplicated or mismatched shard is a
# one-line error, and nothing in $OUT/merged is overwritten.
#
#SBATCH --job-name=xai-merge
#SBATCH --cpus-per-task=1
#SBATCH --mem=2G
#SBATCH --time=00:30:00
#SBATCH --output=xai-merge-%j.out

set -euo pipefail

XAI="${XAI:-xai}"
OUT="${OUT:-xai-results}"

shopt -s nullglob
shards=("$OUT"/shard-*)
if (( ${#shards[@]} == 0 )); then
  echo "slurm-merge.sh: no shard folders in $OUT (shard-*)" >&2
  exit 2
fi
"$XAI" merge "${shards[@]}" --out "$OUT/merged"
