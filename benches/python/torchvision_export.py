#!/usr/bin/env python3
"""Exports torchvision's classification families to ONNX with both of torch's exporters, as a
user's own exports look (issue 25 item 4, "Real exporters"), with onnxruntime's outputs beside
each file.

    python3 -m venv /work/venv
    /work/venv/bin/pip install torch torchvision onnx onnxruntime onnxscript numpy
    # tested with torch 2.15.0, torchvision 0.29.2, onnx 1.23.2, onnxruntime 1.32.0,
    # onnxscript 0.7.2, numpy 2.4.6 (CPU)
    # the committed fixtures (crates/xai-onnx/fixtures/torchvision/, ~6 minutes on 2 cores):
    /work/venv/bin/python benches/python/torchvision_export.py --set tiny
    # the whole set at standard sizes (large files; an hour or more on two cores):
    nice -n 10 /work/venv/bin/python benches/python/torchvision_export.py --set full \
        > target/torchvision-exports/log.txt 2>&1
    # only some models: --only resnet18,vit_b_16   (names as listed by --list)
    # Keras (tf.keras.applications through tf2onnx; needs `pip install tensorflow-cpu tf2onnx`):
    /work/venv/bin/python benches/python/torchvision_export.py --set keras

Every model has random weights from a fixed seed (torch.manual_seed(25 + index)); its
batch-norm statistics are calibrated so that outputs vary: every BatchNorm gets random affine
parameters and `momentum=None` (cumulative average), the model runs in train mode on a few
batches of random N(0, 1) images (full: 4 batches of 8; tiny: 8 of 16), then `eval()`. A classifier head that torchvision initialises
to zero (ViT's) is re-drawn, and ConvNeXt's layer scales (1e-6) are set to about 0.1, so that no
part of the graph is trivially zero. Parameters keep requires_grad=True, as in a user's export
(otherwise nn.MultiheadAttention takes its fused fast path, `aten::_native_multi_head_attention`,
which the legacy exporter cannot write: ViT's legacy export fails).

Each model is exported twice, into one subfolder per exporter of the output folder:
  dynamo/<name>.onnx (+ <name>.onnx.data)  torch's default exporter:
      torch.onnx.export(model, (x,), path, dynamo=True, external_data=True,
                        dynamic_shapes=({0: Dim("batch")},), input_names=["input"])
      (torch 2.15 writes opset 20 and every weight into the external file <name>.onnx.data;
      its optimiser folds BatchNorm into the convolutions.)
  legacy/<name>.onnx                        the TorchScript exporter:
      torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17,
                        input_names=["input"], output_names=["output"],
                        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
For the tiny set both go flat into crates/xai-onnx/fixtures/torchvision/, the legacy file named
<name>_legacy.onnx. Beside every file, <file stem>.io.txt holds onnxruntime's output for one fixed
seeded N(0, 1) input batch of 2 (values rounded to two decimals, written
in the shortest form that reads back to the same f32), in the four-line format the Rust fixture tests read (input dims,
input values, output dims [n, k], output values; see crates/xai-onnx/src/fixture_tests.rs `fn io`),
and the script prints max |torch - onnxruntime| and the op types of the graph. A model that fails
to export is reported and skipped. `manifest.tsv` in the output folder lists name, exporter,
file, input shape, status (ok / export-failed / ort-failed), max |torch - ort|, max relative
difference, op types, error.

Sets:
  full   resnet18, resnet50, resnext50_32x4d, wide_resnet50_2, mobilenet_v2, mobilenet_v3_small,
         mobilenet_v3_large, efficientnet_b0, efficientnet_v2_s, regnet_x_400mf, regnet_y_400mf,
         squeezenet1_0, squeezenet1_1, densenet121, vgg11_bn, shufflenet_v2_x1_0, googlenet
         (aux_logits=False, init_weights=True), inception_v3 (aux_logits=False, 3x299x299),
         mnasnet0_5, convnext_tiny, vit_b_16, swin_t; 1000 classes, 3x224x224 unless said.
         Default output folder target/torchvision-exports/ (not committed).
  tiny   the same torchvision classes (or their blocks: BasicBlock, Bottleneck, Fire, Inception,
         make_layers) at tiny widths, 10 classes, 3x32x32 (vgg_tiny 3x28x28 so that its
         AdaptiveAvgPool2d((7, 7)) is exact), 3k-11k parameters each, small enough to commit:
         4.1 MB in all, each file under 300 KB except swin_tiny.onnx (360 KB). About 60% of a
         dynamo .onnx is torch's per-node metadata_props (stack trace, FX node, class hierarchy:
         ~1.8 KB a node), kept because users' files carry it; the io.txt files (33 KB each, the
         2x3x32x32 input) are another 1.1 MB.
         inception_v3 has no tiny form: its blocks' widths are fixed (InceptionA alone is
         ~300 KB), and googlenet_tiny covers the same concat-of-branches pattern.
         Default output folder crates/xai-onnx/fixtures/torchvision/.
  keras  tf.keras.applications MobileNetV2 (alpha 0.35, 96x96, random weights, 10 classes with
         softmax) and a small residual Keras model (Conv, BatchNormalization, DepthwiseConv2D,
         swish, Add, MaxPooling2D, GlobalAveragePooling2D, Dense softmax) through tf2onnx
         (tf2onnx.convert.from_function on a tf.function with a [None, H, W, 3] signature,
         opset 17; NHWC input, so the io.txt input dims are [2, H, W, 3]), batch norm calibrated
         on random inputs, into <out>/keras/ (default target/torchvision-exports/keras/).
         Needs `/work/venv/bin/pip install tensorflow-cpu tf2onnx` (tested with
         tensorflow-cpu 2.21.0, keras 3.15.1, tf2onnx 1.17.0; a few minutes; it installs beside
         torch without changing numpy, onnx or protobuf). Skipped with a message if missing.
"""
import argparse
import importlib
import math
import os
import sys
import time
import traceback
from functools import partial

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
TINY_OUT = os.path.join(ROOT, "crates", "xai-onnx", "fixtures", "torchvision")
FULL_OUT = os.path.join(ROOT, "target", "torchvision-exports")


