"""bench/nets' PyTorch peer: builds a Caffe prototxt (the layer types of CaffeNet, GoogLeNet and
the ResNet-style net: Input, Convolution, ReLU, Pooling, LRN, InnerProduct, Dropout, Concat,
Softmax, BatchNorm, Scale, Eltwise) as the same torch modules, layer for layer, and times it.

Protocol on stdin/stdout (one line each): "fwd N" or "fwdbwd N" runs N iterations and answers
the mean milliseconds; "flops" answers the forward's multiply-adds x 2; "rss" answers the peak
RSS in kB; "quit" ends. Usage: torch_net.py NET.prototxt THREADS (the staged caffe_pb2 on
PYTHONPATH).
"""
import math
import resource
import sys
import time

import torch
import torch.nn.functional as F
from google.protobuf import text_format

import caffe_pb2


class CaffeNet(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.steps = []
        self.params = torch.nn.ParameterList()
        self.flops = 0
        shapes = {}
        for l in net.layer:
            if l.type == 'Input':
                for top, s in zip(l.top, l.input_param.shape):
                    shapes[top] = list(s.dim)
                self.inputs = [(t, shapes[t]) for t in l.top]
                continue
            self.steps.append(self._layer(l, shapes))

    def _p(self, *shape):
        p = torch.nn.Parameter(torch.randn(*shape) * 0.01)
        self.params.append(p)
        return p

    def _layer(self, l, shapes):
        b, t = list(l.bottom), list(l.top)
        x = shapes[b[0]] if b else None
        if l.type == 'Convolution':
            c = l.convolution_param
            k = c.kernel_size[0] if c.kernel_size else c.kernel_h
            s = c.stride[0] if c.stride else 1
            p = c.pad[0] if c.pad else 0
            g = c.group or 1
            w = self._p(c.num_output, x[1] // g, k, k)
            bias = self._p(c.num_output) if c.bias_term else None
            ho, wo = (x[2] + 2 * p - k) // s + 1, (x[3] + 2 * p - k) // s + 1
            shapes[t[0]] = [x[0], c.num_output, ho, wo]
            self.flops += 2 * x[0] * c.num_output * ho * wo * (x[1] // g) * k * k
            return lambda v: {t[0]: F.conv2d(v[b[0]], w, bias, s, p, 1, g)}
        if l.type == 'InnerProduct':
            n = l.inner_product_param.num_output
            fan = math.prod(x[1:])
            w = self._p(n, fan)
            bias = self._p(n)
            shapes[t[0]] = [x[0], n]
            self.flops += 2 * x[0] * n * fan
            return lambda v: {t[0]: F.linear(v[b[0]].reshape(x[0], -1), w, bias)}
        if l.type == 'ReLU':
            shapes[t[0]] = x
            return lambda v: {t[0]: F.relu(v[b[0]])}
        if l.type == 'Dropout':
            shapes[t[0]] = x
            r = l.dropout_param.dropout_ratio
            return lambda v: {t[0]: F.dropout(v[b[0]], r, True)}
        if l.type == 'Pooling':
            q = l.pooling_param
            if q.global_pooling:
                k, s, p = x[2], 1, 0
            else:
                k, s, p = q.kernel_size, q.stride or 1, q.pad
            # Caffe rounds the output size up, then drops a window that starts in the padding
            ho = int(math.ceil((x[2] + 2 * p - k) / s)) + 1
            if p and (ho - 1) * s >= x[2] + p:
                ho -= 1
            shapes[t[0]] = [x[0], x[1], ho, ho]
            if q.pool == caffe_pb2.PoolingParameter.MAX:
                return lambda v: {t[0]: F.max_pool2d(v[b[0]], k, s, p, ceil_mode=True)}
            return lambda v: {t[0]: F.avg_pool2d(v[b[0]], k, s, p, ceil_mode=True,
                                                 count_include_pad=True)}
        if l.type == 'LRN':
            q = l.lrn_param
            shapes[t[0]] = x
            return lambda v: {t[0]: F.local_response_norm(v[b[0]], q.local_size, q.alpha, q.beta,
                                                          q.k)}
        if l.type == 'Concat':
            ins = [shapes[n] for n in b]
            shapes[t[0]] = [ins[0][0], sum(s[1] for s in ins)] + ins[0][2:]
            return lambda v: {t[0]: torch.cat([v[n] for n in b], 1)}
        if l.type == 'Softmax':
            shapes[t[0]] = x
            return lambda v: {t[0]: F.softmax(v[b[0]], 1)}
        if l.type == 'BatchNorm':
            shapes[t[0]] = x
            mean, var = torch.zeros(x[1]), torch.ones(x[1])
            return lambda v: {t[0]: F.batch_norm(v[b[0]], mean, var, None, None, False, 0.0, 1e-5)}
        if l.type == 'Scale':
            shapes[t[0]] = x
            g, bb = self._p(x[1]), self._p(x[1])
            return lambda v: {t[0]: v[b[0]] * g.view(1, -1, 1, 1) + bb.view(1, -1, 1, 1)}
        if l.type == 'Eltwise':
            shapes[t[0]] = x
            return lambda v: {t[0]: sum(v[n] for n in b)}
        raise SystemExit('torch_net.py: layer type %s is not built here' % l.type)

    def forward(self, v):
        for step in self.steps:
            v.update(step(v))
        return v


def main():
    torch.set_num_threads(int(sys.argv[2]))
    net = caffe_pb2.NetParameter()
    text_format.Merge(open(sys.argv[1]).read(), net)
    m = CaffeNet(net)
    feed = {n: torch.randn(*s) for n, s in m.inputs}
    last = net.layer[-1].top[0]
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == 'quit':
            break
        if cmd[0] == 'flops':
            print(m.flops, flush=True)
            continue
        if cmd[0] == 'rss':
            print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
            continue
        n, bwd = int(cmd[1]), cmd[0] == 'fwdbwd'
        t0 = time.perf_counter()
        for _ in range(n):
            if bwd:
                out = m(dict(feed))[last]
                out.backward(torch.ones_like(out))
            else:
                with torch.no_grad():
                    m(dict(feed))
        print((time.perf_counter() - t0) * 1000.0 / n, flush=True)


main()
