#!/usr/bin/python3
"""PyTorch references for the vision ops (tests/test_io.cpp, "ONNX fixtures match PyTorch").

Run with Debian's python: /usr/bin/python3 scripts/make_vision_fixtures.py
Writes data/fixtures/vision/<name>.onnx and <name>.npz (a few KB each). Each npz holds the batch
(x, y), PyTorch's logits, cross-entropy loss, gradient, a seeded direction v with the HVP (double
backward) and the GGN-vector product, in float64 and float32 (suffix 32), and how PyTorch's
parameters map onto the ONNX initializers (matched by value: every parameter is drawn at random
before export, so no two share their values).

With --mobilenet, also exports torchvision's MobileNetV3-small (random weights, seed 0) with its
references to ~/.cache/curv/mobilenet_v3_small.{onnx,npz}, outside git (about 10 MB); the test
"MobileNetV3-small matches PyTorch" runs only when that file is present.
"""
import os
import sys

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn.utils import stateless

OUT = os.path.join(os.path.dirname(__file__), "..", "data", "fixtures", "vision")


def hardsigmoid(x):
    """F.hardsigmoid for export; the references swap in its clamp form, which has the same values
    and derivatives away from the kinks (PyTorch has no double backward for hardsigmoid)."""
    return hardsigmoid.impl(x)


hardsigmoid.impl = nn.functional.hardsigmoid


class ActNet(nn.Module):
    """The activations of issue 13: PReLU (per channel and scalar), HardSwish, HardSigmoid (a
    squeeze-excite gate as in MobileNetV3), ELU, SELU, Softplus, ReLU6."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.prelu = nn.PReLU(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.se = nn.Linear(4, 4)
        self.fc1 = nn.Linear(4 * 6 * 6, 10)
        self.prelu1 = nn.PReLU()
        self.fc2 = nn.Linear(10, 3)

    def forward(self, x):
        h = self.prelu(self.conv1(x))
        h = nn.functional.hardswish(self.conv2(h))
        gate = hardsigmoid(self.se(h.mean(dim=(2, 3))))
        h = h * gate[:, :, None, None]
        h = nn.functional.elu(h, 0.7) + nn.functional.selu(h) + nn.functional.softplus(h) + nn.functional.relu6(4 * h)
        return self.fc2(self.prelu1(self.fc1(torch.flatten(h, 1))))


class GroupNormCNN(nn.Module):
    """nn.GroupNorm (exported as Reshape, InstanceNormalization, Reshape, Mul, Add) and
    nn.InstanceNorm2d with affine parameters."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.gn1 = nn.GroupNorm(4, 8)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.gn2 = nn.GroupNorm(2, 8)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        h = torch.relu(self.gn1(self.conv1(x)))
        h = torch.relu(self.inorm(self.gn2(self.conv2(h))))
        return self.fc(h.mean(dim=(2, 3)))


