"""Python layers of bench/pynet. The loss is the project's pyloss module (tests/e2e/pylayers,
Caffe's examples/pycaffe/layers/pyloss.py EuclideanLossLayer). Accuracy is a TEST-phase
style top-1 accuracy in NumPy, forward only. Noop reshapes its top like its bottom and does nothing
else: the cost of a call, not of work."""
import numpy as np

import caffe


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
