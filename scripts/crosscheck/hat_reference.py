#!/usr/bin/env python3
"""The HAT reference code's hat, sgd-frozen, sgd and ewc in plain PyTorch, outside clbench, as a cross-check.

It writes out the loops of joansj/hat at 6fd0b9d (src/approaches/hat.py, sgd.py, sgd_frozen.py,
ewc.py, src/utils.py's fisher_matrix_diag, src/networks/mlp.py and mlp_hat.py) in today's PyTorch,
for the two protocols clbench's files reproduce:

- `--experiment mnist2` (experiments/hat_mnist2.yaml): digits 0-4 and 5-9, a head per task; SGD
  lr 0.05 (no momentum), batch 64, up to --nepochs a task; networks/mlp.py (784-800-800-800, ReLU,
  dropout 0.5) and, for hat, networks/mlp_hat.py (784-2000-2000, input dropout 0.2, dropout 0.5);
  clipgrad 10000 (100 for ewc); ewc lambda 5000.
- `--experiment split_mnist` (experiments/ucl_split_mnist.yaml, csm9493/UCL's settings): five tasks
  of two digits; batch 256, up to --nepochs a task; Adam 1e-3 without clipping for ewc and sgd on
  UCL's networks/mlp.py (2x256, dropout 0.5), SGD 0.05 with clipgrad 10000 for hat on UCL's
  networks/mlp_hat.py (2x256, input dropout 0.5, hidden dropout 0.2); ewc lambda 4000; the
  learning-rate schedule never stops a task (UCL's `break` is commented out).

Both: inputs normalised with mean 0.1307, std 0.3081; after each epoch the validation loss (the
approach's whole criterion) decides: 5 epochs without a better one divide lr by 3 with a fresh
optimizer, mnist2's task stops once lr < 1e-4, and the best-validation weights are restored at the
end of the task. EWC's Fisher is fisher_matrix_diag: batches of 20 in data order, model.train()
(dropout on), 20 * grad^2 of each batch's mean loss (the last, smaller batch too), over N; merged
F <- (F_new + t F_old)/(t+1); penalty lambda/2 * sum F (theta_old - theta)^2. HAT: per layer and
task an embedding (N(0, 1)), gate sigmoid(s e), s annealed over the epoch from 1/s_max to s_max,
loss CE + c * reg, gradient conditioning by 1 - min(post, pre) of the cumulative mask, embedding
gradient compensation, clamp to +-6; c 0.75, s_max 400.

One difference from the reference, as in clbench's files: the reference validates on a copy of
the training data; this holds 10% of each task's training images out (stratified by class, drawn
from --seed), as clbench's holdout selection does (with its own draw). Nothing here is shared with
clbench: it prints the accuracy on every task after each task and the final average (ACC).

    PYTHONPATH=~/.cache/clbench/torch-2.11.0 \\
        python3 scripts/crosscheck/hat_reference.py --experiment mnist2 --approach hat --seed 1 --nepochs 5

Measured (2026-12-05, torch 2.11.0 on the CPU), ACC % on seeds 1, 2, 3:
- mnist2 at --nepochs 5: hat 98.47, 98.36, 98.45; sgd-frozen 90.08, 90.47, 90.01; ewc 97.23,
  97.53, 97.07. clbench's hat_mnist2.yaml capped at 5 epochs: hat 98.36, 98.31, 98.30; frozen
  90.10, 89.96, 89.99; ewc 97.13, 96.74, 97.23.
- split_mnist at --nepochs 100 (UCL's 100): hat 99.82 on seed 1 (clbench's ucl_split_mnist.yaml:
  99.76); ewc 99.11, 98.71, 96.77 on seeds 1-3 (clbench: 98.03, 98.33, 98.15; 98.27 ± 0.10 over
  5 seeds). EWC's spread over seeds is wide in both.
"""

import argparse
import copy
import gzip
import os
import struct

import torch
import torch.nn.functional as F


def load(folder, images, labels):
    """The IDX pair as ([n, 784] floats normalised as the reference; [n] labels)."""
    with gzip.open(os.path.join(folder, images)) as f:
        _, n, rows, cols = struct.unpack(">IIII", f.read(16))
        x = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).view(n, rows * cols)
    with gzip.open(os.path.join(folder, labels)) as f:
        f.read(8)
        y = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).long()
    return (x.float() / 255 - 0.1307) / 0.3081, y


