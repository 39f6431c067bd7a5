"""Per-sample Fisher of the split Fashion-MNIST conv net in plain PyTorch, against a training epoch.

The yardstick of issue 22 for `fisher_conv` (benches/fisher.rs): the same net as
experiments/split_fashion_mnist_task.yaml (conv 5x5 16 - pool - conv 5x5 32 - pool - fc 128 -
head of 10, task-IL mask of two columns), one thread (one job per core), the first N training
images of Fashion-MNIST (random images if it is not installed). It times

- `train_b128`: an epoch at batch 128 (forward, backward, Adam step), the training loop's shape;
- `fwd_bwd_b128`: forward and backward at batch 128 without the optimizer step;
- per-sample empirical Fisher (eval mode, true labels, sum_n g_n^2 / N), each in chunks of C:
  `grouped` (a sample per group of one grouped convolution, clbench's path before issue 22),
  `conv_backward_groups` (the convolution's weight-gradient kernel with a group per sample, the
  path clbench takes since issue 22), `unfold_bmm` (per-sample conv weight gradients as a batched matmul of unfolded inputs with the
  output gradients), `vmap_grad` (torch.func.vmap(grad)),
and checks the estimates agree. Run:

    PYTHONPATH=~/.cache/clbench/torch-2.11.0 python3 scripts/bench/fisher_conv.py [N] [repeats]
"""
import gzip
import os
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(1)
torch.set_flush_denormal(True)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 12000
REPEATS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
COLS = [0, 1]
DIR = "/usr/share/datasets/fashion-mnist"


def data(n):
    try:
        with gzip.open(os.path.join(DIR, "train-images-idx3-ubyte.gz")) as f:
            x = torch.frombuffer(bytearray(f.read()[16:]), dtype=torch.uint8)
        with gzip.open(os.path.join(DIR, "train-labels-idx1-ubyte.gz")) as f:
            y = torch.frombuffer(bytearray(f.read()[8:]), dtype=torch.uint8)
        x = x.view(-1, 1, 28, 28)[:n].float() / 255.0
        y = (y[:n].long() % 2)  # two columns in play, as a task-IL head
        print(f"data: Fashion-MNIST from {DIR}, n={n}")
        return x, y
    except OSError:
        g = torch.Generator().manual_seed(1)
        print(f"data: random, n={n}")
        return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 2, (n,), generator=g)


torch.manual_seed(0)
P = {
    "c1.w": torch.randn(16, 1, 5, 5) * 0.2, "c1.b": torch.zeros(16),
    "c2.w": torch.randn(32, 16, 5, 5) * 0.05, "c2.b": torch.zeros(32),
    "fc.w": torch.randn(128, 1568) * 0.025, "fc.b": torch.zeros(128),
    "h.w": torch.randn(10, 128) * 0.09, "h.b": torch.zeros(10),
}


def layers(p, x, rec=None):
    """Forward pass; with `rec`, appends (kind, input, output) of each layer."""
    def lay(kind, name, a, out):
        if rec is not None:
            rec.append((kind, name, a, out))
        return out
    h = lay("conv", "c1", x, F.conv2d(x, p["c1.w"], p["c1.b"], padding=2))
    h = F.max_pool2d(h.relu(), 2)
    a2 = h.detach() if rec is not None else h
    h = lay("conv", "c2", a2, F.conv2d(h, p["c2.w"], p["c2.b"], padding=2))
    h = F.max_pool2d(h.relu(), 2).flatten(1)
    a3 = h.detach() if rec is not None else h
    h = lay("lin", "fc", a3, F.linear(h, p["fc.w"], p["fc.b"])).relu()
    a4 = h.detach() if rec is not None else h
    return lay("lin", "h", a4, F.linear(h, p["h.w"], p["h.b"]))[:, COLS]


def nll_sum(p, x, y):
    return -layers(p, x).log_softmax(-1).gather(1, y[:, None]).sum()


def train_epoch(x, y, step=True):
    p = {k: v.clone().requires_grad_() for k, v in P.items()}
    opt = torch.optim.Adam(p.values(), lr=1e-3)
    for s in range(0, len(x), 128):
        loss = nll_sum(p, x[s:s + 128], y[s:s + 128]) / len(x[s:s + 128])
        if step:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        else:
            torch.autograd.grad(loss, list(p.values()))


