#!/usr/bin/env python3
"""Plain-PyTorch IMM on IMMTF's shuffled MNIST, independent of clbench.

The protocol of experiments/immtf_shuffled_mnist.yaml (btjhjeon/IMM_tensorflow c5e0ba2): three
tasks, the first the original MNIST and the others a fixed pixel permutation each, one shared
10-way head, a 784-800-800-10 ReLU MLP with dropout 0.2 on the input and 0.5 after each hidden
layer, plain SGD lr 0.1, batch 50, all 60,000 training images a task, tested on the 10,000 test
images of each task.

IMM as clbench's `imm` with `merge_heads: true, merged_weights: evaluate_only`: each task trains
from the previous task's end point; after task t the end points 0..t are merged with equal alphas
and the merge is tested (one row of the accuracy matrix), while training goes on unmerged.
  mean-IMM: theta = sum_k alpha_k theta_k
  mode-IMM: theta = sum_k alpha_k F_k theta_k / sum_k alpha_k F_k, F_k the diagonal Fisher at
            theta_k with labels sampled from the softmax, eval mode, mean over the task's
            training images of per-sample squared gradients, plus 1e-8.
Transfer, from the second task on, theta_prev the weights the task starts from:
  l2:   loss += lambda * sum (theta - theta_prev)^2 (no 1/2, IMMTF's lambda 1e-4);
  drop: each hidden unit's pre-activation z = z_prev + m/keep * (z - z_prev), z_prev computed at
        theta_prev, keep 0.5. --drop-style clbench: one mask m per batch and unit, the model's
        hidden dropout kept (what clbench does); immtf: a mask per sample and unit replacing the
        hidden dropout, which on the first task is plain dropout (IMMTF's DropLinear).

Prints the accuracy matrix of the chosen merge (--merge none: no merge, plain training) and the
final mean-IMM and mode-IMM accuracies (both computed, as IMMTF's scripts do).

  PYTHONPATH=~/.cache/clbench/torch-2.11.0 python3 scripts/crosscheck/imm_reference.py \
      --merge mean --transfer l2 --epochs 3 --seed 1
"""
import argparse
import gzip
import os
import struct
import time

import torch
import torch.nn.functional as F

FLOOR = 1e-8
KEEP = 0.5


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 0x0803:
        rows, cols = struct.unpack(">II", data[8:16])
        pixels = torch.frombuffer(bytearray(data[16:]), dtype=torch.uint8)
        return pixels.view(n, rows * cols).float() / 255.0
    return torch.frombuffer(bytearray(data[8:]), dtype=torch.uint8).long()


def load_mnist(folder):
    def find(stem):
        for name in (stem, stem + ".gz"):
            if os.path.exists(os.path.join(folder, name)):
                return os.path.join(folder, name)
        raise FileNotFoundError(os.path.join(folder, stem))

    return (read_idx(find("train-images-idx3-ubyte")), read_idx(find("train-labels-idx1-ubyte")),
            read_idx(find("t10k-images-idx3-ubyte")), read_idx(find("t10k-labels-idx1-ubyte")))


class Mlp:
    """784-800-800-10 as plain tensors, PyTorch's nn.Linear initialisation."""

    def __init__(self, gen, sizes=(784, 800, 800, 10)):
        self.params = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / fan_in ** 0.5
            w = (torch.rand(fan_out, fan_in, generator=gen) * 2 - 1) * bound
            b = (torch.rand(fan_out, generator=gen) * 2 - 1) * bound
            self.params += [w.requires_grad_(), b.requires_grad_()]

    def layers(self, params=None):
        p = params or self.params
        return [(p[i], p[i + 1]) for i in range(0, len(p), 2)]

    def forward(self, x, train, gen=None, anchor=None, style="clbench"):
        """Logits; in training, dropout and (with `anchor`, or always for style immtf)
        drop-transfer on the hidden layers."""
        h = x * dropout_mask(x.shape, 0.8, gen) if train else x
        layers = self.layers()
        for i, (w, b) in enumerate(layers):
            z = F.linear(h, w, b)
            if i == len(layers) - 1:
                return z
            replaced = train and style == "immtf"
            if train and (anchor is not None or replaced):
                z = drop_transfer(z, h, anchor, i, style, gen)
            h = F.relu(z)
            if train and not replaced:
                h = h * dropout_mask(h.shape, 0.5, gen)


def dropout_mask(shape, keep, gen):
    """Inverted dropout's mask: 1/keep with probability keep, else 0."""
    return (torch.rand(shape, generator=gen) < keep).float() / keep


def drop_transfer(z, h, anchor, layer, style, gen):
    """z_prev + m/keep (z - z_prev); z_prev at the anchor (0 when there is none: plain dropout).
    The mask is per sample and unit (immtf) or per unit, shared by the batch (clbench)."""
    if anchor is None:
        z_prev = torch.zeros_like(z)
    else:
        z_prev = F.linear(h, anchor[2 * layer], anchor[2 * layer + 1])
    shape = z.shape if style == "immtf" else z.shape[1:]
    return z_prev + dropout_mask(shape, KEEP, gen) * (z - z_prev)


