"""captum's side of the attribution timing (issue 27): time per image of IntegratedGradients
(n_steps = 50, gausslegendre) and NoiseTunnel(Saliency) SmoothGrad (nt_samples = 50) on the CPU.

    /usr/bin/time -v /work/venv/bin/python benches/python/captum_timing.py --model mnist \
        --export target/attr-timing/mnist_cnn.onnx --images 8
    /usr/bin/time -v /work/venv/bin/python benches/python/captum_timing.py --model resnet50 \
        --images 2 --internal-batch-size 16

`--model mnist` builds a seeded MNIST-size CNN (alibi's architecture: conv 32 - conv 64 -
max pool - dense 128 - dense 10; untrained weights, which do not change the cost) and, with
`--export`, writes it as ONNX for the Rust side (`examples/timing.rs`), so both time the same
network. `--model resnet50` uses torchvision's ResNet-50 (random weights) at 224 x 224.
Peak memory is `/usr/bin/time -v`'s maximum resident set size of the whole process.
"""

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
from captum.attr import IntegratedGradients, NoiseTunnel, Saliency


class MnistCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(64 * 12 * 12, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["mnist", "resnet50"], default="mnist")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--internal-batch-size", type=int, default=64)
    ap.add_argument("--export", default=None, help="write the MNIST CNN as ONNX here")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model == "mnist":
        model, shape = MnistCnn().eval(), (1, 28, 28)
    else:
        import torchvision

        model, shape = torchvision.models.resnet50(weights=None).eval(), (3, 224, 224)
    x = torch.rand(args.images, *shape)
    if args.export:
        os.makedirs(os.path.dirname(os.path.abspath(args.export)), exist_ok=True)
        torch.onnx.export(model, (x[:1],), args.export, input_names=["input"],
                          output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
    with torch.no_grad():
        target = model(x).argmax(1).tolist()
    results = {"model": args.model, "images": args.images, "threads": torch.get_num_threads(),
               "internal_batch_size": args.internal_batch_size}
    ig = IntegratedGradients(model)
    start = time.perf_counter()
    ig.attribute(x, target=target, n_steps=50, method="gausslegendre",
                 internal_batch_size=args.internal_batch_size)
    results["ig_s_per_image"] = (time.perf_counter() - start) / args.images
    nt = NoiseTunnel(Saliency(model))
    start = time.perf_counter()
    nt.attribute(x, target=target, nt_type="smoothgrad", nt_samples=50, stdevs=0.15,
                 nt_samples_batch_size=max(1, args.internal_batch_size // args.images))
    results["smoothgrad_s_per_image"] = (time.perf_counter() - start) / args.images
    print(json.dumps(results))


if __name__ == "__main__":
    main()
