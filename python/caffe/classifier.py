"""caffe.Classifier: a caffe.Net that classifies images (pycaffe's classifier).

    net = caffe.Classifier('deploy.prototxt', 'weights.caffemodel', image_dims=(256, 256),
                           mean=np.array([104, 117, 123]), raw_scale=255,
                           channel_swap=(2, 1, 0))
    probs = net.predict([caffe.io.load_image('cat.jpg')])   # N x classes

Subclasses caffe.Net, which netrun's C extension provides: importing this module without
it raises ImportError.
"""

import numpy as np

import caffe
from . import io as caffe_io

if getattr(caffe.Net, '_nr_missing', False):
    raise ImportError("caffe.Classifier subclasses caffe.Net, which comes from netrun's C "
                      'extension (caffe._caffe); this caffe package does not have it')


def image_transformer(net, mean=None, input_scale=None, raw_scale=None, channel_swap=None):
    """A caffe.io.Transformer taking H x W x K images to net's first input, with the
    given settings (None: that step is skipped)."""
    in_ = net.inputs[0]
    t = caffe_io.Transformer({in_: net.blobs[in_].data.shape})
    t.set_transpose(in_, (2, 0, 1))
    if mean is not None:
        t.set_mean(in_, mean)
    if input_scale is not None:
        t.set_input_scale(in_, input_scale)
    if raw_scale is not None:
        t.set_raw_scale(in_, raw_scale)
    if channel_swap is not None:
        t.set_channel_swap(in_, channel_swap)
    return t


class Classifier(caffe.Net):
    """A Net (TEST phase) whose first input takes images: predict() resizes them to
    image_dims, takes the center crop or the 10 oversampled crops of the input's size,
    preprocesses them (caffe.io.Transformer: H x W x K -> K x H x W, then channel_swap,
    raw_scale, mean, input_scale) and returns the first output's rows."""

    def __init__(self, model_file, pretrained_file, image_dims=None, mean=None,
                 input_scale=None, raw_scale=None, channel_swap=None):
        caffe.Net.__init__(self, model_file, pretrained_file, caffe.TEST)
        self.transformer = image_transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.crop_dims = np.array(self.blobs[self.inputs[0]].data.shape[2:])
        if image_dims is None or len(image_dims) == 0:
            image_dims = self.crop_dims
        self.image_dims = np.array(image_dims)

    def predict(self, inputs, oversample=True):
        """Class scores of each H x W x K image in inputs, as an N x C array: averaged
        over the 4 corner and center crops and their mirrors when oversample, else of the
        center crop."""
        if len(inputs) == 0:
            raise ValueError('predict needs at least one image')
        h, w = (int(d) for d in self.image_dims)
        batch = np.zeros((len(inputs), h, w, inputs[0].shape[2]), dtype=np.float32)
        for i, im in enumerate(inputs):
            batch[i] = caffe_io.resize_image(im, (h, w))
        ch, cw = (int(d) for d in self.crop_dims)
        if oversample:
            batch = caffe_io.oversample(batch, (ch, cw))
        else:
            y, x = (h - ch) // 2, (w - cw) // 2
            batch = batch[:, y:y + ch, x:x + cw, :]
        in_ = self.inputs[0]
        caffe_in = np.zeros((len(batch), batch.shape[3], ch, cw), dtype=np.float32)
        for i, crop in enumerate(batch):
            caffe_in[i] = self.transformer.preprocess(in_, crop)
        out = self.forward_all(**{in_: caffe_in})
        predictions = np.asarray(out[self.outputs[0]])
        if oversample:
            predictions = predictions.reshape((len(predictions) // 10, 10, -1)).mean(axis=1)
        return predictions
