"""The model alone on onnxruntime and on PyTorch: the Python side of docs/BENCHMARKS.md, "ONNX
exports against onnxruntime (issue 12 item 7)"; the Rust side is
`cargo run --release -p xai-onnx --example import_timing -- <repeats> <file.onnx> <c>x<h>x<w> ...`.

    /work/venv-bench/bin/python benches/python/onnx_models_export.py target/onnx-exports
    /work/venv-bench/bin/python benches/python/onnx_models_timing.py target/onnx-exports --repeats 5

For each of `mnist_cnn` ([1, 28, 28]) and `resnet18w` ([3, 32, 32]) in the folder (written by
`onnx_models_export.py`): `predict` on 1,000 seeded uniform [0, 1) images in one call (median of
`repeats` calls after one warm-up), batch-1 `predict` (median of 20 x repeats + 1 calls), and the
batch-1 input gradient of the sum of the outputs (median of 20 x repeats + 1 calls). onnxruntime
computes no gradients, so its row has none; the gradient is timed with PyTorch autograd on the
same module (eager, CPU, parameters with `requires_grad = False` so that only the input gradient
is computed), whose predict times are printed too. Every engine uses its default threads (all
cores); PyTorch's batch-1 calls are timed once more on one thread (`torch-1t`). Lines have the
format of `import_timing`'s.
"""

import argparse
import os
import sys
import time

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_models_export import MnistCnn, ResNet18Width  # noqa: E402

MODELS = [("mnist_cnn", (1, 28, 28), MnistCnn), ("resnet18w", (3, 32, 32), ResNet18Width)]


def median_ms(reps, f):
    f()
    t = []
    for _ in range(reps):
        s = time.perf_counter()
        f()
        t.append((time.perf_counter() - s) * 1e3)
    t.sort()
    return t[reps // 2]


def line(name, engine, p1000, p1, g1):
    g = f"{g1:8.3f} ms" if g1 is not None else "       -   "
    p = f"{p1000:8.2f} ms" if p1000 is not None else "       -   "
    print(f"{name:16} {engine:11}  predict 1000: {p}  predict 1: {p1:7.3f} ms  "
          f"input grad 1: {g}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--models", nargs="*", default=[m[0] for m in MODELS])
    args = p.parse_args()
    reps = args.repeats
    print(f"onnxruntime {ort.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), numpy {np.__version__}; {os.cpu_count()} CPUs")
    rng = np.random.default_rng(0)
    for name, shape, cls in MODELS:
        if name not in args.models:
            continue
        x = rng.random((1000,) + shape, dtype=np.float32)
        x1 = np.ascontiguousarray(x[:1])

        sess = ort.InferenceSession(os.path.join(args.folder, f"{name}.onnx"),
                                    providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0].name
        p1000 = median_ms(reps, lambda: sess.run(None, {inp: x}))
        p1 = median_ms(20 * reps + 1, lambda: sess.run(None, {inp: x1}))
        line(name, "onnxruntime", p1000, p1, None)
        ort_out = sess.run(None, {inp: x[:8]})[0]

        model = cls()
        model.load_state_dict(torch.load(os.path.join(args.folder, f"{name}.pt")))
        model.eval()
        for q in model.parameters():
            q.requires_grad_(False)
        tx, tx1 = torch.from_numpy(x), torch.from_numpy(x1)
        with torch.inference_mode():
            tp1000 = median_ms(reps, lambda: model(tx))
            tp1 = median_ms(20 * reps + 1, lambda: model(tx1))
            diff = np.abs(model(tx[:8]).numpy() - ort_out).max()

        def grad():
            xi = tx1.clone().requires_grad_(True)
            y = model(xi)
            (g,) = torch.autograd.grad(y.sum(), xi)
            return g

        g1 = median_ms(20 * reps + 1, grad)
        line(name, "torch", tp1000, tp1, g1)
        # Batch 1 on one intra-op thread as well: on a loaded machine torch's second OpenMP
        # thread can stall a 1 ms call for a scheduler slice.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        with torch.inference_mode():
            tp1_1 = median_ms(20 * reps + 1, lambda: model(tx1))
        g1_1 = median_ms(20 * reps + 1, grad)
        torch.set_num_threads(threads)
        line(name, "torch-1t", None, tp1_1, g1_1)
        print(f"  ({name}: max |torch - onnxruntime| on 8 images {diff:.1e})", flush=True)


if __name__ == "__main__":
    main()
