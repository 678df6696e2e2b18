"""Builds two CNNs in PyTorch and exports them with torch.onnx (opset 17, dynamic batch axis),
for the side-by-side timings of docs/BENCHMARKS.md, "ONNX exports against onnxruntime (issue 12
item 7)" (`benches/onnx_side_by_side.sh` runs this first).

    python3 -m venv /work/venv-bench
    /work/venv-bench/bin/pip install torch onnx onnxruntime shap scikit-image numpy
    /work/venv-bench/bin/python benches/python/onnx_models_export.py target/onnx-exports

Writes into the folder given:
  mnist_cnn.onnx   PyTorch's MNIST example network (conv 1->32 3x3, ReLU, conv 32->64 3x3, ReLU,
                   max-pool 2, `x.view(x.size(0), -1)`, linear 9216->128, ReLU, linear 128->2,
                   `log_softmax`) with two outputs, trained for one short epoch on the MNIST
                   training digits 0 and 1 (seeded), input [N, 1, 28, 28] in [0, 1]. The runtime
                   flatten is exported as Shape -> Gather -> Unsqueeze -> Concat -> Reshape.
  resnet18w.onnx   a ResNet-18-width network on [N, 3, 32, 32]: CIFAR-style stem (conv 3x3 3->64,
                   BatchNorm, ReLU; no max-pool), four stages of two BasicBlocks with widths
                   64-128-256-512 (strides 1, 2, 2, 2; strided 1x1 conv + BatchNorm projections),
                   global average pool, flatten, linear 512->10. Random weights (seeded) and
                   random BatchNorm statistics; eval mode, so torch.onnx folds each BatchNorm into
                   the convolution before it (what a user's export of a trained ResNet contains).
  *.pt             the modules' state dicts, for the PyTorch autograd timings of
                   `onnx_models_timing.py` (which imports the classes from here).

The TorchScript exporter (`dynamo=False`) is used: it writes the runtime flatten as PyTorch users'
files have it. Each export is checked against the module with onnxruntime (max |difference|
printed).
"""

import argparse
import gzip
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
MNIST = os.path.join(HERE, "..", "..", "data", "mnist")


def read_idx(name):
    with gzip.open(os.path.join(MNIST, name), "rb") as f:
        data = f.read()
    ndim = int.from_bytes(data[0:4], "big") & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class MnistCnn(nn.Module):
    """PyTorch's examples/mnist `Net`, two outputs."""

    def __init__(self, outputs=2):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, outputs)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = x.view(x.size(0), -1)
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18Width(nn.Module):
    """ResNet-18 (BasicBlocks, [2, 2, 2, 2]) with a CIFAR-style stem."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        x = F.adaptive_avg_pool2d(x, 1)
        x = x.view(x.size(0), -1)
        return self.fc(x)


def train_mnist(model, batches=200):
    images = read_idx("train-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    labels = read_idx("train-labels-idx1-ubyte.gz")
    keep = (labels == 0) | (labels == 1)
    x = torch.from_numpy(images[keep][:, None].copy())
    y = torch.from_numpy(labels[keep].astype(np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g)
    model.train()
    for b in range(min(batches, len(x) // 64)):
        idx = perm[b * 64: (b + 1) * 64]
        opt.zero_grad()
        loss = F.nll_loss(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
    model.eval()
    test_x = read_idx("t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    test_y = read_idx("t10k-labels-idx1-ubyte.gz")
    keep = (test_y == 0) | (test_y == 1)
    with torch.no_grad():
        pred = model(torch.from_numpy(test_x[keep][:, None].copy())).argmax(1).numpy()
    return float((pred == test_y[keep]).mean())


def randomise_bn(model, gen):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            with torch.no_grad():
                m.weight.copy_(1.0 + 0.1 * torch.randn(c, generator=gen))
                m.bias.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_var.copy_(1.0 + 0.1 * torch.rand(c, generator=gen))


def export(model, example, path):
    model.eval()
    torch.onnx.export(
        model,
        (example,),
        path,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    import onnx
    import onnxruntime as ort

    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    ops = sorted({n.op_type for n in m.graph.node})
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = torch.rand((3,) + tuple(example.shape[1:]), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x).numpy()
    out = sess.run(None, {"input": x.numpy()})[0]
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{path}: {n_params:,} parameters, ops {', '.join(ops)}; "
          f"max |onnxruntime - torch| {np.abs(out - ref).max():.1e}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="folder for the .onnx and .pt files")
    p.add_argument("--train-batches", type=int, default=200,
                   help="Adam steps of 64 images for the MNIST CNN (default 200)")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, python {sys.version.split()[0]}")

    cnn = MnistCnn()
    acc = train_mnist(cnn, args.train_batches)
    print(f"mnist_cnn: {args.train_batches} Adam steps on digits 0/1, test accuracy {acc:.4f}")
    export(cnn, torch.zeros(1, 1, 28, 28), os.path.join(args.out, "mnist_cnn.onnx"))
    torch.save(cnn.state_dict(), os.path.join(args.out, "mnist_cnn.pt"))

    resnet = ResNet18Width()
    randomise_bn(resnet, torch.Generator().manual_seed(2))
    resnet.eval()
    export(resnet, torch.zeros(1, 3, 32, 32), os.path.join(args.out, "resnet18w.onnx"))
    torch.save(resnet.state_dict(), os.path.join(args.out, "resnet18w.pt"))


if __name__ == "__main__":
    main()
