"""Python data-layer fixtures for tests/pydata (prefetch, replicas, restarts).

BatchIndex emits batch k as data[i, j] = k * 1000 + i * 10 + j (rows x 3) and
who[i] = the replica that produced it, where k is the global batch index: replica `id`
produces first_batch, first_batch + num_workers, ... (caffe.get_worker_info()).
param_str (a dict literal, all optional):
  rows        rows per batch (default 4)
  vary        rows = 1 + (k * 7) % vary instead (varying batch shapes)
  die_at      batch index whose forward kills this worker with SIGKILL...
  die_once    ...only the first time: a marker file of this path says it happened
  hang_at     batch index whose forward sleeps for an hour...
  hang_once   ...only the first time (a marker file, as die_once)
  raise_at    batch index whose forward raises ValueError
  sleep       seconds each forward sleeps (a slow producer)
"""
import ast
import os
import signal
import time

import numpy as np

import caffe


class BatchIndex(caffe.Layer):
    def setup(self, bottom, top):
        p = ast.literal_eval(self.param_str) if self.param_str else {}
        self.rows = int(p.get('rows', 4))
        self.vary = int(p.get('vary', 0))
        self.die_at = p.get('die_at')
        self.die_once = p.get('die_once')
        self.raise_at = p.get('raise_at')
        self.hang_at = p.get('hang_at')
        self.hang_once = p.get('hang_once')
        self.sleep = float(p.get('sleep', 0))
        info = caffe.get_worker_info()
        if info is None:
            raise RuntimeError('BatchIndex expects to be prefetched (get_worker_info() is None)')
        self.id, self.step, self.k = info.id, info.num_workers, info.first_batch

    def nrows(self, k):
        return 1 + (k * 7) % self.vary if self.vary else self.rows

    def reshape(self, bottom, top):
        n = self.nrows(self.k)
        top[0].reshape(n, 3)
        top[1].reshape(n)

    def forward(self, bottom, top):
        k = self.k
        if self.die_at is not None and k == self.die_at:
            if not self.die_once or not os.path.exists(self.die_once):
                if self.die_once:
                    open(self.die_once, 'w').close()
                os.kill(os.getpid(), signal.SIGKILL)
        if self.hang_at is not None and k == self.hang_at:
            if not self.hang_once or not os.path.exists(self.hang_once):
                if self.hang_once:
                    open(self.hang_once, 'w').close()
                time.sleep(3600)
        if self.raise_at is not None and k == self.raise_at:
            raise ValueError('BatchIndex: asked to fail at batch %d' % k)
        if self.sleep:
            time.sleep(self.sleep)
        n = self.nrows(k)
        top[0].data[...] = k * 1000 + np.arange(n)[:, None] * 10 + np.arange(3)[None, :]
        top[1].data[...] = self.id
        self.k += self.step

    def backward(self, top, propagate_down, bottom):
        pass


class Copy(caffe.Layer):
    """top = bottom, in another worker: it sees the data layer's swapped buffers."""

    def setup(self, bottom, top):
        if caffe.get_worker_info() is not None:
            raise RuntimeError('get_worker_info() should be None in a layer with bottoms')

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data

    def backward(self, top, propagate_down, bottom):
        pass