def tasks_of(experiment):
    if experiment == "mnist2":
        return [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    return [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


def split(x, y, tasks, gen, valid_fraction):
    """Per task: (train, valid) with labels as positions in the task, valid stratified by class."""
    out = []
    for digits in tasks:
        tr, va = [], []
        for d in digits:
            idx = torch.nonzero(y == d).view(-1)
            idx = idx[torch.randperm(len(idx), generator=gen)]
            k = int(round(len(idx) * valid_fraction))
            va.append(idx[:k])
            tr.append(idx[k:])
        remap = torch.zeros(10, dtype=torch.long)
        remap[torch.tensor(digits)] = torch.arange(len(digits))

        def pick(ids):
            ids = torch.sort(torch.cat(ids)).values
            return x[ids], remap[y[ids]]

        out.append((pick(tr), pick(va) if valid_fraction > 0 else None))
    return out


class Mlp(torch.nn.Module):
    """networks/mlp.py: ReLU layers, dropout after each, a head per task."""

    def __init__(self, widths, heads, p_in, p):
        super().__init__()
        dims = [784] + widths
        self.fc = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        self.last = torch.nn.ModuleList(torch.nn.Linear(widths[-1], n) for n in heads)
        self.drop_in, self.drop = torch.nn.Dropout(p_in), torch.nn.Dropout(p)

    def forward(self, x, t):
        h = self.drop_in(x)
        for fc in self.fc:
            h = self.drop(F.relu(fc(h)))
        return self.last[t](h)


class MlpHat(torch.nn.Module):
    """networks/mlp_hat.py: h = drop(relu(fc(h))) * sigmoid(s * e[t]) per layer."""

    def __init__(self, widths, heads, p_in, p, ntasks):
        super().__init__()
        dims = [784] + widths
        self.fc = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        self.efc = torch.nn.ModuleList(torch.nn.Embedding(ntasks, w) for w in widths)
        self.last = torch.nn.ModuleList(torch.nn.Linear(widths[-1], n) for n in heads)
        self.drop_in, self.drop = torch.nn.Dropout(p_in), torch.nn.Dropout(p)

    def mask(self, t, s):
        return [torch.sigmoid(s * e.weight[t]) for e in self.efc]

    def forward(self, x, t, s=1.0):
        masks = self.mask(t, s)
        h = self.drop_in(x)
        for fc, m in zip(self.fc, masks):
            h = self.drop(F.relu(fc(h))) * m
        return self.last[t](h), masks

    def get_view_for(self, name, masks):
        """1 - this of the cumulative masks conditions each weight and bias (as the reference)."""
        for k, fc in enumerate(self.fc):
            if name == f"fc.{k}.weight":
                post = masks[k].view(-1, 1).expand_as(fc.weight)
                if k == 0:
                    return post
                pre = masks[k - 1].view(1, -1).expand_as(fc.weight)
                return torch.min(post, pre)
            if name == f"fc.{k}.bias":
                return masks[k].view(-1)
        return None


class Appr:
    """The reference's training loop (approaches/*.py), shared by sgd, sgd-frozen, ewc and hat."""

    def __init__(self, args, model):
        self.args, self.model = args, model
        self.ce = torch.nn.CrossEntropyLoss()
        self.fisher = self.model_old = None
        self.mask_pre = self.mask_back = None

    def optimizer(self, lr):
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.args.opt == "adam":
            return torch.optim.Adam(params, lr=lr)
        return torch.optim.SGD(params, lr=lr)

    def criterion(self, t, output, targets, masks=None):
        loss = self.ce(output, targets)
        a = self.args
        if a.approach == "ewc" and t > 0:
            reg = 0
            for (n, p), (_, p_old) in zip(self.model.named_parameters(), self.model_old.named_parameters()):
                reg = reg + torch.sum(self.fisher[n] * (p_old - p).pow(2)) / 2
            loss = loss + a.lamb * reg
        if a.approach == "hat":
            reg, count = 0, 0
            if self.mask_pre is not None:
                for m, mp in zip(masks, self.mask_pre):
                    aux = 1 - mp
                    reg, count = reg + (m * aux).sum(), count + aux.sum()
            else:
                for m in masks:
                    reg, count = reg + m.sum(), count + m.numel()
            loss = loss + a.c * reg / count
        return loss

    def forward(self, t, x, s=None):
        if self.args.approach == "hat":
            out, masks = self.model(x, t, s=self.args.smax if s is None else s)
            return out, masks
        return self.model(x, t), None

    def train(self, t, train, valid):
        a = self.args
        best_loss, best = float("inf"), copy.deepcopy(self.model.state_dict())
        lr, patience = a.lr, a.lr_patience
        opt = self.optimizer(lr)
        for e in range(a.nepochs):
            self.train_epoch(t, *train, opt)
            valid_loss, _ = self.eval(t, *valid)
            if valid_loss < best_loss:
                best_loss, best, patience = valid_loss, copy.deepcopy(self.model.state_dict()), a.lr_patience
            else:
                patience -= 1
                if patience <= 0:
                    lr /= a.lr_factor
                    if lr < a.lr_min and a.experiment == "mnist2":
                        break
                    patience = a.lr_patience
                    opt = self.optimizer(lr)
        self.model.load_state_dict(best)
        if a.approach == "sgd-frozen" and t == 0:
            for n, p in self.model.named_parameters():
                if not n.startswith("last"):
                    p.requires_grad = False
        if a.approach == "ewc":
            self.model_old = copy.deepcopy(self.model)
            for p in self.model_old.parameters():
                p.requires_grad = False
            fisher_old = self.fisher
            self.fisher = self.fisher_matrix_diag(t, *train)
            if t > 0:
                for n in self.fisher:
                    self.fisher[n] = (self.fisher[n] + fisher_old[n] * t) / (t + 1)
        if a.approach == "hat":
            with torch.no_grad():
                mask = [m.detach().clone() for m in self.model.mask(t, a.smax)]
            self.mask_pre = mask if t == 0 else [torch.max(mp, m) for mp, m in zip(self.mask_pre, mask)]
            self.mask_back = {}
            for n, _ in self.model.named_parameters():
                vals = self.model.get_view_for(n, self.mask_pre)
                if vals is not None:
                    self.mask_back[n] = 1 - vals

    def train_epoch(self, t, x, y, opt):
        a = self.args
        self.model.train()
        r = torch.randperm(len(x))
        for i in range(0, len(r), a.sbatch):
            b = r[i:i + a.sbatch]
            s = (a.smax - 1 / a.smax) * i / len(r) + 1 / a.smax
            out, masks = self.forward(t, x[b], s)
            loss = self.criterion(t, out, y[b], masks)
            opt.zero_grad()
            loss.backward()
            if a.approach == "hat":
                if t > 0:
                    for n, p in self.model.named_parameters():
                        if n in self.mask_back:
                            p.grad *= self.mask_back[n]
                for n, p in self.model.named_parameters():
                    if n.startswith("efc"):
                        num = torch.cosh(torch.clamp(s * p.data, -50, 50)) + 1
                        den = torch.cosh(p.data) + 1
                        p.grad *= a.smax / s * num / den
            if a.clipgrad:
                torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], a.clipgrad)
            opt.step()
            if a.approach == "hat":
                for n, p in self.model.named_parameters():
                    if n.startswith("efc"):
                        p.data = torch.clamp(p.data, -6, 6)

    @torch.no_grad()
    def eval(self, t, x, y):
        self.model.eval()
        total_loss, hits = 0.0, 0
        for i in range(0, len(x), self.args.sbatch):
            xb, yb = x[i:i + self.args.sbatch], y[i:i + self.args.sbatch]
            out, masks = self.forward(t, xb)
            total_loss += self.criterion(t, out, yb, masks).item() * len(xb)
            hits += (out.argmax(1) == yb).sum().item()
        return total_loss / len(x), hits / len(x)

    def fisher_matrix_diag(self, t, x, y, sbatch=20):
        fisher = {n: torch.zeros_like(p) for n, p in self.model.named_parameters()}
        self.model.train()
        for i in range(0, len(x), sbatch):
            self.model.zero_grad()
            out, _ = self.forward(t, x[i:i + sbatch])
            self.ce(out, y[i:i + sbatch]).backward()  # the penalty term is zero here
            for n, p in self.model.named_parameters():
                if p.grad is not None:
                    fisher[n] += sbatch * p.grad.pow(2)
        return {n: f / len(x) for n, f in fisher.items()}


def settings(args):
    """The reference's per-experiment, per-approach settings."""
    mnist2 = args.experiment == "mnist2"
    args.sbatch = 64 if mnist2 else 256
    args.lr_patience, args.lr_factor, args.lr_min = 5, 3, 1e-4
    args.c, args.smax = 0.75, 400.0
    args.lamb = 5000.0 if mnist2 else 4000.0
    if mnist2:
        args.opt, args.lr = "sgd", 0.05
        args.clipgrad = 100 if args.approach == "ewc" else 10000
    elif args.approach == "hat":
        args.opt, args.lr, args.clipgrad = "sgd", 0.05, 10000
    else:
        args.opt, args.lr, args.clipgrad = "adam", 1e-3, None


def network(args, heads):
    mnist2 = args.experiment == "mnist2"
    if args.approach == "hat":
        if mnist2:
            return MlpHat([2000, 2000], heads, 0.2, 0.5, len(heads))
        return MlpHat([256, 256], heads, 0.5, 0.2, len(heads))
    return Mlp([800, 800, 800] if mnist2 else [256, 256], heads, 0.0, 0.5)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--experiment", choices=["mnist2", "split_mnist"], default="mnist2")
    p.add_argument("--approach", choices=["sgd", "sgd-frozen", "ewc", "hat"], required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--nepochs", type=int, default=10)
    p.add_argument("--valid", type=float, default=0.1, help="held-out fraction per task")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=os.environ.get("CLBENCH_DATA", "../shared/data/mnist"))
    args = p.parse_args()
    settings(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    xtr, ytr = load(args.data, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    xte, yte = load(args.data, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    tasks = tasks_of(args.experiment)
    train = split(xtr, ytr, tasks, gen, args.valid)
    test = [s[0] for s in split(xte, yte, tasks, gen, 0.0)]
    model = network(args, [len(d) for d in tasks])
    appr = Appr(args, model)
    for t in range(len(tasks)):
        appr.train(t, train[t][0], train[t][1])
        accs = [appr.eval(u, *test[u])[1] for u in range(t + 1)]
        print(f"after task {t}: " + " ".join(f"{100 * a:.2f}" for a in accs), flush=True)
    accs = [appr.eval(u, *test[u])[1] for u in range(len(tasks))]
    acc = 100 * sum(accs) / len(accs)
    print(f"ACC {args.experiment} {args.approach} seed {args.seed} nepochs {args.nepochs}: {acc:.2f}")


if __name__ == "__main__":
    main()
