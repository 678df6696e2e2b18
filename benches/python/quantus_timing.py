#!/usr/bin/env python3
"""The Python side of the xai-eval timing (issue 28 item 4): Quantus 0.6's time per image for
deletion (pixel flipping), ROAD and infidelity on a seeded MNIST-size CNN on the CPU, and the
ONNX file and inputs the Rust side (`cargo run -p xai-eval --example eval_timing`) times on.

    nice -n 10 /work/venv/bin/python benches/python/quantus_timing.py [--out target/quantus-timing]
        [--images 4] [--threads 1]

Writes `<out>/mnist_cnn.onnx` (1x28x28, 10 classes, seeded, untrained; weights inline),
`<out>/inputs.json` (the images, their targets and gradient x input maps) and `<out>/quantus.tsv`:
  metric  params  images  seconds_total  seconds_per_image
Metrics and parameters (the Rust example uses the same):
  deletion     PixelFlipping(features_in_step=28, perturb_baseline="black"): 28 steps of 28 pixels
  road         ROAD(percentages 1, 3, ..., 99, noise=0.01): 50 imputations + model calls
  infidelity   Infidelity(perturb_patch_sizes=[4], n_perturb_samples=10, "black") (Quantus'
               default; it repeats the same deterministic computation 10 times) and with
               n_perturb_samples=1 (one pass, what the Rust side computes)
All images go in one Quantus call (batch_size = images), so Quantus batches across images; the
time per image is the total over the number of images.
"""
import argparse
import json
import os
import time

import numpy as np
import quantus
import torch
import torch.nn as nn


class MnistCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="target/quantus-timing")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)
    model = MnistCnn().eval()
    torch.onnx.export(
        model,
        torch.zeros(1, 1, 28, 28),
        os.path.join(args.out, "mnist_cnn.onnx"),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=13,
        dynamo=False,
    )
    x = np.random.uniform(0, 1, size=(args.images, 1, 28, 28)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    out = model(xt)
    y = out.argmax(1)
    out[torch.arange(len(y)), y].sum().backward()
    a = (xt.grad * xt).detach().numpy()
    y = y.numpy()
    with open(os.path.join(args.out, "inputs.json"), "w") as f:
        json.dump({"x": x.tolist(), "y": y.tolist(), "maps": a.tolist()}, f)

    common = dict(model=model, x_batch=x, y_batch=y, a_batch=a, channel_first=True, softmax=False,
                  device="cpu", batch_size=args.images)
    runs = [
        ("deletion", "PixelFlipping(features_in_step=28, black)",
         quantus.PixelFlipping(features_in_step=28, perturb_baseline="black", disable_warnings=True)),
        ("road", "ROAD(percentages=1..99 step 2, noise=0.01)",
         quantus.ROAD(noise=0.01, disable_warnings=True)),
        ("infidelity", "Infidelity(patch 4, n_perturb_samples=10, black)",
         quantus.Infidelity(perturb_patch_sizes=[4], n_perturb_samples=10, disable_warnings=True)),
        ("infidelity_1", "Infidelity(patch 4, n_perturb_samples=1, black)",
         quantus.Infidelity(perturb_patch_sizes=[4], n_perturb_samples=1, disable_warnings=True)),
    ]
    rows = ["metric\tparams\timages\tseconds_total\tseconds_per_image"]
    for name, params, metric in runs:
        t0 = time.perf_counter()
        metric(**common)
        dt = time.perf_counter() - t0
        rows.append(f"{name}\t{params}\t{args.images}\t{dt:.4f}\t{dt / args.images:.5f}")
        print(rows[-1], flush=True)
    with open(os.path.join(args.out, "quantus.tsv"), "w") as f:
        f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
