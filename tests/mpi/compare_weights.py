"""compare_weights.py A.caffemodel B.caffemodel [rtol]: exits 1 unless every parameter blob
of A equals B's within rtol relative to the largest magnitude of the blob (prints the worst)."""
import sys

import numpy as np
import caffe_pb2  # the staged caffe/proto folder alone: no C extension is loaded


def load(path):
    m = caffe_pb2.NetParameter()
    with open(path, 'rb') as f:
        m.ParseFromString(f.read())
    return {(l.name, i): np.array(b.data, dtype=np.float64)
            for l in m.layer for i, b in enumerate(l.blobs)}


a, b = load(sys.argv[1]), load(sys.argv[2])
rtol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-5
if sorted(a) != sorted(b) or not a:
    print('different parameter sets: %s vs %s' % (sorted(a), sorted(b)))
    sys.exit(1)
worst = 0.0
for k in sorted(a):
    scale = max(np.abs(a[k]).max(), np.abs(b[k]).max(), 1e-30)
    d = np.abs(a[k] - b[k]).max() / scale
    worst = max(worst, d)
    if d > rtol:
        print('%s blob %d differs: relative %.3g > %.3g' % (k[0], k[1], d, rtol))
        sys.exit(1)
print('same weights (worst relative difference %.3g over %d blobs)' % (worst, len(a)))
