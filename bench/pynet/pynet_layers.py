"""Python layers of bench/pynet (the benchmark reads nothing outside its folder).

EuclideanLossLayer is Caffe's examples/pycaffe/layers/pyloss.py (loss = sum((a - b)^2) /
num / 2; backward writes both bottoms' diffs). Accuracy is a TEST-phase style top-1
accuracy in NumPy, forward only. Noop reshapes its top like its bottom and does nothing
else: the cost of a call, not of work."""
import numpy as np

import caffe


class EuclideanLossLayer(caffe.Layer):
    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception("Need two inputs to compute distance.")

    def reshape(self, bottom, top):
        if bottom[0].count != bottom[1].count:
            raise Exception("Inputs must have the same dimension.")
        self.diff = np.zeros_like(bottom[0].data, dtype=np.float32)
        top[0].reshape(1)

    def forward(self, bottom, top):
        self.diff[...] = bottom[0].data - bottom[1].data
        top[0].data[...] = np.sum(self.diff ** 2) / bottom[0].num / 2.

    def backward(self, top, propagate_down, bottom):
        for i in range(2):
            if not propagate_down[i]:
                continue
            sign = 1 if i == 0 else -1
            bottom[i].diff[...] = sign * self.diff / bottom[i].num


class Accuracy(caffe.Layer):
    """bottom[0]: scores N x C, bottom[1]: labels N; top: the share of argmax == label."""

    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception("Accuracy takes scores and labels.")

    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        pred = bottom[0].data.reshape(bottom[0].num, -1).argmax(axis=1)
        top[0].data[0] = np.mean(pred == bottom[1].data.reshape(-1).astype(np.int64))

    def backward(self, top, propagate_down, bottom):
        pass


class Noop(caffe.Layer):
    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass
