#!/usr/bin/env python3
"""LwF on class-incremental split MNIST in plain PyTorch, outside clbench, as a cross-check.

It writes out the training loop of van de Ven & Tolias's code (train.py, encoder.py and
utils.loss_fn_kd of GMvandeVen/continual-learning) for the one method whose published
class-incremental figure clbench does not reach (24.17%; clbench gives 20.26 at alpha = 1):

- 32x32 inputs (MNIST padded by 2, pixels in [0, 1]), MLP 1024-400-400-10, ReLU, PyTorch's
  default Linear initialisation;
- one Adam (lr 1e-3, betas 0.9/0.999) for all tasks, batch 128, 2000 iterations per task, each
  epoch reshuffled, incomplete last batch dropped;
- on task t the scores of every class seen so far; loss (1/t) CE + (1 - 1/t) alpha KD, KD at
  T = 2, scaled by T^2, the teacher's softmax over the earlier classes padded with zeros.

It prints the accuracy on each task seen after every task and the final average accuracy (ACC).
Nothing in it is shared with clbench, so agreement is evidence about the loss, not the code.

    PYTHONPATH=~/.cache/clbench/torch-2.11.0 CLBENCH_DATA=../shared/data/mnist \\
        python3 scripts/crosscheck/lwf_class_il.py --seed 1 --alpha 1.0

(`scripts/setup` installs the torch wheel there; it runs on one CPU thread in about 3 minutes.)
"""

import argparse
import copy
import gzip
import os
import struct

import torch
import torch.nn.functional as F


def load(folder, images, labels):
    """The IDX pair as ([n, 1024] floats in [0, 1], padded to 32x32; [n] labels)."""
    with gzip.open(os.path.join(folder, images)) as f:
        _, n, rows, cols = struct.unpack(">IIII", f.read(16))
        x = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).view(n, rows, cols)
    with gzip.open(os.path.join(folder, labels)) as f:
        f.read(8)
        y = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).long()
    return F.pad(x.float() / 255, (2, 2, 2, 2)).reshape(n, -1), y


def distillation(scores, teacher_scores, temperature):
    """utils.loss_fn_kd: cross-entropy to the teacher's softened scores, zero-padded, times T^2."""
    log_p = F.log_softmax(scores / temperature, dim=1)
    q = F.softmax(teacher_scores / temperature, dim=1)
    q = torch.cat([q, torch.zeros(q.shape[0], scores.shape[1] - q.shape[1])], dim=1)
    return -(q * log_p).sum(dim=1).mean() * temperature**2


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--alpha", type=float, default=1.0, help="weight of the KD term")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--data", default=os.environ.get("CLBENCH_DATA", "../shared/data/mnist"))
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    x_train, y_train = load(args.data, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    x_test, y_test = load(args.data, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

    model = torch.nn.Sequential(
        torch.nn.Linear(x_train.shape[1], 400),
        torch.nn.ReLU(),
        torch.nn.Linear(400, 400),
        torch.nn.ReLU(),
        torch.nn.Linear(400, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999))
    teacher = None
    for task in range(1, 6):
        new = [2 * task - 2, 2 * task - 1]
        active = list(range(2 * task))
        rows = ((y_train == new[0]) | (y_train == new[1])).nonzero().squeeze(1)
        step = 0
        while step < args.iterations:
            order = rows[torch.randperm(len(rows))]
            for b in range(len(order) // 128):
                if step == args.iterations:
                    break
                batch = order[b * 128 : (b + 1) * 128]
                x, y = x_train[batch], y_train[batch]
                scores = model(x)[:, active]
                loss = F.cross_entropy(scores, y)
                if teacher is not None:
                    with torch.no_grad():
                        teacher_scores = teacher(x)[:, : 2 * (task - 1)]
                    kd = distillation(scores, teacher_scores, args.temperature)
                    loss = loss / task + (1 - 1 / task) * args.alpha * kd
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
        teacher = copy.deepcopy(model).eval()
        with torch.no_grad():
            accuracy = []
            for seen in range(1, task + 1):
                mask = (y_test == 2 * seen - 2) | (y_test == 2 * seen - 1)
                predicted = model(x_test[mask])[:, active].argmax(dim=1)
                accuracy.append((predicted == y_test[mask]).float().mean().item())
        print(f"after task {task}: " + " ".join(f"{a:.3f}" for a in accuracy), flush=True)
    print(f"ACC {100 * sum(accuracy) / len(accuracy):.2f}%")


if __name__ == "__main__":
    main()