class TinyUNet(nn.Module):
    """Encoder, decoder with ConvTranspose (strided, padded, output_padding, grouped) and Resize
    (nn.Upsample nearest and bilinear), skip connections by Concat."""

    def __init__(self):
        super().__init__()
        self.enc1 = nn.Conv2d(1, 4, 3, padding=1)
        self.enc2 = nn.Conv2d(4, 8, 3, padding=1)
        self.up1 = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.up2 = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1, groups=2)
        self.near = nn.Upsample(scale_factor=2, mode="nearest")
        self.bilin = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.dec = nn.Conv2d(4 + 4 + 4 + 8 + 8, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        e1 = torch.relu(self.enc1(x))  # [N, 4, 8, 8]
        e2 = torch.relu(self.enc2(nn.functional.max_pool2d(e1, 2)))  # [N, 8, 4, 4]
        h = torch.cat([e1, self.up1(e2), self.up2(e2), self.near(e2), self.bilin(e2)], dim=1)
        return self.fc(torch.relu(self.dec(h)).mean(dim=(2, 3)))


def randomize(net, gen):
    with torch.no_grad():
        for q in net.parameters():
            scale = 0.5 if q.dim() == 1 else q[0].numel() ** -0.5  # biases and norms; weights by fan-in
            q.copy_(torch.randn(q.shape, generator=gen) * scale)


def match_initializers(path, net):
    """ONNX initializer name of each PyTorch parameter: its own name, else the one initializer of
    the same size and values."""
    inits = {i.name: numpy_helper.to_array(i).astype(np.float64).reshape(-1) for i in onnx.load(path).graph.initializer}
    names = []
    for n, q in net.named_parameters():
        if n in inits:
            names.append(n)
            continue
        v = q.detach().double().reshape(-1).numpy()
        hits = [k for k, a in inits.items() if a.size == v.size and np.array_equal(a, v.astype(np.float32))]
        if len(hits) != 1:
            raise SystemExit("%s: parameter %s matches initializers %s" % (path, n, hits))
        names.append(hits[0])
    return names


def references(factory, net, x, y, gen):
    """Loss, gradient, HVP and GGN-vector product of the mean cross-entropy (float64 and float32)."""
    net64 = factory().double().eval()
    net64.load_state_dict(net.state_dict())
    names = [n for n, _ in net64.named_parameters()]
    params = [q.detach().clone().requires_grad_(True) for _, q in net64.named_parameters()]
    x64 = x.double()

    def f(*ps):
        return stateless.functional_call(net64, dict(zip(names, ps)), (x64,))

    hardsigmoid.impl = lambda t: torch.clamp(t / 6 + 0.5, 0, 1)
    z = f(*params)
    loss = nn.functional.cross_entropy(z, y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    v = [torch.randn(q.shape, generator=gen, dtype=torch.float64) for q in params]
    hvp = torch.autograd.grad(grads, params, grad_outputs=v)
    _, jv = torch.autograd.functional.jvp(f, tuple(q.detach() for q in params), tuple(v))
    prob = torch.softmax(z.detach(), -1)
    hu = (prob * jv - prob * (prob * jv).sum(-1, keepdim=True)) / x.shape[0]
    ggn = torch.autograd.grad(f(*params), params, grad_outputs=hu)
    hardsigmoid.impl = nn.functional.hardsigmoid
    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts]).detach().numpy()  # noqa: E731
    hardsigmoid.impl = lambda t: torch.clamp(t / 6 + 0.5, 0, 1)
    z32 = net(x)
    loss32 = nn.functional.cross_entropy(z32, y)
    g32 = torch.autograd.grad(loss32, list(net.parameters()), create_graph=True)
    h32 = torch.autograd.grad(g32, list(net.parameters()), grad_outputs=[t.float() for t in v])
    hardsigmoid.impl = nn.functional.hardsigmoid
    return dict(logits=z.detach().numpy(), loss=np.array(loss.item()), grad=flat(grads), v=flat(v), hvp=flat(hvp),
                ggn_v=flat(ggn), logits32=z32.detach().numpy(), loss32=np.array(loss32.item()),
                grad32=flat(g32).astype(np.float32), hvp32=flat(h32).astype(np.float32),
                ggn_v32=flat(ggn).astype(np.float32), param_names=np.array(names),
                **{"shape/" + n: np.array(q.shape, dtype=np.int64) for n, q in zip(names, params)})


def make(name, factory, shape, out_dir=OUT, opset=17, samples=4, keep_bn=False):
    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    torch.manual_seed(0)
    net = factory().eval()
    randomize(net, gen)
    x = torch.rand(samples, *shape, generator=gen)
    y = torch.randint(0, 3, (samples,), generator=gen)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name + ".onnx")
    # keep_bn: BatchNormalization stays a node with its statistics as initializers (not folded
    # into the convolutions), so the gradient is over PyTorch's own parameters.
    mode = torch.onnx.TrainingMode.PRESERVE if keep_bn else torch.onnx.TrainingMode.EVAL
    torch.onnx.export(net, x, path, input_names=["input"], output_names=["logits"], opset_version=opset,
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, training=mode,
                      do_constant_folding=not keep_bn)
    ref = references(factory, net, x, y, gen)
    onnx_names = match_initializers(path, net)
    np.savez_compressed(os.path.join(out_dir, name + ".npz"), x=x.numpy(), y=y.numpy(), onnx_param=np.array(onnx_names),
             onnx_param_transposed=np.zeros(len(onnx_names), dtype=np.int64), **ref)
    print("wrote", path, os.path.getsize(path), "bytes; loss", ref["loss"])


if __name__ == "__main__":
    torch.set_num_threads(1)
    make("activations", ActNet, (2, 6, 6))
    make("groupnorm_cnn", GroupNormCNN, (3, 8, 8))
    make("unet", TinyUNet, (1, 8, 8))
    if "--mobilenet" in sys.argv:
        import torchvision

        def mobilenet():
            return torchvision.models.mobilenet_v3_small(num_classes=3)

        make("mobilenet_v3_small", mobilenet, (3, 64, 64), out_dir=os.path.expanduser("~/.cache/curv"), samples=2,
             keep_bn=True)
