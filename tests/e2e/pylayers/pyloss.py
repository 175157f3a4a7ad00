"""The `pyloss` module Caffe's examples/pycaffe/linreg.prototxt names: a Euclidean loss as a
Python layer (loss = sum((a - b)^2) / num / 2), for the e2e tests that build that net."""
import numpy as np

import caffe


class EuclideanLossLayer(caffe.Layer):
    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception('EuclideanLossLayer takes two bottoms')

    def reshape(self, bottom, top):
        if bottom[0].count != bottom[1].count:
            raise Exception('EuclideanLossLayer: the bottoms differ in size')
        self.diff = np.zeros_like(bottom[0].data, dtype=np.float32)
        top[0].reshape(1)

    def forward(self, bottom, top):
        self.diff[...] = bottom[0].data - bottom[1].data
        top[0].data[...] = np.sum(self.diff ** 2) / bottom[0].num / 2.

    def backward(self, top, propagate_down, bottom):
        for i, sign in ((0, 1), (1, -1)):
            if propagate_down[i]:
                bottom[i].diff[...] = sign * self.diff / bottom[i].num