# ----------------------------------------------------------------------------------------------
# Model constructors. Each returns (module, input shape without batch).
# ----------------------------------------------------------------------------------------------

def full_models():
    import torchvision.models as tvm

    def g(name, shape=(3, 224, 224), **kw):
        return name, (lambda: (getattr(tvm, name)(weights=None, **kw), shape))

    return [
        g("resnet18"), g("resnet50"), g("resnext50_32x4d"), g("wide_resnet50_2"),
        g("mobilenet_v2"), g("mobilenet_v3_small"), g("mobilenet_v3_large"),
        g("efficientnet_b0"), g("efficientnet_v2_s"),
        g("regnet_x_400mf"), g("regnet_y_400mf"),
        g("squeezenet1_0"), g("squeezenet1_1"),
        g("densenet121"), g("vgg11_bn"), g("shufflenet_v2_x1_0"),
        g("googlenet", aux_logits=False, init_weights=True),
        g("inception_v3", shape=(3, 299, 299), aux_logits=False, init_weights=True),
        g("mnasnet0_5"), g("convnext_tiny"), g("vit_b_16"), g("swin_t"),
    ]


def tiny_models():
    import torch.nn as nn
    import torchvision.models as tvm
    # (importlib: `torchvision.models.googlenet` etc. are also the names of functions)
    tv_resnet = importlib.import_module("torchvision.models.resnet")
    tv_sq = importlib.import_module("torchvision.models.squeezenet")
    tv_g = importlib.import_module("torchvision.models.googlenet")
    tv_vgg = importlib.import_module("torchvision.models.vgg")
    tv_mnas = importlib.import_module("torchvision.models.mnasnet")
    from torchvision.models.convnext import CNBlockConfig
    from torchvision.models.efficientnet import FusedMBConvConfig, MBConvConfig
    from torchvision.models.mobilenetv3 import InvertedResidualConfig
    from torchvision.models.regnet import BlockParams

    s32 = (3, 32, 32)

    def resnet(block, widths, groups=1, width_per_group=64):
        # torchvision.models.ResNet with its own forward and _make_layer, but narrow stages
        # (its constructor fixes the widths at 64-128-256-512).
        m = tvm.ResNet(block, [1, 1, 1, 1], num_classes=10, groups=groups,
                       width_per_group=width_per_group)
        m.inplanes = widths[0]
        m.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        m.bn1 = nn.BatchNorm2d(widths[0])
        m.layer1 = m._make_layer(block, widths[0], 1)
        m.layer2 = m._make_layer(block, widths[1], 1, stride=2)
        m.layer3 = m._make_layer(block, widths[2], 1, stride=2)
        m.layer4 = m._make_layer(block, widths[3], 1, stride=2)
        m.fc = nn.Linear(widths[3] * block.expansion, 10)
        return m, s32

    def resnet_tiny():
        return resnet(tv_resnet.BasicBlock, [4, 8, 8, 16])

    def resnext_tiny():
        # Bottleneck with groups 4 (grouped 3x3 convolutions), as resnext50_32x4d.
        return resnet(tv_resnet.Bottleneck, [4, 8, 8, 8], groups=4, width_per_group=16)

    def mobilenet_v2_tiny():
        setting = [[1, 8, 1, 1], [4, 8, 2, 2], [4, 16, 1, 2]]
        m = tvm.MobileNetV2(num_classes=10, width_mult=0.25, inverted_residual_setting=setting)
        # last_channel is max(1280, 1280 * width_mult); keep the shape, shrink the width.
        feats = list(m.features)
        last = feats[-1]
        cin = last[0].in_channels
        from torchvision.ops.misc import Conv2dNormActivation
        feats[-1] = Conv2dNormActivation(cin, 32, kernel_size=1, activation_layer=nn.ReLU6)
        m.features = nn.Sequential(*feats)
        m.classifier[1] = nn.Linear(32, 10)
        return m, s32

    def mobilenet_v3_tiny():
        c = partial(InvertedResidualConfig, width_mult=1.0)
        setting = [
            c(8, 3, 8, 8, True, "RE", 2, 1),
            c(8, 3, 24, 8, False, "RE", 2, 1),
            c(8, 5, 24, 8, True, "HS", 1, 1),
            c(8, 3, 32, 16, True, "HS", 2, 1),
        ]
        return tvm.MobileNetV3(setting, last_channel=16, num_classes=10), s32

    def efficientnet_tiny():
        setting = [MBConvConfig(1, 3, 1, 8, 8, 1), MBConvConfig(4, 3, 2, 8, 8, 2),
                   MBConvConfig(4, 5, 2, 8, 16, 1)]
        return tvm.EfficientNet(setting, dropout=0.2, num_classes=10, last_channel=32), s32

    def efficientnet_v2_tiny():
        setting = [FusedMBConvConfig(1, 3, 1, 8, 8, 1), FusedMBConvConfig(2, 3, 2, 8, 8, 1),
                   MBConvConfig(4, 3, 2, 8, 16, 2)]
        return tvm.EfficientNet(setting, dropout=0.2, num_classes=10, last_channel=32), s32

    def regnet_tiny():
        # regnet_y-style: grouped 3x3 convolutions and squeeze-excitation.
        p = BlockParams.from_init_params(depth=3, w_0=8, w_a=8.0, w_m=2.0, group_width=4,
                                         se_ratio=0.25)
        return tvm.RegNet(p, num_classes=10, stem_width=8), s32

    def squeezenet_tiny():
        # squeezenet1_1's layout (ceil_mode max-pools, Fire modules, conv classifier), narrow.
        m = tvm.SqueezeNet(version="1_1", num_classes=10)
        m.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            tv_sq.Fire(16, 4, 8, 8), tv_sq.Fire(16, 4, 8, 8),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            tv_sq.Fire(16, 8, 16, 16),
        )
        m.classifier[1] = nn.Conv2d(32, 10, 1)
        return m, s32

    def densenet_tiny():
        return tvm.DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2,
                            num_classes=10), s32

    def vgg_tiny():
        # vgg11_bn's layout (make_layers with batch norm, AdaptiveAvgPool2d((7, 7)), three
        # Linear layers); 28x28 input and two max-pools so that the pooled map is exactly 7x7,
        # as at 224 (AdaptiveAvgPool2d becomes a 1x1 AveragePool).
        m = tvm.VGG(tv_vgg.make_layers([8, "M", 8, 8, "M", 8], batch_norm=True),
                    num_classes=10)
        m.classifier = nn.Sequential(
            nn.Linear(8 * 7 * 7, 8), nn.ReLU(True), nn.Dropout(),
            nn.Linear(8, 8), nn.ReLU(True), nn.Dropout(), nn.Linear(8, 10))
        return m, (3, 28, 28)

    def shufflenet_v2_tiny():
        return tvm.ShuffleNetV2([1, 1, 1], [8, 16, 32, 64, 64], num_classes=10), s32

    def googlenet_tiny():
        # GoogLeNet's forward with narrow Inception modules; the modules not needed are Identity.
        m = tvm.GoogLeNet(num_classes=10, aux_logits=False, init_weights=True)
        m.conv1 = tv_g.BasicConv2d(3, 8, kernel_size=7, stride=2, padding=3)
        m.conv2 = tv_g.BasicConv2d(8, 8, kernel_size=1)
        m.conv3 = tv_g.BasicConv2d(8, 16, kernel_size=3, padding=1)
        m.inception3a = tv_g.Inception(16, 4, 4, 8, 2, 4, 4)      # -> 20
        m.inception3b = tv_g.Inception(20, 8, 4, 8, 2, 4, 4)      # -> 24
        m.inception4a = tv_g.Inception(24, 8, 4, 8, 2, 4, 4)      # -> 24
        for n in ("inception4b", "inception4c", "inception4d", "inception4e", "inception5a"):
            setattr(m, n, nn.Identity())
        m.inception5b = tv_g.Inception(24, 8, 8, 8, 2, 4, 4)      # -> 24
        m.fc = nn.Linear(24, 10)
        return m, s32

    def mnasnet_tiny():
        # MNASNet's stem and forward; fewer, narrower stacks of its inverted residuals (its
        # widths at alpha 0.25 are still 220k parameters), and a 32-wide head instead of 1280.
        m = tvm.MNASNet(alpha=0.25, num_classes=10)
        layers = list(m.layers)[:8] + [
            tv_mnas._stack(8, 8, 3, 2, 3, 2, 0.1), tv_mnas._stack(8, 16, 5, 2, 3, 1, 0.1),
            tv_mnas._stack(16, 16, 3, 1, 6, 1, 0.1),
            nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True)]
        m.layers = nn.Sequential(*layers)
        m.classifier[1] = nn.Linear(32, 10)
        return m, s32

    def convnext_tiny():
        setting = [CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)]
        return tvm.ConvNeXt(setting, num_classes=10), s32

    def vit_tiny():
        return tvm.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                     hidden_dim=16, mlp_dim=32, num_classes=10), s32

    def swin_tiny():
        # two blocks in the first stage: the second is the shifted-window one (roll + mask)
        return tvm.SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[2, 1],
                                   num_heads=[1, 2], window_size=[4, 4], num_classes=10), s32

    fns = [resnet_tiny, resnext_tiny, mobilenet_v2_tiny, mobilenet_v3_tiny, efficientnet_tiny,
           efficientnet_v2_tiny, regnet_tiny, squeezenet_tiny, densenet_tiny, vgg_tiny,
           shufflenet_v2_tiny, googlenet_tiny, mnasnet_tiny, convnext_tiny, vit_tiny, swin_tiny]
    return [(f.__name__, f) for f in fns]


