"""caffe.io: moving data between images, NumPy arrays and Caffe's messages (pycaffe's io).

    Transformer            prepares H x W x K images for a net input (K x H x W) and back
    load_image             an image file as float32 H x W x 3 (or x 1) in [0, 1]
    resize_image           H x W x K -> new H x new W x K, float32
    oversample             the 4 corner + center crops of each image and their mirrors
    blobproto_to_array / array_to_blobproto, arraylist_to_blobprotovector_str /
    blobprotovector_str_to_arraylist, array_to_datum / datum_to_array

scikit-image (image reading and resizing) and protobuf load on first use only.
Differences from pycaffe: preprocess never modifies the caller's array; deprocess keeps a
single-channel image's channel axis; a BlobProto whose size does not match its shape raises
ValueError naming both.
"""

import numpy as np


def _pb2():
    from .proto import caffe_pb2
    return caffe_pb2


# ---- messages <-> arrays -----------------------------------------------------------------

def blobproto_to_array(blob, return_diff=False):
    """The data (or with return_diff=True the diff) of a BlobProto as a float64 array
    shaped like the blob: its legacy num/channels/height/width when any of them is set
    (as Caffe reads it), else its shape (no dims: a 0-d array holding one value)."""
    values = blob.diff if return_diff else blob.data
    if not len(values):  # a blob written with double precision
        values = blob.double_diff if return_diff else blob.double_data
    legacy = any(blob.HasField(f) for f in ('num', 'channels', 'height', 'width'))
    if legacy:
        shape = (blob.num, blob.channels, blob.height, blob.width)
    else:
        shape = tuple(blob.shape.dim)
    count = int(np.prod(shape, dtype=np.int64))
    if len(values) != count:
        raise ValueError('BlobProto has %d %s values but its %sshape %s holds %d' % (
            len(values), 'diff' if return_diff else 'data', 'legacy ' if legacy else '',
            shape, count))
    return np.array(values, dtype=np.float64).reshape(shape)


def array_to_blobproto(arr, diff=None):
    """A BlobProto (shape + float data) holding arr, of any number of axes; diff, when
    given, must have arr's shape."""
    arr = np.asarray(arr)
    blob = _pb2().BlobProto()
    blob.shape.dim.extend(int(d) for d in arr.shape)
    blob.data.extend(arr.astype(np.float32).ravel().tolist())
    if diff is not None:
        diff = np.asarray(diff)
        if diff.shape != arr.shape:
            raise ValueError('diff has shape %s, data has shape %s' % (diff.shape, arr.shape))
        blob.diff.extend(diff.astype(np.float32).ravel().tolist())
    return blob


def arraylist_to_blobprotovector_str(arraylist):
    """A serialized BlobProtoVector (bytes) holding each array of arraylist."""
    vec = _pb2().BlobProtoVector()
    vec.blobs.extend(array_to_blobproto(a) for a in arraylist)
    return vec.SerializeToString()


# pycaffe's own spelling of the name, kept for scripts written against it
arraylist_to_blobprotovecor_str = arraylist_to_blobprotovector_str


def blobprotovector_str_to_arraylist(data):
    """The arrays of a serialized BlobProtoVector (bytes), in order."""
    vec = _pb2().BlobProtoVector()
    vec.ParseFromString(data)
    return [blobproto_to_array(b) for b in vec.blobs]


