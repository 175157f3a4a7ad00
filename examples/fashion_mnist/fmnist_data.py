"""Fashion-MNIST data layer for netrun (and Caffe: it only uses the pycaffe layer API).

Reads the gzip IDX files that Debian's dataset-fashion-mnist package installs. param_str is
a Python dict literal:

    {'split': 'train',            # 'train' (60 000 images) or 't10k' / 'test' (10 000)
     'batch_size': 64,
     'dir': '/usr/share/datasets/fashion-mnist',
     'shuffle': True,             # reshuffle every epoch
     'seed': 1,
     'scale': 0.00390625,         # pixel * scale
     'augment': False}            # random horizontal flip and 2-pixel shifts

Batch k is a pure function of (seed, k): the epoch permutation is seeded by the epoch
number and augmentation by the batch index. So the batch sequence is the same whether one
worker computes every batch or R replicas each compute every R-th one (netrun's replicated
data layers tell a replica its index, the replica count and the first batch it produces
through caffe.get_worker_info(); in Caffe, which has no such function, add
`caffe.get_worker_info = lambda: None` before the net is built).

Under `mpirun -np K netrun train` each rank reads its own batches: local batch j of rank r
is global batch j*K + r (caffe.solver_count(), caffe.solver_rank()), so K ranks together
read the batch sequence one process reads, K batches per iteration, and the test batches
netrun deals round-robin to the ranks are the ones one process scores.
"""
import ast
import gzip
import os
import struct

import numpy as np

import caffe

DEFAULT_DIR = '/usr/share/datasets/fashion-mnist'
FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    't10k': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}


def read_idx(path):
    """The array stored in an IDX file (optionally gzip-compressed)."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            "%s does not exist: install Debian's dataset-fashion-mnist package "
            "(apt-get install dataset-fashion-mnist) or set 'dir' in param_str" % path)
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        raw = f.read()
    if len(raw) < 4:
        raise ValueError('%s: not an IDX file (too short)' % path)
    zero, dtype_code, ndim = struct.unpack('>HBB', raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError('%s: not an unsigned-byte IDX file' % path)
    dims = struct.unpack('>' + 'I' * ndim, raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError('%s: truncated (%d values for shape %s)' % (path, data.size, dims))
    return data.reshape(dims)


class FashionMNISTData(caffe.Layer):
    """Tops: data (N, 1, 28, 28) float32 and label (N,) float32."""

    def setup(self, bottom, top):
        params = ast.literal_eval(self.param_str) if self.param_str else {}
        split = params.get('split', 'train')
        if split == 'test':
            split = 't10k'
        if split not in FILES:
            raise ValueError("split must be 'train' or 't10k', not %r" % split)
        if len(top) != 2:
            raise ValueError('FashionMNISTData needs two tops (data, label), got %d' % len(top))
        directory = params.get('dir', DEFAULT_DIR)
        images, labels = FILES[split]
        self.images = read_idx(os.path.join(directory, images))
        self.labels = read_idx(os.path.join(directory, labels)).astype(np.float32)
        self.batch_size = int(params.get('batch_size', 64))
        self.shuffle = bool(params.get('shuffle', split == 'train'))
        self.seed = int(params.get('seed', 1))
        self.scale = np.float32(params.get('scale', 0.00390625))
        self.augment = bool(params.get('augment', False))
        # netrun prefetches this layer as R replicas; replica `id` produces batches
        # first_batch, first_batch + R, ... (first_batch == id, or the lost batch after a
        # restarted worker). None: run in step with the net (or in Caffe), every batch here.
        info = caffe.get_worker_info()
        self.replicas = info.num_workers if info else 1
        self.batch = info.first_batch if info else 0  # the next batch index computed here
        self.ranks = caffe.solver_count()
        self.rank = caffe.solver_rank()
        self.order_epoch = -1
        self.order = None

    def reshape(self, bottom, top):
        top[0].reshape(self.batch_size, 1, 28, 28)
        top[1].reshape(self.batch_size)

    def indices(self, k):
        """Image indices of batch k (wrapping over epochs as Caffe's data layers do)."""
        n = len(self.images)
        start = k * self.batch_size
        idx = np.arange(start, start + self.batch_size) % n
        epochs = (np.arange(start, start + self.batch_size) // n)
        if not self.shuffle:
            return idx
        out = np.empty(self.batch_size, dtype=np.int64)
        for e in np.unique(epochs):
            if e != self.order_epoch:
                self.order = np.random.RandomState(self.seed * 100003 + int(e)).permutation(n)
                self.order_epoch = int(e)
            sel = epochs == e
            out[sel] = self.order[idx[sel]]
        return out

    def forward(self, bottom, top):
        k = self.batch * self.ranks + self.rank  # the global batch index
        idx = self.indices(k)
        images = self.images[idx].astype(np.float32) * self.scale
        if self.augment:
            rng = np.random.RandomState(self.seed * 7919 + k)
            flip = rng.rand(len(idx)) < 0.5
            images[flip] = images[flip, :, ::-1]
            shifts = rng.randint(-2, 3, size=(len(idx), 2))
            for i, (dy, dx) in enumerate(shifts):
                images[i] = np.roll(np.roll(images[i], dy, axis=0), dx, axis=1)
        top[0].data[:, 0] = images
        top[1].data[...] = self.labels[idx]
        self.batch += self.replicas

    def backward(self, top, propagate_down, bottom):
        pass