def fisher(model, x, gen, chunk=1000):
    """Sampled-label diagonal Fisher, eval mode, per-sample squared gradients / N, + 1e-8."""
    sums = [torch.zeros_like(p) for p in model.params]
    for start in range(0, x.shape[0], chunk):
        xs = x[start:start + chunk]
        hs, zs = [], []
        # The input requires a gradient so that every layer's output is in the graph.
        h = xs.clone().requires_grad_()
        layers = model.layers()
        for i, (w, b) in enumerate(layers):
            hs.append(h.detach())
            z = F.linear(h, w.detach(), b.detach())
            zs.append(z)
            h = F.relu(z) if i < len(layers) - 1 else z
        probs = F.softmax(h.detach(), dim=1)
        labels = torch.multinomial(probs, 1, generator=gen).squeeze(1)
        # Samples are independent in eval mode: the summed loss's gradient with respect to each
        # layer's output holds every sample's own gradient.
        loss = F.cross_entropy(h, labels, reduction="sum")
        grads = torch.autograd.grad(loss, zs)
        for i, (a, g) in enumerate(zip(hs, grads)):
            sums[2 * i] += (g * g).t() @ (a * a)
            sums[2 * i + 1] += (g * g).sum(0)
    return [s / x.shape[0] + FLOOR for s in sums]


def merge(end_points, fishers, kind):
    n = len(end_points)
    alphas = [1.0 / n] * n
    out = []
    for j in range(len(end_points[0])):
        if kind == "mean":
            out.append(sum(a * e[j] for a, e in zip(alphas, end_points)))
        else:
            num = sum(a * f[j] * e[j] for a, f, e in zip(alphas, fishers, end_points))
            den = sum(a * f[j] for a, f in zip(alphas, fishers))
            out.append(num / den)
    return out


@torch.no_grad()
def accuracy(model, params, x, y):
    saved = [p.detach().clone() for p in model.params]
    for p, v in zip(model.params, params):
        p.copy_(v)
    correct = sum((model.forward(x[i:i + 5000], False).argmax(1) == y[i:i + 5000]).sum().item()
                  for i in range(0, x.shape[0], 5000))
    for p, v in zip(model.params, saved):
        p.copy_(v)
    return correct / x.shape[0]


def train_task(model, x, y, args, task, gen):
    anchor = None
    if task > 0 and args.transfer != "none":
        anchor = [p.detach().clone() for p in model.params]
    style = args.drop_style if args.transfer == "drop" else "clbench"
    drop_anchor = anchor if args.transfer == "drop" else None
    opt = torch.optim.SGD(model.params, lr=args.lr)
    n = x.shape[0]
    for epoch in range(args.epochs):
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, args.batch):
            idx = order[start:start + args.batch]
            logits = model.forward(x[idx], True, gen, drop_anchor, style)
            loss = F.cross_entropy(logits, y[idx])
            if anchor is not None and args.transfer == "l2":
                loss = loss + args.lam * sum(((p - a) ** 2).sum()
                                             for p, a in zip(model.params, anchor))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * idx.shape[0]
        print(f"  task {task} epoch {epoch + 1}: loss {total / n:.4f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--merge", choices=["mean", "mode", "none"], default="mean")
    ap.add_argument("--transfer", choices=["l2", "drop", "none"], default="l2")
    ap.add_argument("--drop-style", choices=["clbench", "immtf"], default="clbench")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--lam", type=float, default=1e-4)
    ap.add_argument("--tasks", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__),
                                                   "../../../shared/data/mnist"))
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    xtr, ytr, xte, yte = load_mnist(args.data)
    xtr, ytr = xtr[:args.limit], ytr[:args.limit]
    perm_gen = torch.Generator().manual_seed(0)
    perms = [torch.arange(784)] + [torch.randperm(784, generator=perm_gen)
                                   for _ in range(args.tasks - 1)]
    model = Mlp(gen)
    end_points, fishers, matrix = [], [], []
    started = time.time()
    for t in range(args.tasks):
        train_task(model, xtr[:, perms[t]], ytr, args, t, gen)
        end_points.append([p.detach().clone() for p in model.params])
        fishers.append(fisher(model, xtr[:, perms[t]], gen))
        params = end_points[-1] if args.merge == "none" else merge(end_points, fishers, args.merge)
        matrix.append([accuracy(model, params, xte[:, perms[k]], yte) for k in range(args.tasks)])
    print(f"accuracy matrix (merge {args.merge}, transfer {args.transfer}, "
          f"drop style {args.drop_style}, {args.epochs} epochs, seed {args.seed}); "
          f"row t: after task t, column k: task k")
    for row in matrix:
        print("  " + " ".join(f"{a:.4f}" for a in row))
    final = {}
    for kind in ("none", "mean", "mode"):
        params = end_points[-1] if kind == "none" else merge(end_points, fishers, kind)
        accs = [accuracy(model, params, xte[:, perms[k]], yte) for k in range(args.tasks)]
        final[kind] = accs
        label = {"none": "unmerged (last end point)", "mean": "mean-IMM", "mode": "mode-IMM"}[kind]
        print(f"{label}: " + " ".join(f"{a:.4f}" for a in accs) + f"  mean {sum(accs) / len(accs):.4f}")
    print(f"time {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
