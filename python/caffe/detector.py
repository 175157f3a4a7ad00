"""caffe.Detector: a caffe.Net that scores windows of images (pycaffe's detector, R-CNN
style).

    det = caffe.Detector('deploy.prototxt', 'weights.caffemodel', mean=..., raw_scale=255,
                         channel_swap=(2, 1, 0), context_pad=16)
    for d in det.detect_windows([('img.jpg', [(ymin, xmin, ymax, xmax), ...])]):
        d['filename'], d['window'], d['prediction']

Subclasses caffe.Net, which netrun's C extension provides: importing this module without
it raises ImportError. detect_selective_search needs the third-party
selective_search_ijcv_with_python module (and MATLAB), as in Caffe.
"""

import os

import numpy as np

import caffe

if getattr(caffe.Net, '_nr_missing', False):
    raise ImportError("caffe.Detector subclasses caffe.Net, which comes from netrun's C "
                      'extension (caffe._caffe); this caffe package does not have it')

from . import io as caffe_io  # noqa: E402
from .classifier import image_transformer  # noqa: E402


class Detector(caffe.Net):
    """A Net (TEST phase) whose first input takes image windows, warped to the input's
    size (with context_pad pixels of surrounding context, filled with the mean where the
    window meets the image border)."""

    def __init__(self, model_file, pretrained_file, mean=None, input_scale=None,
                 raw_scale=None, channel_swap=None, context_pad=None):
        caffe.Net.__init__(self, model_file, pretrained_file, caffe.TEST)
        self.transformer = image_transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.configure_crop(context_pad)

    def detect_windows(self, images_windows):
        """Scores every window of every image: images_windows is an iterable of
        (image file name, [window, ...]) with windows as (ymin, xmin, ymax, xmax) pixel
        coordinates (end exclusive). Returns a list of {'filename', 'window',
        'prediction'} dicts in input order."""
        images_windows = [(f, list(ws)) for f, ws in images_windows]
        crops = []
        for filename, windows in images_windows:
            image = caffe_io.load_image(filename).astype(np.float32)
            crops.extend(self.crop(image, np.asarray(w)) for w in windows)
        if not crops:
            return []
        in_ = self.inputs[0]
        shape = self.blobs[in_].data.shape
        caffe_in = np.zeros((len(crops), crops[0].shape[2]) + tuple(shape[2:]),
                            dtype=np.float32)
        for i, crop in enumerate(crops):
            caffe_in[i] = self.transformer.preprocess(in_, crop)
        out = self.forward_all(**{in_: caffe_in})
        predictions = np.asarray(out[self.outputs[0]])
        predictions = predictions.reshape(len(predictions), -1)
        detections = []
        i = 0
        for filename, windows in images_windows:
            for window in windows:
                detections.append({'window': window, 'prediction': predictions[i],
                                   'filename': filename})
                i += 1
        return detections

    def detect_selective_search(self, image_fnames):
        """detect_windows over Selective Search proposals of each image."""
        import selective_search_ijcv_with_python as selective_search
        image_fnames = [os.path.abspath(f) for f in image_fnames]
        windows_list = selective_search.get_windows(image_fnames, cmd='selective_search_rcnn')
        return self.detect_windows(zip(image_fnames, windows_list))

    def crop(self, im, window):
        """The H x W x K region of im inside window (ymin, xmin, ymax, xmax). With
        context_pad, the window grows so that, once warped to the input size, context_pad
        pixels of surroundings border it; the part outside the image is the mean."""
        window = np.asarray(window)
        im_h, im_w = im.shape[:2]
        if not (window[0] < min(window[2], im_h) and window[1] < min(window[3], im_w)
                and window[2] > 0 and window[3] > 0):
            raise ValueError('window %s lies outside the %dx%d image (or is empty)' % (
                tuple(int(v) for v in window), im_h, im_w))
        if not self.context_pad:
            return im[window[0]:window[2], window[1]:window[3]]
        size = self.crop_dims[0]  # a square input, as in R-CNN
        scale = size / (size - 2.0 * self.context_pad)
        half_h = (window[2] - window[0] + 1) / 2.0
        half_w = (window[3] - window[1] + 1) / 2.0
        center = np.array((window[0] + half_h, window[1] + half_w))
        box = np.round(np.tile(center, 2) + scale * np.array((-half_h, -half_w, half_h, half_w)))
        scale_h = size / (box[2] - box[0] + 1)
        scale_w = size / (box[3] - box[1] + 1)
        pad_y = int(round(max(0, -box[0]) * scale_h))  # rows outside the image, warped
        pad_x = int(round(max(0, -box[1]) * scale_w))
        box = np.clip(box, 0, [im_h, im_w, im_h, im_w]).astype(int)
        clip_h, clip_w = box[2] - box[0] + 1, box[3] - box[1] + 1
        crop_h = min(int(round(clip_h * scale_h)), size - pad_y)
        crop_w = min(int(round(clip_w * scale_w)), size - pad_x)
        context = caffe_io.resize_image(im[box[0]:box[2], box[1]:box[3]], (crop_h, crop_w))
        out = np.ones(tuple(self.crop_dims), dtype=np.float32) * self.crop_mean
        out[pad_y:pad_y + crop_h, pad_x:pad_x + crop_w] = context
        return out

    def configure_crop(self, context_pad):
        """Sets crop_dims (the input's H x W x K) and context_pad; with context_pad,
        crop_mean is the mean in raw image space (H x W x K, before channel swap and raw
        scale) that fills context outside the image."""
        in_ = self.inputs[0]
        tpose = self.transformer.transpose[in_]
        inv = np.argsort(tpose)
        self.crop_dims = np.array(self.blobs[in_].data.shape[1:])[inv]
        self.context_pad = context_pad
        if not context_pad:
            return
        mean = self.transformer.mean.get(in_)
        if mean is None:
            self.crop_mean = np.zeros(tuple(self.crop_dims), dtype=np.float32)
            return
        crop_mean = np.array(mean, dtype=np.float32)
        swap = self.transformer.channel_swap.get(in_)
        if swap is not None:  # mean is in swapped channel order (K first)
            crop_mean = crop_mean[list(np.argsort(swap))]
        crop_mean = crop_mean.transpose(inv)
        raw_scale = self.transformer.raw_scale.get(in_)
        if raw_scale is not None:
            crop_mean = crop_mean / raw_scale
        self.crop_mean = crop_mean