# ----------------------------------------------------------------------------------------------
# Weights: seeded, batch norm calibrated on random inputs.
# ----------------------------------------------------------------------------------------------

def prepare(model, shape, seed, batches, batch_size):
    import torch
    import torch.nn as nn

    gen = torch.Generator().manual_seed(seed + 1000)
    # No all-zero Linear/Conv weights (ViT's head is zero-initialised); ConvNeXt layer scale.
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, nn.Conv2d)) and not mod.weight.detach().abs().sum() > 0:
            fan_in = mod.weight[0].numel()
            with torch.no_grad():
                mod.weight.normal_(0, 1 / math.sqrt(fan_in), generator=gen)
    for name, p in model.named_parameters():
        if name.endswith("layer_scale"):
            with torch.no_grad():
                p.uniform_(0.05, 0.2, generator=gen)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        with torch.no_grad():
            if bn.affine:
                bn.weight.uniform_(0.5, 1.5, generator=gen)
                bn.bias.normal_(0, 0.2, generator=gen)
        bn.reset_running_stats()
        bn.momentum = None
    if bns:
        model.train()
        with torch.no_grad():
            for _ in range(batches):
                model(torch.randn((batch_size,) + tuple(shape), generator=gen))
    model.eval()
    return model


def build(entry, index, calib_batches, calib_size):
    """(name, model in eval mode, input shape). The same for the timing script."""
    import torch

    name, fn = entry
    torch.manual_seed(25 + index)
    model, shape = fn()
    prepare(model, shape, 25 + index, calib_batches, calib_size)
    # Parameters keep requires_grad=True, as in a user's export (with it False,
    # nn.MultiheadAttention takes its fused fast path, which the legacy exporter cannot write).
    return name, model, tuple(shape)


