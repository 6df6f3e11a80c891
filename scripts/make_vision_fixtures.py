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


HARDSIGMOID = nn.functional.hardsigmoid


def hardsigmoid_clamp(x, inplace=False):
    """F.hardsigmoid as a clamp: the same values, and the same derivatives away from the kinks.
    The references use it because PyTorch has no double backward for hardsigmoid."""
    return torch.clamp(x / 6 + 0.5, 0, 1)


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
        gate = nn.functional.hardsigmoid(self.se(h.mean(dim=(2, 3))))
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


class LSTMClassifier(nn.Module):
    """Two-layer batch-first nn.LSTM, classified from the last layer's final hidden state h_n[-1]
    (ONNX: LSTM's Y_h) plus the mean of its outputs over time (Y)."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(3, 5, num_layers=2, batch_first=True)
        self.fc = nn.Linear(5, 3)
        self.fc_mean = nn.Linear(5, 3)

    def forward(self, x):
        out, (h, _) = self.rnn(x)
        return self.fc(h[-1]) + self.fc_mean(out.mean(dim=1))


class BiLSTMClassifier(nn.Module):
    """One bidirectional batch-first nn.LSTM layer; the classifier reads both final states."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(3, 4, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        _, (h, _) = self.rnn(x)
        return self.fc(torch.cat([h[0], h[1]], dim=1))