def array_to_datum(arr, label=None):
    """A Datum holding a K x H x W array: uint8 arrays as bytes (`data`), any other dtype
    as floats (`float_data`). The label is set only when given."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ValueError('array_to_datum needs a K x H x W array, got shape %s' % (arr.shape,))
    datum = _pb2().Datum()
    datum.channels, datum.height, datum.width = (int(d) for d in arr.shape)
    if arr.dtype == np.uint8:
        datum.data = arr.tobytes()
    else:
        datum.float_data.extend(arr.astype(np.float32).ravel().tolist())
    if label is not None:
        datum.label = label
    return datum


def datum_to_array(datum):
    """A Datum's values as a K x H x W array: uint8 from `data`, float64 from `float_data`
    (the label stays in datum.label)."""
    shape = (datum.channels, datum.height, datum.width)
    if datum.encoded:
        raise ValueError('the Datum holds an encoded image (%d bytes of an image file): '
                         'decode datum.data with an image library' % len(datum.data))
    if len(datum.data):
        values = np.frombuffer(datum.data, dtype=np.uint8)
    else:
        values = np.array(datum.float_data, dtype=np.float64)
    if values.size != shape[0] * shape[1] * shape[2]:
        raise ValueError('Datum has %d values but its shape %s holds %d' % (
            values.size, shape, shape[0] * shape[1] * shape[2]))
    return values.reshape(shape).copy()


# ---- preprocessing -----------------------------------------------------------------------

class Transformer(object):
    """Turns images into a net input's layout and back, for each named input.

    Transformer({'data': net.blobs['data'].data.shape}) then, per input, any of
    set_transpose, set_channel_swap, set_raw_scale, set_mean, set_input_scale.
    preprocess(name, image) applies, in this order: convert to float32, resize H x W to the
    input's, transpose, channel swap, * raw_scale, - mean, * input_scale. deprocess undoes
    them in reverse (except the resize).
    """

    def __init__(self, inputs):
        self.inputs = {name: tuple(int(d) for d in shape) for name, shape in inputs.items()}
        self.transpose = {}
        self.channel_swap = {}
        self.raw_scale = {}
        self.mean = {}
        self.input_scale = {}

    def _check_input(self, in_):
        if in_ not in self.inputs:
            raise ValueError('%r is not one of the net inputs: %s' % (
                in_, ', '.join(sorted(map(repr, self.inputs)))))

    def preprocess(self, in_, data):
        """An H' x W' x K image as the K x H x W float32 array input in_ takes."""
        self._check_input(in_)
        x = np.array(data, dtype=np.float32)  # a copy: the caller's array stays as it was
        in_dims = self.inputs[in_][2:]
        if len(in_dims) == 2 and x.ndim == 3 and x.shape[:2] != in_dims:
            x = resize_image(x, in_dims)
        transpose = self.transpose.get(in_)
        if transpose is not None:
            x = x.transpose(transpose)
        channel_swap = self.channel_swap.get(in_)
        if channel_swap is not None:
            x = x[list(channel_swap)]
        raw_scale = self.raw_scale.get(in_)
        if raw_scale is not None:
            x *= raw_scale
        mean = self.mean.get(in_)
        if mean is not None:
            x -= mean
        input_scale = self.input_scale.get(in_)
        if input_scale is not None:
            x *= input_scale
        return x

    def deprocess(self, in_, data):
        """Undoes preprocess: a K x H x W (or 1 x K x H x W) array back to H x W x K."""
        self._check_input(in_)
        x = np.array(data, dtype=np.float32)
        if x.ndim == len(self.inputs[in_]) and x.shape[0] == 1:
            x = x[0]  # one item of a batch
        input_scale = self.input_scale.get(in_)
        if input_scale is not None:
            x /= input_scale
        mean = self.mean.get(in_)
        if mean is not None:
            x += mean
        raw_scale = self.raw_scale.get(in_)
        if raw_scale is not None:
            x /= raw_scale
        channel_swap = self.channel_swap.get(in_)
        if channel_swap is not None:
            x = x[list(np.argsort(channel_swap))]
        transpose = self.transpose.get(in_)
        if transpose is not None:
            x = x.transpose(np.argsort(transpose))
        return x

    def set_transpose(self, in_, order):
        """The axis order taking an image to the input's layout, e.g. (2, 0, 1) for
        H x W x K -> K x H x W; one entry per axis of an input item."""
        self._check_input(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise ValueError('transpose order %s has %d axes; input %r items have %d' % (
                tuple(order), len(order), in_, len(self.inputs[in_]) - 1))
        self.transpose[in_] = tuple(order)

    def set_channel_swap(self, in_, order):
        """The channel order after transpose, e.g. (2, 1, 0) for RGB -> BGR."""
        self._check_input(in_)
        if len(order) != self.inputs[in_][1]:
            raise ValueError('channel swap %s has %d channels; input %r has %d' % (
                tuple(order), len(order), in_, self.inputs[in_][1]))
        self.channel_swap[in_] = tuple(order)

    def set_raw_scale(self, in_, scale):
        """Multiplies the raw input (after transpose and channel swap, before the mean is
        subtracted): 255 for models trained on [0, 255] images fed [0, 1] images."""
        self._check_input(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_, mean):
        """The mean to subtract: K values (one per channel) or a K x H x W (or H x W)
        array of the input item's shape."""
        self._check_input(in_)
        mean = np.asarray(mean)
        item = self.inputs[in_][1:]
        if mean.ndim == 1:
            if mean.shape[0] != item[0]:
                raise ValueError('mean has %d channels; input %r has %d' % (
                    mean.shape[0], in_, item[0]))
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            ms = mean.shape if mean.ndim != 2 else (1,) + mean.shape
            if len(ms) != 3:
                raise ValueError('mean must have 1, 2 or 3 axes, got shape %s' % (mean.shape,))
            if ms != item:
                raise ValueError('mean shape %s does not match input %r items %s' % (
                    mean.shape, in_, item))
            mean = mean.reshape(ms)
        self.mean[in_] = mean

    def set_input_scale(self, in_, scale):
        """Multiplies the input after the mean is subtracted (the last step)."""
        self._check_input(in_)
        self.input_scale[in_] = scale