def fixed_input(shape, seed=2025, n=2):
    """N(0, 1) values rounded to two decimals, so that io.txt stays small and exact."""
    x = np.random.default_rng(seed).standard_normal((n,) + tuple(shape))
    return np.round(x, 2).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Export and check.
# ----------------------------------------------------------------------------------------------

def op_types(path):
    import onnx

    m = onnx.load(path, load_external_data=False)
    ops = {(n.domain + "::" if n.domain else "") + n.op_type for n in m.graph.node}
    # subgraphs and local functions, if the exporter wrote any
    for f in m.functions:
        ops |= {f"{f.name}>" + n.op_type for n in f.node}
    opset = {o.domain or "ai.onnx": o.version for o in m.opset_import}
    return sorted(ops), opset


def write_io(path, x, y):
    """Four lines: input dims, input values, output dims, output values. Values are written in
    the shortest form that reads back (as f64, then cast to f32) to the same f32."""
    with open(path, "w") as f:
        for a in (x, y):
            a = np.asarray(a, np.float32)
            vals = [np.format_float_positional(v, unique=True, trim="-")
                    if abs(v) >= 1e-4 or v == 0 else np.format_float_scientific(v, unique=True)
                    for v in a.ravel()]
            back = np.array([float(v) for v in vals]).astype(np.float32)
            assert np.array_equal(back, a.ravel()), path
            f.write(" ".join(str(d) for d in a.shape) + "\n")
            f.write(" ".join(vals) + "\n")


