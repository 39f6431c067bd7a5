#!/usr/bin/env python3
"""Where class-incremental LwF's loss puts a new class's logit, for one input, with free logits.

On task t of split MNIST (two classes per task) an image of a new class c is scored over the
2t classes seen so far, with loss (1/t) CE(c) + (1 - 1/t) alpha T^2 KD, the teacher's softmax at
T over the 2(t-1) earlier classes padded with zeros on the new ones (van de Ven & Tolias's
LwF). The loss is convex in the logits, so gradient descent finds its minimum. If at that
minimum the new class's logit is below the largest old one, the argmax never picks the new
class however long the network trains: LwF then keeps task 1 and learns nothing after it.

    python3 scripts/crosscheck/lwf_fixed_point.py            # alpha 1, 0.3 and 0.1; no packages needed
"""

import math


def softmax(z, temperature=1.0):
    top = max(z)
    e = [math.exp((v - top) / temperature) for v in z]
    total = sum(e)
    return [v / total for v in e]


def new_class_margin(task, teacher_top, alpha, temperature=2.0, steps=20000, lr=0.5):
    """Logit of the true new class minus the largest old logit at the loss's minimum.

    The teacher gives `teacher_top` to one old class and shares the rest evenly (`None`: all
    old classes alike)."""
    old = 2 * (task - 1)
    top = 1.0 / old if teacher_top is None else teacher_top
    target = [(1 - top) / (old - 1)] * old
    target[0] = top
    target += [0.0, 0.0]
    true = old  # the first new class
    w = 1.0 / task
    z = [0.0] * (old + 2)
    for _ in range(steps):
        p = softmax(z)
        p_t = softmax(z, temperature)
        grad = [
            w * (p[c] - (c == true)) + (1 - w) * alpha * temperature * (p_t[c] - target[c])
            for c in range(old + 2)
        ]
        z = [zc - lr * g for zc, g in zip(z, grad)]
    return z[true] - max(z[:old])


def main():
    print("margin = new class's logit - largest old logit at the minimum (negative: never predicted)")
    for alpha in (1.0, 0.3, 0.1):
        for task in (2, 3, 5):
            cells = ", ".join(
                f"teacher {'uniform' if top is None else top}: "
                f"{new_class_margin(task, top, alpha):+.2f}"
                for top in (0.999, 0.9, 0.6, None)
            )
            print(f"alpha {alpha}, task {task}: {cells}")


if __name__ == "__main__":
    main()
