#!/usr/bin/env bash
# KernelSHAP on a tabular ONNX model, xai-shap's `tabular` example against shap's KernelExplainer
# with onnxruntime, side by side in one run (docs/BENCHMARKS.md, "KernelSHAP on tables").
#
#   benches/shap_tabular_side_by_side.sh [python-with-shap-and-onnxruntime]
#
# For each background (50 rows; k-means summary of 10) and nsamples (200, 1000): xai's default
# estimator and its shap-compatible one (time per row from the example's own timer, best of 3),
# then shap (best/worst of 3 seeds), with every estimate's relative L2 error against the exact
# Shapley values (shap's full enumeration, 2^11 - 2 coalitions, on the same background).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
F=crates/xai-shap/tests/fixtures
OUT=${OUT:-target/shap-tabular-bench}
mkdir -p "$OUT"
if [ -z "${EX:-}" ]; then
  cargo build --release -q -p xai-shap --example tabular
  EX=${CARGO_TARGET_DIR:-target}/release/examples/tabular
fi
for kmeans in 0 10; do
  # xai's exact values on its own background (full enumeration): the reference for its estimates.
  # The k-means summary is seeded with --seed: the reference uses the seed of the estimates'
  # JSON files (the last of the three repetitions).
  kx=()
  [ "$kmeans" != 0 ] && kx+=(--kmeans "$kmeans")
  "$EX" --model $F/tabular_mlp.onnx --background $F/tabular_background50.csv \
    --explain $F/tabular_explain.csv --nsamples 2046 --seed 3 "${kx[@]}" \
    --out "$OUT/xai_exact_k${kmeans}.json" 2>/dev/null
  for ns in 200 1000; do
    files=()
    for est in default shap; do
      extra=()
      [ "$kmeans" != 0 ] && extra+=(--kmeans "$kmeans")
      best=""
      for rep in 1 2 3; do
        ms=$("$EX" --model $F/tabular_mlp.onnx --background $F/tabular_background50.csv \
          --explain $F/tabular_explain.csv --nsamples "$ns" --seed "$rep" --estimator "$est" \
          "${extra[@]}" --out "$OUT/xai_${est}_k${kmeans}_n${ns}.json" 2>&1 \
          | tr '\r' '\n' | sed -n 's/.*: \([0-9.]*\) ms per row/\1/p')
        best=$(printf '%s\n%s\n' "$best" "$ms" | grep . | sort -g | head -1)
      done
      echo "xai ($est estimator), kmeans=$kmeans, nsamples=$ns: best of 3 ${best} ms/row"
      files+=("$OUT/xai_${est}_k${kmeans}_n${ns}.json")
    done
    kargs=()
    [ "$kmeans" != 0 ] && kargs+=(--kmeans "$kmeans")
    "$PY" benches/python/shap_tabular_baseline.py --model $F/tabular_mlp.onnx \
      --background $F/tabular_background50.csv --explain $F/tabular_explain.csv \
      --nsamples "$ns" "${kargs[@]}" --repeats 3 --xai "${files[@]}" \
      --xai-reference "$OUT/xai_exact_k${kmeans}.json"
  done
done
