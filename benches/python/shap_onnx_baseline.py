"""shap's KernelExplainer on an ONNX MNIST classifier through onnxruntime, as dianna runs it.

The Python side of the "ONNX models and KernelSHAP against shap" table in docs/BENCHMARKS.md;
the Rust side is `cargo run --release -p xai-onnx --example shap_timing -- <model.onnx>`.

    python3 -m venv /work/venv
    /work/venv/bin/pip install onnx onnxruntime shap scikit-image numpy
    cargo run --release -p xai-onnx --example export -- target/onnx
    /work/venv/bin/python benches/python/shap_onnx_baseline.py target/onnx/binary_cnn.onnx

dianna's `explain_image(model, image, labels=[0, 1], method="KernelSHAP", nsamples=1000,
background=0, n_segments=200, sigma=0)` (dianna 0.9, `dianna/methods/kernelshap.py`):
SLIC on the channels-last image (compactness 10, sigma 0), then
`shap.KernelExplainer(runner, np.zeros((len(labels), n_segments)))` and
`explainer.shap_values(np.ones((len(labels), n_segments)), nsamples=nsamples)`; `runner` masks
the image segment by segment in a Python loop (absent segments get the background value) and runs
the model. dianna leaves `l1_reg` at shap's default; here `l1_reg=False` is passed explicitly so
that no feature selection happens (as in the Rust estimators).

Modes (`--mode`):
  dianna  exactly the above: two background rows and two explained rows (one per label), so
          2 x 2 x (nsamples + 2) model rows per image, and dianna's masking loop;
  lean    one background row, one explained row, vectorised masking: the least shap itself
          needs for the same explanation.

Printed per mode (after one untimed explanation): seconds per image in total, in onnxruntime,
and in masking; and the model alone on 1,000 images (onnxruntime, best and median of 5 calls).
"""

import argparse
import gzip
import os
import time

import numpy as np
import onnxruntime as ort
import shap
import skimage.segmentation

HERE = os.path.dirname(os.path.abspath(__file__))
MNIST = os.path.join(HERE, "..", "..", "data", "mnist")


def read_idx(name):
    with gzip.open(os.path.join(MNIST, name), "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class Model:
    """onnxruntime session on NCHW [n, 1, 28, 28] float inputs in [0, 1]; counts its time."""

    def __init__(self, path, layout, scale, threads):
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.layout = layout
        self.scale = scale
        self.seconds = 0.0
        self.rows = 0

    def __call__(self, x_nchw):
        x = x_nchw.astype(np.float32) * self.scale
        if self.layout == "nhwc":
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        t = time.perf_counter()
        out = self.session.run(None, {self.input: x})[0]
        self.seconds += time.perf_counter() - t
        self.rows += x.shape[0]
        return out


def explain(model, image_hwc, labels, nsamples, n_segments, compactness, sigma, background, mode):
    """Returns (shap values, seconds spent masking)."""
    segments = skimage.segmentation.slic(
        image=image_hwc, n_segments=n_segments, compactness=compactness, sigma=sigma
    )
    mask_seconds = [0.0]

    def mask_dianna(features):
        # dianna's _mask_image: a Python loop over rows and segments.
        out = np.zeros((features.shape[0],) + image_hwc.shape)
        for i in range(features.shape[0]):
            out[i] = image_hwc
            for j in range(features.shape[1]):
                if features[i, j] == 0:
                    out[i][segments == j, :] = background
        return out.astype(np.float32)

    def mask_lean(features):
        # the same masking as one gather: segment j of row i is kept when features[i, j] == 1
        keep = np.zeros((features.shape[0], features.shape[1] + 1), dtype=bool)
        keep[:, : features.shape[1]] = features != 0
        seg = np.where(segments < features.shape[1], segments, features.shape[1])
        m = keep[:, seg][..., None]  # [n, h, w, 1]
        return np.where(m, image_hwc[None], np.float32(background)).astype(np.float32)

    mask = mask_dianna if mode == "dianna" else mask_lean

    def runner(features):
        t = time.perf_counter()
        hwc = mask(features)
        mask_seconds[0] += time.perf_counter() - t
        return model(np.ascontiguousarray(hwc.transpose(0, 3, 1, 2)))  # channels back first

    rows = len(labels) if mode == "dianna" else 1
    explainer = shap.KernelExplainer(runner, np.zeros((rows, n_segments)))
    values = explainer.shap_values(
        np.ones((rows, n_segments)), nsamples=nsamples, l1_reg=False, silent=True
    )
    return values, mask_seconds[0]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--images", type=int, default=3)
    p.add_argument("--nsamples", type=int, default=1000)
    p.add_argument("--n-segments", type=int, default=200)
    p.add_argument("--compactness", type=float, default=10.0)
    p.add_argument("--sigma", type=float, default=0.0)
    p.add_argument("--layout", choices=["nchw", "nhwc"], default="nchw")
    p.add_argument("--input-scale", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    p.add_argument("--mode", choices=["dianna", "lean", "both"], default="both")
    args = p.parse_args()

    images = read_idx("t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    labels_all = read_idx("t10k-labels-idx1-ubyte.gz")
    model = Model(args.model, args.layout, args.input_scale, args.threads)
    k = model(images[:1, None]).shape[1]
    if k == 2:
        keep = (labels_all == 0) | (labels_all == 1)
        images, labels_all = images[keep], labels_all[keep]
    print(f"onnxruntime {ort.__version__}, shap {shap.__version__}, scikit-image "
          f"{skimage.__version__}, numpy {np.__version__}; {os.cpu_count()} CPUs; model {args.model}, {k} outputs")

    # The model alone on 1,000 images.
    batch = images[:1000, None]
    model(batch)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        probs = model(batch)
        times.append(time.perf_counter() - t)
    times.sort()
    acc = (probs.argmax(1) == labels_all[:1000]).mean()
    print(f"model alone, 1,000 images: best {times[0]:.4f} s, median {times[2]:.4f} s (accuracy {acc:.4f})")

    labels = [0, 1] if k == 2 else None
    modes = ["dianna", "lean"] if args.mode == "both" else [args.mode]
    for mode in modes:
        # One untimed explanation first (imports, caches, onnxruntime's first calls at a new
        # batch size).
        explain(model, images[args.images][:, :, None], labels or [0], args.nsamples,
                args.n_segments, args.compactness, args.sigma, 0.0, mode)
        total = mask_total = 0.0
        model.seconds, model.rows = 0.0, 0
        for i in range(args.images):
            image_hwc = images[i][:, :, None]
            lab = labels if labels is not None else [int(model(images[i : i + 1, None]).argmax())]
            t = time.perf_counter()
            values, mask_s = explain(model, image_hwc, lab, args.nsamples, args.n_segments,
                                     args.compactness, args.sigma, 0.0, mode)
            total += time.perf_counter() - t
            mask_total += mask_s
        n = args.images
        print(f"KernelExplainer ({mode}), {n} images, nsamples {args.nsamples}, n_segments "
              f"{args.n_segments}, l1_reg=False: {total / n:.3f} s per image, of which "
              f"onnxruntime {model.seconds / n:.3f} s ({model.rows / n:.0f} rows per image) and "
              f"masking {mask_total / n:.3f} s")


if __name__ == "__main__":
    main()
