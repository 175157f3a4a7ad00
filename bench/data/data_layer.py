"""bench/data: the netrun side — a Python data layer producing batches of augmented
samples (aug.py), sharded over its replicas with caffe.get_worker_info()."""
import ast

import numpy as np

import caffe
import aug


class AugData(caffe.Layer):
    def setup(self, bottom, top):
        p = ast.literal_eval(self.param_str)
        self.rounds = aug.ROUNDS[p['variant']]
        self.batch_size = int(p.get('batch_size', 64))
        self.images = aug.make_images()
        info = caffe.get_worker_info()
        self.step = info.num_workers if info else 1
        self.k = info.first_batch if info else 0

    def reshape(self, bottom, top):
        top[0].reshape(self.batch_size, 3, 32, 32)
        top[1].reshape(self.batch_size)

    def forward(self, bottom, top):
        b = self.batch_size
        data = top[0].data
        for i in range(b):
            s = self.k * b + i
            data[i] = aug.augment(self.images[s % aug.N_IMAGES], s, self.rounds)
        top[1].data[...] = np.arange(self.k * b, self.k * b + b) % 10
        self.k += self.step

    def backward(self, top, propagate_down, bottom):
        pass
