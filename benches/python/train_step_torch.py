"""One Adam training step of alibi's MNIST CNN in PyTorch, as `benches/benches/models.rs` times
it in Rust (`alibi_cnn/train_step_batch_256`), for the "Training step" table of
docs/BENCHMARKS.md.

    python3 -m venv /work/venv-torch
    /work/venv-torch/bin/pip install torch numpy --index-url https://download.pytorch.org/whl/cpu
    /work/venv-torch/bin/python benches/python/train_step_torch.py --threads 2

The network is `ModelKind::AlibiCnn` (crates/xai-models/src/zoo.rs; 412,778 parameters):
conv 2x2 'same' 1->64, ReLU, max-pool 2, dropout 0.3, conv 2x2 'same' 64->32, ReLU, max-pool 2,
dropout 0.3, flatten, dense 1568->256, ReLU, dropout 0.5, dense 256->10, softmax, trained with
categorical cross-entropy (here fused with the softmax, `CrossEntropyLoss` on the logits, as the
Rust `train` does) and Adam (lr 1e-3, betas 0.9/0.999, eps 1e-7: Keras' defaults). Inputs are
uniform random images in [0, 1], labels `i % 10`, as in the Rust bench. PyTorch's 'same' padding
of a 2x2 kernel pads one row/column at the bottom/right, as Keras and `Padding::Same` do.

Printed: the median and best seconds per step over `--steps` timed steps (after `--warmup`
untimed ones), with `torch.set_num_threads(--threads)`; optionally (`--per-sample`) the
per-sample gradients of all parameters for the same batch with `torch.func` (vmap of grad), the
counterpart of `alibi_cnn/per_sample_grads_256_all_params`.
"""

import argparse
import json
import statistics
import time

import torch
from torch import nn


def alibi_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 64, 2, padding="same"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.3),
        nn.Conv2d(64, 32, 2, padding="same"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.3),
        nn.Flatten(),
        nn.Linear(7 * 7 * 32, 256),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(256, 10),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--per-sample", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = alibi_cnn()
    n_params = sum(t.numel() for t in net.parameters())
    assert n_params == 412_778, n_params
    x = torch.rand(a.batch, 1, 28, 28)
    y = torch.arange(a.batch) % 10
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()

    net.train()
    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    result = {
        "torch": torch.__version__,
        "threads": a.threads,
        "batch": a.batch,
        "train_step_median_s": statistics.median(times),
        "train_step_best_s": min(times),
    }
    if a.per_sample:
        from torch.func import functional_call, grad, vmap

        net.eval()
        params = {k: v.detach() for k, v in net.named_parameters()}

        def loss_one(ps, xi, yi):
            out = functional_call(net, ps, (xi.unsqueeze(0),))
            return loss_fn(out, yi.unsqueeze(0))

        per_sample = vmap(grad(loss_one), in_dims=(None, 0, 0))
        for _ in range(a.warmup):
            per_sample(params, x, y)
        ps_times = []
        for _ in range(a.steps):
            t0 = time.perf_counter()
            per_sample(params, x, y)
            ps_times.append(time.perf_counter() - t0)
        result["per_sample_grads_median_s"] = statistics.median(ps_times)
        result["per_sample_grads_best_s"] = min(ps_times)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
