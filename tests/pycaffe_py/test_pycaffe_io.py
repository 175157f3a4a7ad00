"""caffe.io: BlobProto/Datum <-> array round trips, the Transformer's preprocessing and its
inverse, image loading, resizing and oversampling."""

import unittest

import numpy as np

import caffe
import caffe.io
from caffe.proto import caffe_pb2

import pyc_util


class BlobProtos(unittest.TestCase):
    def test_round_trip_any_shape(self):
        rng = np.random.RandomState(0)
        for shape in [(), (5,), (2, 3), (1, 2, 3, 4), (2, 1, 2, 1, 3)]:
            with self.subTest(shape=shape):
                a = np.asarray(rng.randn(*shape), dtype=np.float32)
                d = np.asarray(rng.randn(*shape), dtype=np.float32)
                blob = caffe.io.array_to_blobproto(a, d)
                self.assertEqual(list(blob.shape.dim), list(shape))
                again = caffe_pb2.BlobProto.FromString(blob.SerializeToString())
                out = caffe.io.blobproto_to_array(again)
                self.assertEqual(out.shape, shape)
                np.testing.assert_array_equal(out, a)
                np.testing.assert_array_equal(
                    caffe.io.blobproto_to_array(again, return_diff=True), d)

    def test_legacy_dims(self):
        blob = caffe_pb2.BlobProto(num=2, channels=1, height=1, width=3,
                                   data=[1, 2, 3, 4, 5, 6])
        arr = caffe.io.blobproto_to_array(blob)
        self.assertEqual(arr.shape, (2, 1, 1, 3))
        self.assertEqual(arr[1, 0, 0, 2], 6)

    def test_double_data(self):
        blob = caffe_pb2.BlobProto(double_data=[0.1, 0.2])
        blob.shape.dim.append(2)
        np.testing.assert_array_equal(caffe.io.blobproto_to_array(blob), [0.1, 0.2])

    def test_size_mismatch_names_both(self):
        blob = caffe_pb2.BlobProto(data=[1, 2, 3])
        blob.shape.dim.extend([2, 2])
        with self.assertRaisesRegex(ValueError, r'3 data values but its shape \(2, 2\) holds 4'):
            caffe.io.blobproto_to_array(blob)
        with self.assertRaisesRegex(ValueError, r'holds 1'):
            caffe.io.blobproto_to_array(caffe_pb2.BlobProto(data=[1, 2]))  # no shape

    def test_diff_shape_checked(self):
        with self.assertRaisesRegex(ValueError, r'diff has shape \(3,\), data has shape \(2,\)'):
            caffe.io.array_to_blobproto(np.zeros(2), np.zeros(3))

    def test_vector_round_trip(self):
        arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((1, 1, 2, 2)),
                  np.array(7.0)]
        s = caffe.io.arraylist_to_blobprotovector_str(arrays)
        self.assertIsInstance(s, bytes)
        self.assertIs(caffe.io.arraylist_to_blobprotovecor_str,
                      caffe.io.arraylist_to_blobprotovector_str)  # pycaffe's spelling
        out = caffe.io.blobprotovector_str_to_arraylist(s)
        self.assertEqual([o.shape for o in out], [(2, 3), (1, 1, 2, 2), ()])
        for a, o in zip(arrays, out):
            np.testing.assert_array_equal(a, o)
        self.assertEqual(caffe.io.blobprotovector_str_to_arraylist(b''), [])


class Datums(unittest.TestCase):
    def test_uint8_as_bytes(self):
        a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
        d = caffe.io.array_to_datum(a, label=7)
        self.assertEqual((d.channels, d.height, d.width, d.label), (2, 3, 4, 7))
        self.assertEqual(d.data, a.tobytes())
        self.assertEqual(len(d.float_data), 0)
        out = caffe.io.datum_to_array(caffe_pb2.Datum.FromString(d.SerializeToString()))
        self.assertEqual(out.dtype, np.uint8)
        np.testing.assert_array_equal(out, a)
        out[0, 0, 0] = 99  # a writable copy
        self.assertEqual(d.data[0], 0)

    def test_float_as_float_data(self):
        a = np.linspace(-1, 1, 12).reshape(3, 2, 2)
        d = caffe.io.array_to_datum(a)
        self.assertEqual(d.data, b'')
        self.assertFalse(d.HasField('label'))
        np.testing.assert_allclose(caffe.io.datum_to_array(d), a, rtol=1e-6)

    def test_label_only_when_given(self):
        with_label = caffe.io.array_to_datum(np.ones((1, 2, 2)), label=1)
        without = caffe.io.array_to_datum(np.ones((1, 2, 2)))
        self.assertGreater(len(with_label.SerializeToString()), len(without.SerializeToString()))
        self.assertEqual(caffe.io.array_to_datum(np.ones((1, 1, 1)), label=0).HasField('label'),
                         True)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, r'K x H x W array, got shape \(2, 2\)'):
            caffe.io.array_to_datum(np.ones((2, 2)))
        with self.assertRaisesRegex(ValueError, 'encoded image'):
            caffe.io.datum_to_array(caffe_pb2.Datum(encoded=True, data=b'\x89PNG'))
        with self.assertRaisesRegex(ValueError, r'3 values but its shape \(1, 2, 2\) holds 4'):
            caffe.io.datum_to_array(caffe_pb2.Datum(channels=1, height=2, width=2, data=b'abc'))