def conv_grouped(a, go):
    n, cin = a.shape[:2]
    cout, ho, wo = go.shape[1:]
    g = F.conv2d(a.transpose(0, 1), go.reshape(n * cout, 1, ho, wo), padding=2, groups=n)
    return g[:, :, :5, :5].reshape(cin, n, cout, 5, 5).permute(1, 2, 0, 3, 4)


def conv_unfold(a, go):
    n = a.shape[0]
    cols = F.unfold(a, 5, padding=2)  # [n, cin*25, L]
    return torch.bmm(go.flatten(2), cols.transpose(1, 2)).view(n, go.shape[1], a.shape[1], 5, 5)


def conv_backward_groups(a, go):
    """The convolution's own weight-gradient kernel on the batch viewed as one sample with a
    group per sample: input [1, n*C, H, W], output gradient [1, n*O, H', W'], groups n."""
    n, c, h, w = a.shape
    o = go.shape[1]
    weight = torch.empty(n * o, c, 5, 5)
    _, gw, _ = torch.ops.aten.convolution_backward(
        go.reshape(1, n * o, *go.shape[2:]), a.reshape(1, n * c, h, w), weight, None,
        [1, 1], [2, 2], [1, 1], False, [0, 0], n, [False, True, False])
    return gw.view(n, o, c, 5, 5)


def fisher_layers(x, y, chunk, conv_grads):
    p = {k: v.clone().requires_grad_() for k, v in P.items()}
    sums = {k: torch.zeros_like(v) for k, v in P.items()}
    for s in range(0, len(x), chunk):
        rec = []
        lp = layers(p, x[s:s + chunk], rec).log_softmax(-1)
        nll = -lp.gather(1, y[s:s + chunk, None]).sum()
        gs = torch.autograd.grad(nll, [r[3] for r in rec])
        with torch.no_grad():
            for (kind, name, a, _), g in zip(rec, gs):
                if kind == "lin":
                    sums[name + ".w"] += (g * g).t() @ (a * a)
                    sums[name + ".b"] += (g * g).sum(0)
                else:
                    sums[name + ".w"] += conv_grads(a, g).square().sum(0)
                    sums[name + ".b"] += g.sum((2, 3)).square().sum(0)
    return {k: v / len(x) for k, v in sums.items()}


def fisher_vmap(x, y, chunk):
    from torch.func import grad, vmap
    p = {k: v.clone() for k, v in P.items()}
    sums = {k: torch.zeros_like(v) for k, v in P.items()}

    def one(p, xi, yi):
        return nll_sum(p, xi[None], yi[None])
    g1 = vmap(grad(one), in_dims=(None, 0, 0))
    for s in range(0, len(x), chunk):
        for k, g in g1(p, x[s:s + chunk], y[s:s + chunk]).items():
            sums[k] += g.square().sum(0)
    return {k: v / len(x) for k, v in sums.items()}


def timed(name, f, base=None):
    ts = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        out = f()
        ts.append(time.perf_counter() - t)
    best = min(ts)
    ratio = f"  {best / base:.2f}x train_b128" if base else ""
    print(f"{name:28s} best {best:7.3f} s  (runs {', '.join(f'{t:.2f}' for t in ts)}){ratio}",
          flush=True)
    return best, out


def close(a, b):
    return max(((a[k] - b[k]).abs().max() / b[k].abs().max()).item() for k in a)


x, y = data(N)
train, _ = timed("train_b128 (fwd+bwd+adam)", lambda: train_epoch(x, y))
timed("fwd_bwd_b128", lambda: train_epoch(x, y, step=False), train)
_, ref = timed("unfold_bmm c128", lambda: fisher_layers(x, y, 128, conv_unfold), train)
for c in (32, 64, 128, 256):
    _, f = timed(f"conv_backward_groups c{c}",
                 lambda: fisher_layers(x, y, c, conv_backward_groups), train)
    print(f"  max rel diff vs unfold_bmm: {close(f, ref):.2e}")
for c in (128, 4096):
    _, f = timed(f"grouped c{c}", lambda: fisher_layers(x, y, c, conv_grouped), train)
    print(f"  max rel diff vs unfold_bmm: {close(f, ref):.2e}")
for c in (128,):
    _, f = timed(f"vmap_grad c{c}", lambda: fisher_vmap(x, y, c), train)
    print(f"  max rel diff vs unfold_bmm: {close(f, ref):.2e}")