class GRUClassifier(nn.Module):
    """Two-layer batch-first nn.GRU, classified from h_n[-1] (ONNX: GRU's Y_h)."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, 5, num_layers=2, batch_first=True)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        _, h = self.rnn(x)
        return self.fc(h[-1])


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

    nn.functional.hardsigmoid = hardsigmoid_clamp  # restored below
    z = f(*params)
    loss = nn.functional.cross_entropy(z, y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    v = [torch.randn(q.shape, generator=gen, dtype=torch.float64) for q in params]
    hvp = torch.autograd.grad(grads, params, grad_outputs=v)
    _, jv = torch.autograd.functional.jvp(f, tuple(q.detach() for q in params), tuple(v))
    prob = torch.softmax(z.detach(), -1)
    hu = (prob * jv - prob * (prob * jv).sum(-1, keepdim=True)) / x.shape[0]
    ggn = torch.autograd.grad(f(*params), params, grad_outputs=hu)
    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts]).detach().numpy()  # noqa: E731
    z32 = net(x)
    loss32 = nn.functional.cross_entropy(z32, y)
    g32 = torch.autograd.grad(loss32, list(net.parameters()), create_graph=True)
    h32 = torch.autograd.grad(g32, list(net.parameters()), grad_outputs=[t.float() for t in v])
    nn.functional.hardsigmoid = HARDSIGMOID
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


def onnx_lstm(x, w, r, b, reverse=False):
    """ONNX LSTM of one direction (gates i, o, f, c; zero initial state): x [B, T, I] -> [B, T, H]."""
    hidden = r.shape[-1]
    h = x.new_zeros(x.shape[0], hidden)
    c = x.new_zeros(x.shape[0], hidden)
    steps = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
    out = [None] * x.shape[1]
    for t in steps:
        z = x[:, t] @ w.T + h @ r.T + b[: 4 * hidden] + b[4 * hidden:]
        i, o, f, g = torch.sigmoid(z[:, :hidden]), torch.sigmoid(z[:, hidden:2 * hidden]), \
            torch.sigmoid(z[:, 2 * hidden:3 * hidden]), torch.tanh(z[:, 3 * hidden:])
        c = f * c + i * g
        h = o * torch.tanh(c)
        out[t] = h
    return torch.stack(out, dim=1)


def onnx_gru(x, w, r, b):
    """ONNX GRU of one direction (gates z, r, h; linear_before_reset = 1; zero initial state)."""
    hidden = r.shape[-1]
    h = x.new_zeros(x.shape[0], hidden)
    out = []
    for t in range(x.shape[1]):
        a = x[:, t] @ w.T + b[: 3 * hidden]
        u = h @ r.T + b[3 * hidden:]
        z = torch.sigmoid(a[:, :hidden] + u[:, :hidden])
        rr = torch.sigmoid(a[:, hidden:2 * hidden] + u[:, hidden:2 * hidden])
        n = torch.tanh(a[:, 2 * hidden:] + rr * u[:, 2 * hidden:])
        h = (1 - z) * n + z * h
        out.append(h)
    return torch.stack(out, dim=1)


def make_rnn(name, cls, shape, samples=4):
    """As make(), but the gradient is over the ONNX initializers: the exporter reorders LSTM gates
    and concatenates biases, so PyTorch's parameters have no one-to-one image. The references run
    the ONNX LSTM equations in PyTorch on those initializers, checked equal to nn.LSTM's logits."""
    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    torch.manual_seed(0)
    net = cls().eval()
    randomize(net, gen)
    x = torch.rand(samples, *shape, generator=gen)
    y = torch.randint(0, 3, (samples,), generator=gen)
    path = os.path.join(OUT, name + ".onnx")
    torch.onnx.export(net, x, path, input_names=["input"], output_names=["logits"], opset_version=17,
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    graph = onnx.load(path).graph
    inits = {i.name: torch.tensor(numpy_helper.to_array(i)) for i in graph.initializer}
    lstms = [n for n in graph.node if n.op_type in ("LSTM", "GRU")]
    names = [n for n in inits if inits[n].dtype == torch.float32]

    def forward(ps, xx):
        p = dict(zip(names, ps))
        if cls is LSTMClassifier:
            h = xx
            for node in lstms:
                h = onnx_lstm(h, p[node.input[1]][0], p[node.input[2]][0], p[node.input[3]][0])
            return h[:, -1] @ p["fc.weight"].T + p["fc.bias"] + h.mean(dim=1) @ p["fc_mean.weight"].T + p["fc_mean.bias"]
        if cls is GRUClassifier:
            h = xx
            for node in lstms:
                h = onnx_gru(h, p[node.input[1]][0], p[node.input[2]][0], p[node.input[3]][0])
            return h[:, -1] @ p["fc.weight"].T + p["fc.bias"]
        node = lstms[0]
        w, r, b = p[node.input[1]], p[node.input[2]], p[node.input[3]]
        fwd = onnx_lstm(xx, w[0], r[0], b[0])[:, -1]
        bwd = onnx_lstm(xx, w[1], r[1], b[1], reverse=True)[:, 0]
        return torch.cat([fwd, bwd], dim=1) @ p["fc.weight"].T + p["fc.bias"]

    out = {}
    for dtype, sfx in ((torch.float64, ""), (torch.float32, "32")):
        params = [inits[n].to(dtype).clone().requires_grad_(True) for n in names]
        xx = x.to(dtype)
        z = forward(params, xx)
        ref = (net.double() if dtype == torch.float64 else net.float())(xx)
        err = (z - ref).abs().max().item()
        assert err < (1e-12 if sfx == "" else 1e-5), "ONNX LSTM equations differ from nn.LSTM by %g" % err
        loss = nn.functional.cross_entropy(z, y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        if sfx == "":
            v = [torch.randn(q.shape, generator=gen, dtype=torch.float64) for q in params]
        hvp = torch.autograd.grad(grads, params, grad_outputs=[t.to(dtype) for t in v])
        f = lambda *ps: forward(ps, xx)  # noqa: E731
        _, jv = torch.autograd.functional.jvp(f, tuple(q.detach() for q in params), tuple(t.to(dtype) for t in v))
        prob = torch.softmax(z.detach(), -1)
        hu = (prob * jv - prob * (prob * jv).sum(-1, keepdim=True)) / x.shape[0]
        ggn = torch.autograd.grad(forward(params, xx), params, grad_outputs=hu)
        flat = lambda ts: torch.cat([t.reshape(-1) for t in ts]).detach().numpy()  # noqa: E731
        out.update({"logits" + sfx: z.detach().numpy(), "loss" + sfx: np.array(loss.item()), "grad" + sfx: flat(grads),
                    "hvp" + sfx: flat(hvp), "ggn_v" + sfx: flat(ggn)})
    out["v"] = torch.cat([t.reshape(-1) for t in v]).numpy()
    np.savez_compressed(os.path.join(OUT, name + ".npz"), x=x.numpy(), y=y.numpy(), param_names=np.array(names),
                        onnx_param=np.array(names), onnx_param_transposed=np.zeros(len(names), dtype=np.int64),
                        **{"shape/" + n: np.array(inits[n].shape, dtype=np.int64) for n in names}, **out)
    print("wrote", path, os.path.getsize(path), "bytes; loss", out["loss"])


if __name__ == "__main__":
    torch.set_num_threads(1)
    make("activations", ActNet, (2, 6, 6))
    make("groupnorm_cnn", GroupNormCNN, (3, 8, 8))
    make("unet", TinyUNet, (1, 8, 8))
    make_rnn("lstm", LSTMClassifier, (6, 3))
    make_rnn("bilstm", BiLSTMClassifier, (5, 3))
    make_rnn("gru", GRUClassifier, (6, 3))
    if "--mobilenet" in sys.argv:
        import torchvision

        def mobilenet():
            return torchvision.models.mobilenet_v3_small(num_classes=3)

        make("mobilenet_v3_small", mobilenet, (3, 64, 64), out_dir=os.path.expanduser("~/.cache/curv"), samples=2,
             keep_bn=True)