class TransformerTest(unittest.TestCase):
    def make(self, shape=(1, 3, 4, 5)):
        t = caffe.io.Transformer({'data': shape})
        t.set_transpose('data', (2, 0, 1))
        return t

    def image(self, h=4, w=5):
        rng = np.random.RandomState(1)
        return rng.rand(h, w, 3).astype(np.float32)

    def test_each_step_in_order(self):
        t = self.make()
        t.set_channel_swap('data', (2, 1, 0))
        t.set_raw_scale('data', 255)
        t.set_mean('data', np.array([10, 20, 30]))
        t.set_input_scale('data', 0.5)
        im = self.image()
        out = t.preprocess('data', im)
        self.assertEqual(out.dtype, np.float32)
        self.assertEqual(out.shape, (3, 4, 5))
        want = (im.transpose(2, 0, 1)[[2, 1, 0]] * 255 - np.array([10, 20, 30])[:, None, None]) * 0.5
        np.testing.assert_allclose(out, want, rtol=1e-5)
        # blue (last RGB channel) comes first; at (1, 2): (255 b - 10) / 2
        self.assertAlmostEqual(out[0, 1, 2], (255 * im[1, 2, 2] - 10) / 2, places=3)

    def test_deprocess_inverts(self):
        t = self.make()
        t.set_channel_swap('data', (1, 2, 0))
        t.set_raw_scale('data', 255)
        t.set_mean('data', np.random.RandomState(2).rand(3, 4, 5) * 100)
        t.set_input_scale('data', 0.017)
        im = self.image()
        back = t.deprocess('data', t.preprocess('data', im))
        np.testing.assert_allclose(back, im, atol=1e-4)
        # a batch of one, as net.blobs['data'].data[0:1]
        back = t.deprocess('data', t.preprocess('data', im)[np.newaxis])
        np.testing.assert_allclose(back, im, atol=1e-4)

    def test_single_channel_keeps_its_axis(self):
        t = self.make((1, 1, 4, 5))
        im = self.image()[:, :, :1]
        pre = t.preprocess('data', im)
        self.assertEqual(pre.shape, (1, 4, 5))
        self.assertEqual(t.deprocess('data', pre).shape, (4, 5, 1))

    def test_input_untouched(self):
        t = self.make()
        t.set_raw_scale('data', 255)
        t.set_mean('data', np.array([1, 2, 3]))
        im = self.image()
        before = im.copy()
        t.preprocess('data', im)
        np.testing.assert_array_equal(im, before)

    def test_resizes_to_input(self):
        t = self.make((2, 3, 8, 6))
        out = t.preprocess('data', np.full((16, 12, 3), 0.25, dtype=np.float32))
        self.assertEqual(out.shape, (3, 8, 6))
        np.testing.assert_allclose(out, 0.25)

    def test_elementwise_mean(self):
        t = self.make((1, 1, 2, 2))
        t.set_mean('data', np.array([[1.0, 2.0], [3.0, 4.0]]))  # H x W for one channel
        out = t.preprocess('data', np.full((2, 2, 1), 10, dtype=np.float32))
        np.testing.assert_array_equal(out, [[[9, 8], [7, 6]]])

    def test_argument_errors(self):
        t = self.make()
        with self.assertRaisesRegex(ValueError, "'image' is not one of the net inputs: 'data'"):
            t.preprocess('image', self.image())
        with self.assertRaisesRegex(ValueError, 'transpose order .* has 2 axes'):
            t.set_transpose('data', (1, 0))
        with self.assertRaisesRegex(ValueError, 'channel swap .* has 2 channels; input .* has 3'):
            t.set_channel_swap('data', (1, 0))
        with self.assertRaisesRegex(ValueError, 'mean has 4 channels'):
            t.set_mean('data', np.zeros(4))
        with self.assertRaisesRegex(ValueError, r'mean shape \(3, 5, 5\) does not match'):
            t.set_mean('data', np.zeros((3, 5, 5)))


