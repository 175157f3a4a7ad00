"""caffe.Classifier and caffe.Detector over a stand-in for caffe.Net (the C extension is not
part of this package yet): the stand-in has pycaffe's Net surface that both use (the
constructor, inputs, outputs, blobs[name].data, forward_all) and scores each item by the
mean of every channel, so what reaches the net is visible in the predictions."""

import unittest

import numpy as np

import caffe
import caffe.io

import pyc_util

INPUT_SHAPE = (1, 3, 4, 6)


class _Blob(object):
    def __init__(self, shape):
        self.data = np.zeros(shape, dtype=np.float32)


class StandInNet(object):
    def __init__(self, model_file, pretrained_file, phase):
        self.created_with = (model_file, pretrained_file, phase)
        self.inputs = ['data']
        self.outputs = ['score']
        self.blobs = {'data': _Blob(INPUT_SHAPE)}
        self.fed = None

    def forward_all(self, **inputs):
        self.fed = inputs['data']
        return {'score': self.fed.mean(axis=(2, 3))}


def setUpModule():
    global saved_net, Classifier, Detector
    saved_net = caffe.Net
    caffe.Net = StandInNet
    from caffe.classifier import Classifier
    from caffe.detector import Detector


def tearDownModule():
    caffe.Net = saved_net


def gradient_image(h, w):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([y / h, x / w, (x + y) / (h + w)], axis=2)


class ClassifierTest(unittest.TestCase):
    def test_lazy_name_and_net_arguments(self):
        self.assertIs(caffe.Classifier, Classifier)
        c = Classifier('deploy.prototxt', 'w.caffemodel')
        self.assertIsInstance(c, StandInNet)
        self.assertEqual(c.created_with, ('deploy.prototxt', 'w.caffemodel', caffe.TEST))
        np.testing.assert_array_equal(c.crop_dims, [4, 6])
        np.testing.assert_array_equal(c.image_dims, [4, 6])

    def test_center_crop_preprocessed(self):
        c = Classifier('m', 'w', image_dims=(8, 10), mean=np.array([10, 20, 30]),
                       raw_scale=255, channel_swap=(2, 1, 0), input_scale=0.5)
        rgb = np.empty((8, 10, 3), dtype=np.float32)
        rgb[...] = [0.1, 0.5, 0.9]
        scores = c.predict([rgb, rgb * 0], oversample=False)
        self.assertEqual(c.fed.shape, (2, 3, 4, 6))
        want = (np.array([0.9, 0.5, 0.1]) * 255 - [10, 20, 30]) * 0.5   # BGR
        np.testing.assert_allclose(scores[0], want, rtol=1e-5)
        np.testing.assert_allclose(scores[1], -np.array([10, 20, 30]) * 0.5)

    def test_center_crop_is_the_middle(self):
        c = Classifier('m', 'w', image_dims=(8, 10))
        im = gradient_image(8, 10)
        c.predict([im], oversample=False)
        np.testing.assert_allclose(c.fed[0], im[2:6, 2:8].transpose(2, 0, 1))

    def test_oversample_averages_ten_crops(self):
        c = Classifier('m', 'w', image_dims=(8, 10))
        ims = [gradient_image(8, 10), gradient_image(8, 10) ** 2]
        scores = c.predict(ims)
        self.assertEqual(c.fed.shape, (20, 3, 4, 6))
        self.assertEqual(scores.shape, (2, 3))
        for i, im in enumerate(ims):
            crops = [im[0:4, 0:6], im[0:4, 4:10], im[4:8, 0:6], im[4:8, 4:10], im[2:6, 2:8]]
            want = np.mean([cr.mean(axis=(0, 1)) for cr in crops], axis=0)  # mirrors: same mean
            np.testing.assert_allclose(scores[i], want, rtol=1e-5)
        np.testing.assert_allclose(c.fed[5], c.fed[0][:, :, ::-1])  # first mirror

    def test_resizes_any_image_size(self):
        c = Classifier('m', 'w', image_dims=(8, 10))
        flat = np.full((31, 17, 3), 0.25, dtype=np.float32)
        scores = c.predict([flat])
        np.testing.assert_allclose(scores, [[0.25, 0.25, 0.25]], rtol=1e-6)


class DetectorTest(pyc_util.TempDirTest):
    def image_file(self):
        import skimage.io
        im = np.zeros((20, 30, 3), dtype=np.uint8)
        im[:, :15, 0] = 255   # left half red
        im[:, 15:, 2] = 255   # right half blue
        f = self.path('im.png')
        skimage.io.imsave(f, im, check_contrast=False)
        return f

    def test_windows(self):
        f = self.image_file()
        d = Detector('m', 'w', raw_scale=255, channel_swap=(2, 1, 0))
        self.assertIs(caffe.Detector, Detector)
        self.assertEqual(d.created_with, ('m', 'w', caffe.TEST))
        windows = [(0, 0, 10, 10), (5, 20, 15, 30), (0, 0, 20, 30)]
        dets = d.detect_windows([(f, windows)])
        self.assertEqual([x['window'] for x in dets], windows)
        self.assertEqual({x['filename'] for x in dets}, {f})
        self.assertEqual(d.fed.shape, (3, 3, 4, 6))
        np.testing.assert_allclose(dets[0]['prediction'], [0, 0, 255], atol=1e-3)   # BGR: red
        np.testing.assert_allclose(dets[1]['prediction'], [255, 0, 0], atol=1e-3)   # blue
        self.assertTrue(0 < dets[2]['prediction'][0] < 255)
        self.assertEqual(d.detect_windows([(f, [])]), [])

    def test_context_pad_fills_with_the_mean(self):
        f = self.image_file()
        mean = np.array([50.0, 60.0, 70.0])  # BGR, in [0, 255] like the input
        d = Detector('m', 'w', mean=mean, raw_scale=255, channel_swap=(2, 1, 0), context_pad=1)
        np.testing.assert_array_equal(d.crop_dims, [4, 6, 3])
        # the mean back in raw image space: RGB order, [0, 1]
        np.testing.assert_allclose(d.crop_mean.reshape(-1), [70 / 255., 60 / 255., 50 / 255.])
        d.detect_windows([(f, [(0, 0, 10, 10)])])
        fed = d.fed[0]
        # context beyond the top-left corner is the mean: zero once the mean is subtracted
        np.testing.assert_allclose(fed[:, 0, :], 0, atol=1e-4)
        np.testing.assert_allclose(fed[:, :, 0], 0, atol=1e-4)
        self.assertAlmostEqual(float(fed[0, 2, 2]), -50, places=3)       # red pixel: B = 0
        self.assertAlmostEqual(float(fed[2, 2, 2]), 255 - 70, places=3)  # R = 255

    def test_window_outside_image(self):
        f = self.image_file()
        for pad in (None, 1):
            d = Detector('m', 'w', context_pad=pad)
            with self.assertRaisesRegex(ValueError, r'window \(40, 40, 50, 50\) lies outside '
                                        'the 20x30 image'):
                d.detect_windows([(f, [(40, 40, 50, 50)])])
            with self.assertRaisesRegex(ValueError, 'or is empty'):
                d.detect_windows([(f, [(5, 5, 5, 9)])])


if __name__ == '__main__':
    unittest.main()