def remove(*paths):
    for p in paths:
        if os.path.exists(p):
            os.remove(p)


def export_one(model, shape, exporter, path):
    import torch

    x = torch.randn((2,) + shape, generator=torch.Generator().manual_seed(7))
    remove(path, path + ".data")
    if exporter == "dynamo":
        torch.onnx.export(model, (x,), path, dynamo=True, external_data=True,
                          input_names=["input"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},))
    else:
        torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})


def check(model, shape, path, io_path):
    import onnxruntime as ort
    import torch

    x = fixed_input(shape)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        t = model(torch.from_numpy(x)).numpy()
    write_io(io_path, x, y)
    diff = float(np.abs(t - y).max())
    rel = float(np.abs(t - y).max() / max(np.abs(t).max(), 1e-12))
    return y.shape, diff, rel


def run_set(entries, out, flat, calib_batches, calib_size):
    os.makedirs(out, exist_ok=True)
    # Rows of models not run this time (--only) are kept from an earlier manifest.
    names = {e[0] for _, e in entries}
    kept = []
    manifest = os.path.join(out, "manifest.tsv")
    if os.path.exists(manifest):
        with open(manifest) as f:
            kept = [tuple(line.rstrip("\n").split("\t")) for line in list(f)[1:]]
        kept = [r for r in kept if r[0] not in names]
    rows = []
    for i, entry in entries:
        t0 = time.time()
        try:
            name, model, shape = build(entry, i, calib_batches, calib_size)
        except Exception as e:  # noqa: BLE001
            print(f"{entry[0]}: build failed: {e!r}", flush=True)
            rows.append((entry[0], "-", "-", "-", "build-failed", "", "", "", repr(e)))
            continue
        print(f"== {name} {shape} built in {time.time() - t0:.1f}s "
              f"({sum(p.numel() for p in model.parameters())} parameters)", flush=True)
        for exporter in ("dynamo", "legacy"):
            if flat:
                stem = name if exporter == "dynamo" else f"{name}_legacy"
                folder = out
            else:
                stem, folder = name, os.path.join(out, exporter)
                os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, stem + ".onnx")
            rel_file = os.path.relpath(path, out)
            io_path = os.path.join(folder, stem + ".io.txt")
            shape_s = "x".join(str(d) for d in shape)
            t1 = time.time()
            try:
                export_one(model, shape, exporter, path)
            except Exception as e:  # noqa: BLE001
                msg = " ".join(str(e).split())[:400]
                print(f"   {exporter}: EXPORT FAILED: {type(e).__name__}: {msg}", flush=True)
                traceback.print_exc(limit=3)
                remove(path, path + ".data", io_path)
                rows.append((name, exporter, rel_file, shape_s, "export-failed", "", "", "",
                             f"{type(e).__name__}: {msg}"))
                continue
            ops, opset = op_types(path)
            size = sum(os.path.getsize(p) for p in (path, path + ".data") if os.path.exists(p))
            try:
                yshape, diff, rel = check(model, shape, path, io_path)
            except Exception as e:  # noqa: BLE001
                msg = " ".join(str(e).split())[:400]
                print(f"   {exporter}: ONNXRUNTIME FAILED: {msg}", flush=True)
                rows.append((name, exporter, rel_file, shape_s, "ort-failed", "", "",
                             " ".join(ops), f"{type(e).__name__}: {msg}"))
                continue
            print(f"   {exporter}: {rel_file} {size / 1024:.0f} KiB, opset {opset}, "
                  f"{time.time() - t1:.1f}s, output {list(yshape)}, "
                  f"max |torch - ort| {diff:.3g} (relative {rel:.3g})", flush=True)
            print(f"      ops: {' '.join(ops)}", flush=True)
            rows.append((name, exporter, rel_file, shape_s, "ok", f"{diff:.3g}", f"{rel:.3g}",
                         " ".join(ops), ""))
        write_manifest(out, kept + rows)
        del model
    write_manifest(out, kept + rows)
    ok = sum(r[4] == "ok" for r in rows)
    print(f"done: {ok} of {len(rows)} exports ok; manifest {os.path.join(out, 'manifest.tsv')}")


