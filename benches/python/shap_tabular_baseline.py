"""shap's KernelExplainer with onnxruntime on a tabular ONNX model, side by side with xai-shap's
`tabular` example: time per row and relative L2 error against exact Shapley values.

    /tmp/shapvenv/bin/python benches/python/shap_tabular_baseline.py \
        --model crates/xai-shap/tests/fixtures/tabular_mlp.onnx \
        --background crates/xai-shap/tests/fixtures/tabular_background50.csv \
        --explain crates/xai-shap/tests/fixtures/tabular_explain.csv \
        --nsamples 200 [--kmeans 10] [--xai out.json ...]

The reference is shap's own full enumeration (nsamples = 2^M - 2, exact for M <= ~14) on the
same background (k-means summary included). Each `--xai` file is the JSON the example wrote
with the same background and options; its error is computed against the same reference.
"""

import argparse
import json
import time

import numpy as np
import onnxruntime as ort
import shap


def read_csv(path):
    with open(path) as fh:
        names = fh.readline().strip().split(",")
        rows = [[float(v) for v in line.split(",")] for line in fh if line.strip()]
    return names, np.asarray(rows, dtype=np.float32)


def rel_l2(est, ref):
    return float(np.linalg.norm(est - ref) / np.linalg.norm(ref))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--background", required=True)
    ap.add_argument("--explain", required=True)
    ap.add_argument("--nsamples", type=int, default=200)
    ap.add_argument("--kmeans", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--xai", nargs="*", default=[])
    ap.add_argument(
        "--xai-reference",
        default=None,
        help="JSON of the example at nsamples = 2^M - 2 (exact on xai's own background): the "
        "reference for the --xai files, needed with --kmeans (xai's k-means centroids differ "
        "from shap.kmeans', so their Shapley values differ too)",
    )
    args = ap.parse_args()

    sess = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def f(x):
        return sess.run(None, {name: np.asarray(x, dtype=np.float32)})[0]

    _, bg = read_csv(args.background)
    _, rows = read_csv(args.explain)
    data = shap.kmeans(bg, args.kmeans) if args.kmeans else bg
    m = rows.shape[1]
    ex = shap.KernelExplainer(f, data)
    ref = np.transpose(np.asarray(ex.shap_values(rows, nsamples=2**m - 2, l1_reg=False, silent=True)), (0, 2, 1))
    times, errs = [], []
    for rep in range(args.repeats):
        np.random.seed(rep)
        t = time.perf_counter()
        est = ex.shap_values(rows, nsamples=args.nsamples, l1_reg=False, silent=True)
        times.append((time.perf_counter() - t) / len(rows))
        est = np.transpose(np.asarray(est), (0, 2, 1))
        errs.append(np.mean([rel_l2(est[r], ref[r]) for r in range(len(rows))]))
    bg_desc = f"kmeans({args.kmeans})" if args.kmeans else f"{len(bg)} rows"
    print(
        f"shap {shap.__version__} + onnxruntime {ort.__version__}, background {bg_desc}, "
        f"nsamples {args.nsamples}: {1e3 * min(times):.1f}-{1e3 * max(times):.1f} ms/row, "
        f"rel. L2 error {min(errs):.3f}-{max(errs):.3f} (mean over rows; {args.repeats} seeds)"
    )
    xref = ref
    if args.xai_reference:
        with open(args.xai_reference) as fh:
            xref = np.asarray([r["shap_values"] for r in json.load(fh)["rows"]])
        gap = np.mean([rel_l2(xref[r], ref[r]) for r in range(len(rows))])
        print(f"xai's exact values on its own background vs shap's exact: rel. L2 {gap:.3f}")
    for path in args.xai:
        with open(path) as fh:
            out = json.load(fh)
        est = np.asarray([r["shap_values"] for r in out["rows"]])
        err = np.mean([rel_l2(est[r], xref[r]) for r in range(len(rows))])
        print(f"{path}: rel. L2 error {err:.3f}")


if __name__ == "__main__":
    main()
