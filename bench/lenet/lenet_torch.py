#!/usr/bin/python3
"""lenet_torch: the PyTorch peer of bench/lenet (Debian's python3-torch, run by /usr/bin/python3).

The same LeNet as bench/lenet/lenet_bench.prototxt (conv 20 5x5, max pool 2/2, conv 50 5x5,
max pool 2/2, fc 500, ReLU, fc 10, softmax cross-entropy averaged over the batch), batch 64,
Xavier-uniform weights and zero biases as Caffe's fillers, and the same solver: SGD, lr 0.01
(biases 0.02, Caffe's lr_mult 2), momentum 0.9, weight decay 5e-4 on every parameter.

It speaks lenet_bench's protocol on stdin/stdout (see lenet_bench.c), so the driver can
interleave the two:
  whole N   ->  "whole loss=L t1 ... tN": N ordinary training steps
                (zero_grad, forward, loss.backward(), optimizer.step()), ms each;
  layers N  ->  N lines "layers total=T conv1/f=ms conv1/b=ms ... update=ms loss=L": the net
                run layer by layer, each layer's output detached so that its backward is a
                separate autograd call timed on its own (as Caffe's per-layer timing);
  info      ->  "info key=value ...".
Threads: torch.set_num_threads(--threads), the same count as netrun's OpenBLAS threads.
"""
import argparse
import sys
import time

import torch
import torch.nn.functional as F

LAYERS = ["conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "loss"]


def build(seed):
    torch.manual_seed(seed)
    conv1 = torch.nn.Conv2d(1, 20, 5)
    conv2 = torch.nn.Conv2d(20, 50, 5)
    ip1 = torch.nn.Linear(800, 500)
    ip2 = torch.nn.Linear(500, 10)
    for m in (conv1, conv2, ip1, ip2):
        # Caffe's xavier filler: uniform(+-sqrt(3 / fan_in)); constant 0 bias.
        fan_in = m.weight[0].numel()
        bound = (3.0 / fan_in) ** 0.5
        torch.nn.init.uniform_(m.weight, -bound, bound)
        torch.nn.init.zeros_(m.bias)
    mods = dict(conv1=conv1, conv2=conv2, ip1=ip1, ip2=ip2)
    weights = [m.weight for m in mods.values()]
    biases = [m.bias for m in mods.values()]
    opt = torch.optim.SGD(
        [dict(params=weights, lr=0.01), dict(params=biases, lr=0.02)],
        lr=0.01, momentum=0.9, weight_decay=5e-4)
    return mods, opt


def stages(m):
    """(name, function) per Caffe layer, in order; the last one takes (x, label)."""
    return [
        ("conv1", m["conv1"]),
        ("pool1", lambda x: F.max_pool2d(x, 2, 2)),
        ("conv2", m["conv2"]),
        ("pool2", lambda x: F.max_pool2d(x, 2, 2)),
        ("ip1", lambda x: m["ip1"](x.flatten(1))),
        ("relu1", F.relu),
        ("ip2", m["ip2"]),
    ]


def whole_step(m, opt, data, label):
    opt.zero_grad()
    x = data
    for _, f in stages(m):
        x = f(x)
    loss = F.cross_entropy(x, label)
    loss.backward()
    opt.step()
    return loss.item()


def layers_step(m, opt, data, label):
    t = {}
    now = time.perf_counter
    t0 = now()
    opt.zero_grad()
    ins, outs = [], []
    x = data
    for name, f in stages(m):
        a = now()
        y = f(x)
        t[name + "/f"] = now() - a
        ins.append(x)
        outs.append(y)
        x = y.detach().requires_grad_()
    a = now()
    loss = F.cross_entropy(x, label)
    t["loss/f"] = now() - a
    a = now()
    loss.backward()
    t["loss/b"] = now() - a
    grad = x.grad
    names = [n for n, _ in stages(m)]
    for i in range(len(names) - 1, -1, -1):
        a = now()
        outs[i].backward(grad)
        t[names[i] + "/b"] = now() - a
        grad = ins[i].grad
    a = now()
    opt.step()
    t["update"] = now() - a
    total = now() - t0
    return total, t, loss.item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(True)
    mods, opt = build(args.seed)
    g = torch.Generator().manual_seed(42)
    data = torch.rand(64, 1, 28, 28, generator=g)
    label = torch.randint(0, 10, (64,), generator=g)
    # data needs no gradient (as Caffe's input blob): conv1's backward computes only the
    # parameter gradients, in both programs.
    out = sys.stdout
    for line in sys.stdin:
        parts = line.split()
        if len(parts) == 2 and parts[0] == "whole":
            n = int(parts[1])
            ts = []
            loss = 0.0
            for _ in range(n):
                a = time.perf_counter()
                loss = whole_step(mods, opt, data, label)
                ts.append((time.perf_counter() - a) * 1e3)
            out.write("whole loss=%.6g %s\n" % (loss, " ".join("%.4f" % v for v in ts)))
        elif len(parts) == 2 and parts[0] == "layers":
            for _ in range(int(parts[1])):
                total, t, loss = layers_step(mods, opt, data, label)
                fields = " ".join("%s=%.4f" % (k, v * 1e3) for k, v in t.items())
                out.write("layers total=%.4f %s loss=%.6g\n" % (total * 1e3, fields, loss))
        elif parts and parts[0] == "info":
            out.write("info torch=%s threads=%d mkldnn=%s\n" % (
                torch.__version__, torch.get_num_threads(),
                torch.backends.mkldnn.is_available()))
        else:
            break
        out.flush()


if __name__ == "__main__":
    main()