def write_manifest(out, rows):
    with open(os.path.join(out, "manifest.tsv"), "w") as f:
        f.write("name\texporter\tfile\tinput_shape\tstatus\tmax_abs_diff\tmax_rel_diff\tops\terror\n")
        for r in rows:
            f.write("\t".join(str(v).replace("\t", " ") for v in r) + "\n")


# ----------------------------------------------------------------------------------------------
# Keras through tf2onnx.
# ----------------------------------------------------------------------------------------------

def run_keras(out):
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf
        import tf2onnx
    except ImportError as e:
        print(f"--set keras skipped: {e} (pip install tensorflow-cpu tf2onnx)")
        return
    import onnxruntime as ort

    out = os.path.join(out, "keras")
    os.makedirs(out, exist_ok=True)

    def small_resnet():
        L = tf.keras.layers
        x0 = L.Input((32, 32, 3))
        x = L.Conv2D(8, 3, padding="same", use_bias=False)(x0)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
        y = L.DepthwiseConv2D(3, padding="same")(x)
        y = L.BatchNormalization()(y)
        y = L.Activation("swish")(y)
        y = L.Conv2D(8, 1)(y)
        x = L.Add()([x, y])
        x = L.MaxPooling2D(2)(x)
        x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
        x = L.GlobalAveragePooling2D()(x)
        x = L.Dense(10, activation="softmax")(x)
        return tf.keras.Model(x0, x), (32, 32, 3)

    models = [
        ("keras_mobilenet_v2_035",
         lambda: (tf.keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35,
                                                    weights=None, classes=10), (96, 96, 3))),
        ("keras_small_resnet", small_resnet),
    ]
    rows = []
    for i, (name, fn) in enumerate(models):
        tf.keras.utils.set_random_seed(25 + i)
        model, shape = fn()
        # calibrate batch norm on random N(0, 1) inputs: momentum k / (k + 1) at step k makes
        # the moving statistics the cumulative average of the batch statistics (Keras'
        # default momentum, 0.99 / MobileNetV2's 0.999, would barely move them).
        bns = [layer for layer in model.layers
               if isinstance(layer, tf.keras.layers.BatchNormalization)]
        for layer in bns:
            for w in (layer.gamma, layer.beta):
                if w is not None:
                    w.assign(tf.random.uniform(w.shape, 0.5, 1.5) if w is layer.gamma
                             else tf.random.normal(w.shape, 0, 0.2))
        for k in range(8):
            for layer in bns:
                layer.momentum = k / (k + 1)
            model(tf.random.normal((16,) + shape), training=True)
        path = os.path.join(out, name + ".onnx")
        shape_s = "x".join(str(d) for d in shape)
        try:
            spec = (tf.TensorSpec((None,) + shape, tf.float32, name="input"),)
            fn_ = tf.function(lambda x: model(x, training=False))
            tf2onnx.convert.from_function(fn_, input_signature=spec, opset=17, output_path=path)
        except Exception as e:  # noqa: BLE001
            msg = " ".join(str(e).split())[:400]
            print(f"{name}: EXPORT FAILED: {msg}")
            rows.append((name, "tf2onnx", name + ".onnx", shape_s, "export-failed", "", "", "",
                         msg))
            continue
        x = fixed_input(shape)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        t = model(x, training=False).numpy()
        write_io(os.path.join(out, name + ".io.txt"), x, y)
        diff = float(np.abs(t - y).max())
        rel = diff / max(float(np.abs(t).max()), 1e-12)
        ops, opset = op_types(path)
        print(f"{name}: {os.path.getsize(path) / 1024:.0f} KiB, opset {opset}, "
              f"max |keras - ort| {diff:.3g} (relative {rel:.3g})\n   ops: {' '.join(ops)}")
        rows.append((name, "tf2onnx", name + ".onnx", shape_s, "ok", f"{diff:.3g}", f"{rel:.3g}",
                     " ".join(ops), ""))
    write_manifest(out, rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", choices=["full", "tiny", "keras"], default="tiny")
    ap.add_argument("--out", help="output folder (default: per set, see the docstring)")
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--list", action="store_true", help="list the models of the set and exit")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.set == "keras":
        run_keras(args.out or FULL_OUT)
        return
    entries = full_models() if args.set == "full" else tiny_models()
    if args.list:
        print("\n".join(n for n, _ in entries))
        return
    indexed = list(enumerate(entries))
    if args.only:
        want = set(args.only.split(","))
        unknown = want - {n for n, _ in entries}
        if unknown:
            sys.exit(f"unknown models: {sorted(unknown)}")
        indexed = [(i, e) for i, e in indexed if e[0] in want]
    if args.set == "full":
        run_set(indexed, args.out or FULL_OUT, flat=False, calib_batches=4, calib_size=8)
    else:
        run_set(indexed, args.out or TINY_OUT, flat=True, calib_batches=8, calib_size=16)


if __name__ == "__main__":
    main()
