"""Multi-class metrics layer in the style of Caffe's Python-layer tutorial measure layer.

The tutorial's layer measures a binary classifier (accuracy, TP/TN/FP/FN in TRAIN;
accuracy, FPR, FNR in TEST). This one generalises it to K classes: bottoms are the scores
(N, K) and the labels (N,); tops are accuracy (scalar), per-class precision (K) and per-class
recall (K). netrun's test loop averages every top element over the test batches and prints
each one as a "Test net output" line.
"""
import numpy as np

import caffe


class MultiClassMetrics(caffe.Layer):

    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise ValueError('MultiClassMetrics needs bottoms (scores, labels)')
        if len(top) not in (1, 3):
            raise ValueError('MultiClassMetrics has tops accuracy[, precision, recall]')

    def reshape(self, bottom, top):
        k = bottom[0].data.shape[1]
        top[0].reshape()
        if len(top) == 3:
            top[1].reshape(k)
            top[2].reshape(k)

    def forward(self, bottom, top):
        scores = bottom[0].data
        labels = bottom[1].data.reshape(-1).astype(np.int64)
        predicted = scores.argmax(axis=1)
        k = scores.shape[1]
        confusion = np.zeros((k, k), dtype=np.float64)
        np.add.at(confusion, (labels, predicted), 1)
        top[0].data = np.trace(confusion) / max(len(labels), 1)
        if len(top) == 3:
            hits = np.diag(confusion)
            predicted_per_class = confusion.sum(axis=0)
            actual_per_class = confusion.sum(axis=1)
            top[1].data = np.where(predicted_per_class > 0,
                                   hits / np.maximum(predicted_per_class, 1), 0)
            top[2].data = np.where(actual_per_class > 0,
                                   hits / np.maximum(actual_per_class, 1), 0)

    def backward(self, top, propagate_down, bottom):
        pass
