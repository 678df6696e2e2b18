#!/usr/bin/env bash
# PyTorch exports on xai-onnx's importer, tract and onnxruntime, and KernelSHAP on the MNIST CNN
# against lean shap + onnxruntime, side by side in one run (docs/BENCHMARKS.md, "ONNX exports
# against onnxruntime (issue 12 item 7)").
#
#   benches/onnx_side_by_side.sh [python-with-torch-onnx-onnxruntime-shap-scikit-image]
#
# Environment: OUT (folder for the exports and logs, default target/onnx-side-by-side), REPS
# (repeats of each timing, default 5), IMAGES (images KernelSHAP explains, default 5), SKIP_BUILD=1
# to use the release examples as they are.
#
# 1. benches/python/onnx_models_export.py writes mnist_cnn.onnx (PyTorch's MNIST example net with
#    `x.view(x.size(0), -1)`, two outputs, briefly trained on digits 0/1) and resnet18w.onnx
#    (ResNet-18 widths on 3x32x32, random weights), both by torch.onnx (opset 17, dynamic batch).
# 2. The model alone: xai-onnx's `import_timing` (importer and tract) and
#    benches/python/onnx_models_timing.py (onnxruntime; PyTorch autograd for the batch-1 input
#    gradient, which onnxruntime does not compute; batch 1 also on one torch thread, `torch-1t`):
#    predict on 1,000 images, predict on 1, input gradient on 1, medians.
# 3. KernelSHAP per image at nsamples = 1000 on mnist_cnn (SLIC 200 segments, labels 0 and 1,
#    background 0): xai-onnx's `shap_timing` against benches/python/shap_onnx_baseline.py --mode lean.
# 4. A table with the ratios to onnxruntime (model) and to lean shap (KernelSHAP).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
OUT=${OUT:-target/onnx-side-by-side}
REPS=${REPS:-5}
IMAGES=${IMAGES:-5}
mkdir -p "$OUT"
EXDIR=${CARGO_TARGET_DIR:-target}/release/examples
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release -q -p xai-onnx --example import_timing --example shap_timing
fi
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD)"
"$PY" benches/python/onnx_models_export.py "$OUT" | tee "$OUT/export.log"
echo "## model alone: xai-onnx (import_timing, $REPS repeats)"
"$EXDIR/import_timing" "$REPS" "$OUT/mnist_cnn.onnx" 1x28x28 "$OUT/resnet18w.onnx" 3x32x32 \
  | tee "$OUT/rust_model.log"
echo "## model alone: onnxruntime and PyTorch"
"$PY" benches/python/onnx_models_timing.py "$OUT" --repeats "$REPS" | tee "$OUT/py_model.log"
echo "## KernelSHAP, xai-onnx (shap_timing: $IMAGES images, nsamples 1000)"
"$EXDIR/shap_timing" "$OUT/mnist_cnn.onnx" "$IMAGES" "$REPS" 1000 | tee "$OUT/rust_shap.log"
echo "## KernelSHAP, lean shap + onnxruntime"
"$PY" benches/python/shap_onnx_baseline.py "$OUT/mnist_cnn.onnx" --images "$IMAGES" --mode lean \
  | tee "$OUT/py_shap.log"
echo "# done $(date -u '+%H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$PY" - "$OUT" <<'EOF'
import re, sys
out = sys.argv[1]
rows = {}
pat = re.compile(r"^(\S+)\s+(\S+)\s+predict 1000:\s*([\d.]+|-)(?: ms)?\s+predict 1:\s*([\d.]+) ms\s+input grad 1:\s*([\d.]+|-)")
for f in ("rust_model.log", "py_model.log"):
    for l in open(f"{out}/{f}"):
        m = pat.match(l)
        if m:
            num = lambda t: None if t == "-" else float(t)
            rows[(m[1], m[2])] = (num(m[3]), float(m[4]), num(m[5]))
def r(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "-"
def v(a, d):
    return "-" if a is None else f"{a:.{d}f}"
print("| model | engine | predict 1,000 (ms) | / onnxruntime | predict 1 (ms) | / onnxruntime | input grad 1 (ms) | / best torch |")
print("|---|---|---|---|---|---|---|---|")
for model in ("mnist_cnn", "resnet18w"):
    ort = rows.get((model, "onnxruntime"))
    tgs = [rows[(model, e)][2] for e in ("torch", "torch-1t") if rows.get((model, e))]
    tg = min(tgs) if tgs else None
    for eng in ("import", "tract", "onnxruntime", "torch", "torch-1t"):
        x = rows.get((model, eng))
        if not x:
            continue
        print(f"| {model} | {eng} | {v(x[0], 1)} | {r(x[0], ort and ort[0])} | {v(x[1], 3)} | "
              f"{r(x[1], ort and ort[1])} | {v(x[2], 3)} | {r(x[2], tg)} |")
shap = {}
est = None
for l in open(f"{out}/rust_shap.log"):
    m = re.match(r"KernelSHAP \((.*)\)", l)
    if m:
        est = m[1]
    m = re.match(r"\s+(imported|tract)\b.*?([\d.]+) s per image, of which model ([\d.]+) s", l)
    if m and est:
        shap[f"xai-shap {est}, {m[1]}"] = (float(m[2]), float(m[3]))
for l in open(f"{out}/py_shap.log"):
    m = re.search(r"KernelExplainer \(lean\).*?: ([\d.]+) s per image, of which onnxruntime ([\d.]+) s", l)
    if m:
        shap["lean shap + onnxruntime"] = (float(m[1]), float(m[2]))
lean = shap.get("lean shap + onnxruntime", (None,))[0]
print()
print("| KernelSHAP on mnist_cnn, nsamples 1000 | s per image | of which model | lean shap / this |")
print("|---|---|---|---|")
for k, (t, m) in shap.items():
    print(f"| {k} | {t:.3f} | {m:.3f} | {r(lean, t)} |")
EOF