class Images(pyc_util.TempDirTest):
    def save(self, name, arr):
        import skimage.io
        skimage.io.imsave(self.path(name), arr, check_contrast=False)
        return self.path(name)

    def test_load_rgb(self):
        a = (np.random.RandomState(3).rand(5, 7, 3) * 255).astype(np.uint8)
        img = caffe.io.load_image(self.save('rgb.png', a))
        self.assertEqual((img.shape, img.dtype), ((5, 7, 3), np.float32))
        np.testing.assert_allclose(img, a / 255.0, atol=1e-6)

    def test_load_gray(self):
        a = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
        f = self.save('gray.png', a)
        color = caffe.io.load_image(f)
        self.assertEqual(color.shape, (3, 4, 3))
        np.testing.assert_allclose(color[:, :, 1], a / 255.0, atol=1e-6)
        gray = caffe.io.load_image(f, color=False)
        self.assertEqual(gray.shape, (3, 4, 1))

    def test_load_drops_alpha(self):
        a = np.zeros((2, 2, 4), dtype=np.uint8)
        a[..., 0], a[..., 3] = 255, 128
        img = caffe.io.load_image(self.save('rgba.png', a))
        self.assertEqual(img.shape, (2, 2, 3))
        np.testing.assert_allclose(img[0, 0], [1, 0, 0])

    def test_color_to_gray(self):
        a = np.zeros((2, 2, 3), dtype=np.uint8)
        a[...] = 255
        img = caffe.io.load_image(self.save('white.png', a), color=False)
        self.assertEqual(img.shape, (2, 2, 1))
        np.testing.assert_allclose(img, 1, atol=1e-6)

    def test_resize_shapes_and_range(self):
        for k in (1, 3, 5):
            with self.subTest(channels=k):
                im = np.random.RandomState(k).rand(6, 8, k).astype(np.float32) * 200 - 50
                out = caffe.io.resize_image(im, (3, 11))
                self.assertEqual((out.shape, out.dtype), ((3, 11, k), np.float32))
                self.assertGreaterEqual(out.min(), im.min() - 1e-3)  # range kept, not [0, 1]
                self.assertLessEqual(out.max(), im.max() + 1e-3)
                self.assertGreater(out.max(), 1.5)

    def test_resize_bilinear_values(self):
        im = np.array([[0, 10], [20, 30]], dtype=np.float32)[:, :, None]
        out = caffe.io.resize_image(im, (4, 4))
        # corners repeat the edge pixels; between them values interpolate linearly
        np.testing.assert_allclose(out[[0, 0, 3, 3], [0, 3, 0, 3], 0], [0, 10, 20, 30])
        np.testing.assert_allclose(out[0, :, 0], [0, 2.5, 7.5, 10])
        np.testing.assert_allclose(caffe.io.resize_image(np.full((3, 3, 2), 4.0), (5, 2)), 4.0)
        nearest = caffe.io.resize_image(im, (4, 4), interp_order=0)
        self.assertEqual(sorted(set(nearest.ravel().tolist())), [0, 10, 20, 30])

    def test_oversample(self):
        ims = [np.arange(6 * 7 * 2, dtype=np.float32).reshape(6, 7, 2) + 1000 * i
               for i in range(2)]
        crops = caffe.io.oversample(ims, (4, 3))
        self.assertEqual((crops.shape, crops.dtype), ((20, 4, 3, 2), np.float32))
        for i, im in enumerate(ims):
            want = [im[0:4, 0:3], im[0:4, 4:7], im[2:6, 0:3], im[2:6, 4:7], im[1:5, 2:5]]
            for j, w in enumerate(want):
                np.testing.assert_array_equal(crops[10 * i + j], w)
                np.testing.assert_array_equal(crops[10 * i + 5 + j], w[:, ::-1])
        with self.assertRaisesRegex(ValueError, 'larger than the images'):
            caffe.io.oversample(ims, (7, 3))


if __name__ == '__main__':
    unittest.main()
