#!/usr/bin/env bash
# Gradient similarity over MNIST's training set, whole and in shards of the references
# (issue 30 item 5): one process on one core, then N shard processes pinned round-robin to the
# machine's cores (taskset), then `xai merge`; checks that the merged folder equals the whole
# run's byte for byte and prints the wall time of each step.
#
#   benches/shard_similarity.sh [N_REFERENCES] [N_INPUTS] [SHARD_COUNTS...]
#   benches/shard_similarity.sh 60000 10 2 4     # the numbers in docs/BENCHMARKS.md
#
# Needs `cargo build --release -p xai-cli -p xtask` (it builds them if missing) and taskset.
set -euo pipefail
cd "$(dirname "$0")/.."
refs=${1:-60000}
inputs=${2:-10}
shift $(( $# > 2 ? 2 : $# ))
counts=("$@")
[ ${#counts[@]} -eq 0 ] && counts=(2 4)
cargo build --release --locked -q -p xai-cli -p xtask
xai=target/release/xai
xtask=target/release/xtask
work=${WORK:-$(mktemp -d)}
cores=$(nproc)
echo "work folder $work; $cores cores; $refs references; $inputs inputs; $(uptime)"
"$xtask" mnist-npy --split train --count "$refs" --out "$work/train" > /dev/null
"$xtask" mnist-npy --split test --count "$inputs" --out "$work/test" > /dev/null
args=(similarity --model alibi_cnn --input "$work/test/images.npy"
    --reference "$work/train/images.npy" --reference-labels "$work/train/labels.npy"
    --precompute-grads --quiet)
seconds() { date +%s.%N; }
start=$(seconds)
RAYON_NUM_THREADS=1 taskset -c 0 "$xai" "${args[@]}" --out "$work/whole" > /dev/null
whole=$(echo "$(seconds) - $start" | bc)
echo "whole run, 1 process on 1 core: ${whole} s"
start=$(seconds)
"$xai" "${args[@]}" --out "$work/whole-all-cores" > /dev/null
echo "whole run, 1 process on all $cores cores: $(echo "$(seconds) - $start" | bc) s"
for n in "${counts[@]}"; do
    start=$(seconds)
    pids=()
    for i in $(seq 0 $((n - 1))); do
        RAYON_NUM_THREADS=1 taskset -c $((i % cores)) "$xai" "${args[@]}" \
            --out "$work/n$n/s$i" --shard "$i/$n" --shard-references > /dev/null &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    fit=$(echo "$(seconds) - $start" | bc)
    start=$(seconds)
    "$xai" merge $(for i in $(seq 0 $((n - 1))); do echo "$work/n$n/s$i"; done) \
        --out "$work/n$n/merged" > /dev/null
    merge=$(echo "$(seconds) - $start" | bc)
    diff -r "$work/whole" "$work/n$n/merged" > /dev/null
    echo "$n shards on $cores cores: shards ${fit} s, merge ${merge} s, merged = whole run (diff -r)"
done
