#!/usr/bin/env python3
"""The Python side of the torchvision table of docs/BENCHMARKS.md (issue 25 item 4): for every
model that `torchvision_export.py --set full` exported, onnxruntime's predict time at batch 1 and
8 (each exporter's file) and PyTorch autograd's input-gradient time of one class score at batch 1
and 8, on one thread and on all threads.

    /work/venv/bin/python benches/python/torchvision_export.py --set full   # writes the files
    nice -n 10 /work/venv/bin/python benches/python/torchvision_timing.py \
        [--dir target/torchvision-exports] [--only resnet18,vit_b_16] [--repeats 5]

Reads `<dir>/manifest.tsv` (rows with status ok), rebuilds each model with the export script's
`build` (same seed, same calibrated batch norm, so the module is the one that was exported) and
times, for batch b in {1, 8} and threads t in {1, all cores}:
  ort       `InferenceSession.run` on `<dir>/<exporter>/<name>.onnx` (intra_op_num_threads t,
            default graph optimisations, CPU provider); one warm-up call, then the median of
            `repeats` calls (at least 3; batch 1 gets 4x as many). The max relative difference
            between onnxruntime's and torch's outputs on the timed batch is recorded too.
  torch-fwd eager forward under `torch.no_grad()` (torch.set_num_threads t).
  torch-grad  forward + backward of `model(x)[:, c].sum()` (c = 0: one class score per image)
            with `x.requires_grad_()` and every parameter `requires_grad=False`, so only the input
            gradient is computed; the time includes the forward pass.
Input: seeded N(0, 1), the model's input shape (3x224x224; inception_v3 3x299x299).

Writes `<dir>/timing.tsv` (or --tsv), one row per measurement (appended after each model, so a
partial run keeps what it measured):
  name  engine  exporter  batch  threads  median_ms  min_ms  runs  max_rel_diff
(`exporter` is dynamo / legacy for ort rows and `-` for torch rows; `max_rel_diff` only on ort
rows: max |ort - torch| / max |torch|.) The Rust side (the lead's example) reads the same files.
"""
import argparse
import csv
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torchvision_export as tx  # noqa: E402

HEADER = ["name", "engine", "exporter", "batch", "threads", "median_ms", "min_ms", "runs",
          "max_rel_diff"]


def timed(f, runs):
    f()
    t = []
    for _ in range(runs):
        s = time.perf_counter()
        f()
        t.append((time.perf_counter() - s) * 1e3)
    return float(np.median(t)), float(np.min(t)), runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=tx.FULL_OUT)
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}",
                    help="comma-separated thread counts (default 1 and all cores)")
    ap.add_argument("--exporters", default="dynamo,legacy")
    ap.add_argument("--no-torch", action="store_true", help="onnxruntime only")
    ap.add_argument("--tsv", help="output (default <dir>/timing.tsv)")
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    batches = [int(b) for b in args.batches.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    exporters = args.exporters.split(",")
    with open(os.path.join(args.dir, "manifest.tsv")) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    ok = {(r["name"], r["exporter"]): r["file"] for r in rows if r["status"] == "ok"}
    entries = list(enumerate(tx.full_models()))
    want = set(args.only.split(",")) if args.only else None
    tsv = args.tsv or os.path.join(args.dir, "timing.tsv")
    with open(tsv, "w") as f:
        f.write("\t".join(HEADER) + "\n")

    def emit(*vals):
        line = "\t".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in vals)
        print(line, flush=True)
        with open(tsv, "a") as f:
            f.write(line + "\n")

    for i, entry in entries:
        name = entry[0]
        if want is not None and name not in want:
            continue
        files = {e: os.path.join(args.dir, ok[(name, e)]) for e in exporters if (name, e) in ok}
        if not files and args.no_torch:
            continue
        _, model, shape = tx.build(entry, i, calib_batches=4, calib_size=8)
        for p in model.parameters():  # input gradient only
            p.requires_grad_(False)
        rng = np.random.default_rng(8)
        for b in batches:
            x = rng.standard_normal((b,) + shape).astype(np.float32)
            xt = torch.from_numpy(x)
            runs = max(3, args.repeats * (4 if b == 1 else 1))
            torch.set_num_threads(os.cpu_count())
            with torch.no_grad():
                ref = model(xt).numpy()
            for t in threads:
                for exp, path in files.items():
                    so = ort.SessionOptions()
                    so.intra_op_num_threads = t
                    so.inter_op_num_threads = 1
                    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
                    feed = {sess.get_inputs()[0].name: x}
                    y = sess.run(None, feed)[0]
                    rel = float(np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-12))
                    med, mn, n = timed(lambda: sess.run(None, feed), runs)
                    emit(name, "ort", exp, b, t, med, mn, n, f"{rel:.3g}")
                    del sess
                if args.no_torch:
                    continue
                torch.set_num_threads(t)

                def fwd():
                    with torch.no_grad():
                        model(xt)

                def grad():
                    xg = xt.clone().requires_grad_(True)
                    model(xg)[:, 0].sum().backward()
                    return xg.grad

                med, mn, n = timed(fwd, runs)
                emit(name, "torch-fwd", "-", b, t, med, mn, n, "")
                med, mn, n = timed(grad, runs)
                emit(name, "torch-grad", "-", b, t, med, mn, n, "")
        del model
    print(f"wrote {tsv}")


if __name__ == "__main__":
    main()
