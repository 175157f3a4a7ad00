"""The measure layer of Caffe's Python-layer tutorial.

A binary classifier's measures, computed in Python:
  TRAIN: accuracy, TP, TN, FP, FN of the batch
  TEST:  accuracy, FPR, FNR of the batch (the solver averages them over test_iter batches)
Bottoms: the scores (N x 2: one per class) and the labels (N). Its tops have no loss weight,
so they only appear as "Train net output" / "Test net output" lines.

This is netrun's own version of the tutorial's layer, written anew: it keeps the tutorial's
class name, bottoms, tops and measures, and its style of assigning `top[i].data = value`
(which netrun supports beyond pycaffe), but the code is not the tutorial's (whose listing
does not run as printed).
"""
import caffe
import numpy as np


class Measure_Layer(caffe.Layer):
    # Calculate the accuracy and TP/TN/FP/FN (TRAIN) or FPR/FNR (TEST) of a binary classifier

    def setup(self, bottom, top):
        # We want the predictions and the labels
        if len(bottom) != 2:
            raise Exception("Wrong number of bottom blobs (prediction and label)")

        # And one top per measure, depending on the phase
        if self.phase == caffe.TRAIN:
            if len(top) != 5:
                raise Exception("Wrong number of top blobs (acc, tp, tn, fp and fn)")
        else:
            if len(top) != 3:
                raise Exception("Wrong number of top blobs (acc, FPR, FNR)")

    def reshape(self, bottom, top):
        # Every output is a single number
        if bottom[0].num != bottom[1].num:
            raise Exception("Predictions and labels must have the same number of items")
        for t in top:
            t.reshape(1)

    def forward(self, bottom, top):
        # The predicted class is the one with the highest score
        predictions = np.argmax(bottom[0].data.reshape(bottom[0].num, -1), axis=1)
        labels = bottom[1].data.reshape(-1).astype(np.int64)

        TP = float(np.sum((predictions == 1) & (labels == 1)))
        TN = float(np.sum((predictions == 0) & (labels == 0)))
        FP = float(np.sum((predictions == 1) & (labels == 0)))
        FN = float(np.sum((predictions == 0) & (labels == 1)))

        accuracy = (TP + TN) / len(labels)

        if self.phase == caffe.TRAIN:
            top[0].data = accuracy
            top[1].data = TP
            top[2].data = TN
            top[3].data = FP
            top[4].data = FN
        else:
            # False positive rate and false negative rate
            FPR = FP / (FP + TN) if FP + TN > 0 else 0.0
            FNR = FN / (FN + TP) if FN + TP > 0 else 0.0
            top[0].data = accuracy
            top[1].data = FPR
            top[2].data = FNR

    def backward(self, top, propagate_down, bottom):
        # A measure has no gradient
        pass
