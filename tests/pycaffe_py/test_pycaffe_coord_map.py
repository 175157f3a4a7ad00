"""caffe.coord_map on conv / pool / deconv / crop nets: the maps, their errors, and a crop()
layer that netrun builds to exactly the reference top's size."""

import re
import unittest

import numpy as np

import caffe
from caffe import layers as L, params as P
from caffe.coord_map import (AxisMismatchException, UndefinedMapException, compose,
                             coord_map, coord_map_from_to, crop, inverse)

import pyc_util


def fcn(size=64, ks=3, pad=0, stride=1, pool=2, up=2, dpad=0):
    """data -> conv -> pool -> deconv (upsampling by `up`)."""
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, size, size]))
    n.conv = L.Convolution(n.data, num_output=2, kernel_size=ks, pad=pad, stride=stride)
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=pool, stride=pool)
    n.up = L.Deconvolution(n.pool, num_output=2, kernel_size=2 * up, stride=up, pad=dpad)
    return n


class Maps(unittest.TestCase):
    def assertMap(self, got, ax, a, b):
        self.assertEqual(got[0], ax)
        np.testing.assert_allclose(got[1], a)
        np.testing.assert_allclose(got[2], b)

    def test_single_layers(self):
        n = fcn(ks=5, pad=1, stride=2)
        self.assertMap(coord_map(n.conv.fn), 1, 0.5, (1 - 2) / 2)  # (pad - (k-1)/2) / s
        self.assertMap(coord_map(n.pool.fn), 1, 0.5, -0.25)
        self.assertMap(coord_map(n.up.fn), 1, 2, 1.5)               # (k-1)/2 - pad
        self.assertMap(coord_map(L.ReLU(n.up).fn), None, 1, 0)
        self.assertMap(coord_map(L.Crop(n.up, n.data, axis=2, offset=[3, 4]).fn), 1, 1, [-3, -4])
        with self.assertRaises(UndefinedMapException):
            coord_map(L.InnerProduct(n.up, num_output=1).fn)

    def test_compose_and_inverse(self):
        m = compose((1, 0.5, -1), (None, 1, 0))
        self.assertEqual(m, (1, 0.5, -1))
        self.assertEqual(compose(m, inverse(m)), (1, 1, 0))
        with self.assertRaises(AxisMismatchException):
            compose((1, 1, 0), (2, 1, 0))

    def test_chain(self):
        # conv 3x3 pad 0 (shift -1), pool 2 and deconv 2 cancel their scales
        n = fcn()
        self.assertMap(coord_map_from_to(n.up, n.data), 1, 1, 0)
        self.assertMap(coord_map_from_to(n.data, n.up), 1, 1, 0)
        # pool pixel 0 covers conv pixels 0-1 (center 0.5), whose center is data's 1.5
        self.assertMap(coord_map_from_to(n.pool, n.data), 1, 2, 1.5)
        self.assertMap(coord_map_from_to(n.data, n.pool), 1, 0.5, -0.75)
        n = fcn(pool=4, up=4)
        self.assertMap(coord_map_from_to(n.up, n.data), 1, 1, -1)

    def test_padding_shifts(self):
        n = fcn()
        base = coord_map_from_to(n.up, n.data)[2]
        for pad in (1, 5):
            n = fcn(pad=pad)
            self.assertMap(coord_map_from_to(n.up, n.data), 1, 1, base - pad)
            n = fcn(dpad=pad)
            self.assertMap(coord_map_from_to(n.up, n.data), 1, 1, base + pad)

    def test_dilation_and_legacy_fields(self):
        n = caffe.NetSpec()
        n.data = L.Input(shape=dict(dim=[1, 1, 32, 32]))
        n.a = L.Convolution(n.data, num_output=1, kernel_size=3, dilation=2)   # extent 5
        n.b = L.Convolution(n.data, num_output=1, kernel_h=3, kernel_w=5, stride_h=1,
                            stride_w=2, pad_w=1)
        n.c = L.Pooling(n.data, pooling_param=dict(kernel_size=3, stride=2))
        n.g = L.Pooling(n.data, pool=P.Pooling.AVE, global_pooling=True)
        self.assertMap(coord_map_from_to(n.data, n.a), 1, 1, -2)
        self.assertMap(coord_map_from_to(n.data, n.b), 1, [1, 0.5], [-1, -0.5])
        self.assertMap(coord_map_from_to(n.data, n.c), 1, 0.5, -0.5)
        with self.assertRaises(RuntimeError):
            coord_map_from_to(n.g, n.data)

    def test_unconnected(self):
        n = fcn()
        n.ip = L.InnerProduct(n.up, num_output=3)
        with self.assertRaisesRegex(RuntimeError, 'connected by spatial layers'):
            coord_map_from_to(n.ip, n.data)
        other = L.Input(shape=dict(dim=[1, 1, 8, 8]))
        with self.assertRaises(RuntimeError):
            coord_map_from_to(n.up, other)

    def test_crop_of_crop_and_second_bottom(self):
        n = fcn()
        n.crop = L.Crop(n.up, n.data, axis=2, offset=7)
        self.assertMap(coord_map_from_to(n.crop, n.data), 1, 1, 7)
        # a Crop's second bottom only gives the size: no path through it
        n.ref = L.Input(shape=dict(dim=[1, 1, 8, 8]))
        n.crop2 = L.Crop(n.ref, n.up)
        with self.assertRaises(RuntimeError):
            coord_map_from_to(n.crop2, n.data)


class CropHelper(pyc_util.TempDirTest):
    def test_crop_layer_params(self):
        n = fcn(size=64, pad=5)       # the upsampled output is 10 pixels bigger, shifted by 5
        n.crop = crop(n.up, n.data)
        layer = n.to_proto().layer[-1]
        self.assertEqual(list(layer.bottom), ['up', 'data'])
        self.assertEqual((layer.crop_param.axis, list(layer.crop_param.offset)), (2, [5]))

    def test_netrun_builds_the_crop_to_size(self):
        for kw in (dict(pad=5), dict(pad=20, ks=5), dict(pool=4, up=4, pad=8)):
            with self.subTest(**kw):
                n = fcn(size=64, **kw)
                n.crop = crop(n.up, n.data)
                f = self.write('net.prototxt', str(n.to_proto()))
                st, out, err = pyc_util.run_netrun('check', '--model', f)
                self.assertEqual(st, 0, err)
                self.assertRegex(out, re.compile(r'^\d+\s+crop\s+Crop\s+1x2x64x64\s', re.M))

    def test_refused_crops(self):
        with self.assertRaisesRegex(AssertionError, 'scale mismatch'):
            n = fcn(pool=3, up=2)
            crop(n.up, n.data)
        with self.assertRaisesRegex(AssertionError, 'cannot crop negative offset'):
            n = fcn(dpad=10)
            crop(n.up, n.data)
        with self.assertRaisesRegex(AssertionError, 'noninteger offset'):
            n = fcn(ks=4, pad=2)  # an even kernel: half-pixel shift
            crop(n.up, n.data)


if __name__ == '__main__':
    unittest.main()
