"""bench/pycaffe's Python side: LeNet training iterations driven from the caller's Python
through netrun's pycaffe, speaking lenet_bench's stdin protocol ('whole N', 'info',
'quit'), so bench/pycaffe/run can interleave it with the C program on the same net.

'whole N' runs N iterations the way a pycaffe user loops: solver.step(1) from Python, each
timed from Python. 'access N' times N reads of net.blobs['data'].data (microseconds each)
and checks that they are views of the engine's memory, not copies."""
import os
import sys
import tempfile
import time

import numpy as np

import caffe


def main():
    bench_dir = sys.argv[1]
    caffe.set_mode_cpu()
    # lenet_bench puts the net into the solver itself (net_param); here the file names it
    with open(os.path.join(bench_dir, 'lenet_bench_solver.prototxt')) as f:
        text = f.read()
    with tempfile.NamedTemporaryFile('w', suffix='.prototxt', delete=False) as f:
        f.write(text + '\nnet: "%s"\n' % os.path.join(bench_dir, 'lenet_bench.prototxt'))
    s = caffe.SGDSolver(f.name)
    os.remove(f.name)
    net = s.net
    rng = np.random.default_rng(42)
    net.blobs['data'].data[...] = rng.uniform(size=net.blobs['data'].data.shape)
    net.blobs['label'].data[...] = rng.integers(0, 10, size=net.blobs['label'].data.shape)
    for line in sys.stdin:
        f = line.split()
        if not f:
            continue
        if f[0] == 'whole':
            t = []
            for _ in range(int(f[1])):
                t0 = time.perf_counter()
                s.step(1)
                t.append((time.perf_counter() - t0) * 1e3)
            loss = float(net.blobs['loss'].data)
            print('whole loss=%.6g %s' % (loss, ' '.join('%.4f' % x for x in t)), flush=True)
        elif f[0] == 'access':
            n = int(f[1])
            blobs = net.blobs
            a = blobs['data'].data
            t0 = time.perf_counter()
            for _ in range(n):
                a = blobs['data'].data
            us = (time.perf_counter() - t0) * 1e6 / n
            same = a is blobs['data'].data and a.base is not None and not a.flags['OWNDATA']
            print('access us=%.4f view=%d' % (us, int(same)), flush=True)
        elif f[0] == 'info':
            print('info pycaffe', flush=True)
        elif f[0] == 'quit':
            break


if __name__ == '__main__':
    main()