# ---- images ------------------------------------------------------------------------------

def load_image(filename, color=True):
    """An image file as a float32 array in [0, 1]: H x W x 3 (RGB) when color, else
    H x W x 1 (grayscale images stay so; color images are converted). A grayscale file
    loaded with color=True is repeated over 3 channels; an alpha channel is dropped."""
    import skimage.io
    from skimage.util import img_as_float
    img = img_as_float(skimage.io.imread(filename, as_gray=not color)).astype(np.float32)
    if img.ndim == 2:
        img = img[:, :, np.newaxis]
        if color:
            img = np.tile(img, (1, 1, 3))
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    return img


def resize_image(im, new_dims, interp_order=1):
    """im (H x W x K, any K, or H x W) resized to new_dims (height, width) with spline
    interpolation of the given order (1: bilinear), as float32. Values keep their range
    (no rescaling to [0, 1]); edges are extended, not faded to zero."""
    from skimage.transform import resize
    im = np.asarray(im)
    new_dims = tuple(int(d) for d in new_dims)
    if im.shape[:2] == new_dims:
        return im.astype(np.float32)
    out = resize(im.astype(np.float32), new_dims + im.shape[2:], order=interp_order,
                 mode='edge', anti_aliasing=False, preserve_range=True)
    return out.astype(np.float32)


def oversample(images, crop_dims):
    """Ten crops of crop_dims (height, width) per H x W x K image: the top-left,
    top-right, bottom-left, bottom-right and center crops, then the same five mirrored
    left-right. Returns a (10 N) x h x w x K float32 array."""
    images = [np.asarray(im) for im in images]
    h, w = (int(d) for d in crop_dims)
    H, W, K = images[0].shape
    if h > H or w > W:
        raise ValueError('crop %dx%d is larger than the images (%dx%d)' % (h, w, H, W))
    corners = [(0, 0), (0, W - w), (H - h, 0), (H - h, W - w), ((H - h) // 2, (W - w) // 2)]
    crops = np.empty((10 * len(images), h, w, K), dtype=np.float32)
    for i, im in enumerate(images):
        if im.shape != (H, W, K):
            raise ValueError('image %d has shape %s, image 0 has %s' % (i, im.shape, (H, W, K)))
        for j, (y, x) in enumerate(corners):
            crops[10 * i + j] = im[y:y + h, x:x + w]
        crops[10 * i + 5:10 * i + 10] = crops[10 * i:10 * i + 5, :, ::-1]
    return crops
