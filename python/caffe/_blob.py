"""caffe.Blob: a netrun blob seen from Python.

`data` and `diff` are float32, C-contiguous NumPy views over the blob's memory (shared
memory owned by the netrun core); they are cached and rebuilt only when the blob's
memory or shape changes. A view a layer keeps stays valid after the blob grows: it holds
the old mapping alive (it no longer shows the blob, as in Caffe, but never dangles).

Beyond pycaffe: `blob.data = value` copies (broadcasts) value into the blob instead of
raising AttributeError; a value that cannot broadcast, or a blob that has no shape yet,
raises ValueError; a value that is not numeric (None, a string, an object) raises TypeError
(NumPy alone would store NaN).
"""

import operator

import numpy

try:
    import _netrun  # built into netrun-worker / libnetrun-pyinproc
except ImportError:  # imported outside netrun (documentation tools, linters)
    _netrun = None

_MAX_AXES = 32
_EMPTY = numpy.empty((0,), numpy.float32)
_EMPTY.flags.writeable = False


def _dims(args, what):
    if len(args) > _MAX_AXES:
        raise ValueError('%s: %d axes (at most %d allowed)' % (what, len(args), _MAX_AXES))
    dims = []
    for i, a in enumerate(args):
        try:
            d = operator.index(a)
        except TypeError:
            raise TypeError('%s: dimension %d is %r, expected an int' % (what, i, a)) from None
        if d < 0:
            raise ValueError('%s: negative dimension %d at axis %d' % (what, d, i))
        dims.append(d)
    return tuple(dims)


_NUMERIC_KINDS = 'biuf'  # bool, signed, unsigned, float: what a float32 blob can hold


def _assign(view, value, blob, what):
    if not blob._shaped:
        raise ValueError('cannot assign to blob %s: the blob has no shape yet (call '
                         'reshape() on it first, e.g. top[0].reshape(...) in the layer\'s '
                         'reshape)' % what)
    arr = value if isinstance(value, numpy.ndarray) else numpy.asarray(value)
    if arr.dtype.kind not in _NUMERIC_KINDS:
        # numpy would turn None and other objects into NaN without a word
        raise TypeError('cannot assign %s to blob %s: expected numbers (a NumPy array, a '
                        'number or a sequence of numbers)' % (_describe(value), what))
    try:
        numpy.copyto(view, arr, casting='unsafe')
    except ValueError:
        raise ValueError('cannot assign a value of shape %s to blob %s of shape %s '
                         '(it does not broadcast)' % (numpy.shape(value), what, view.shape)) from None


def _describe(value):
    if isinstance(value, numpy.ndarray):
        return 'an array of dtype %s' % value.dtype
    return 'a value of type %s' % type(value).__name__


class Blob(object):
    __slots__ = ('_layer', '_kind', '_idx', '_map', '_cap', '_shape', '_shaped', '_data',
                 '_diff', '_dirty', '__weakref__')

    def __init__(self, layer, kind, idx):
        self._layer = layer  # the runtime's handle of the owning layer
        self._kind = kind    # 0 bottom, 1 top, 2 param
        self._idx = idx
        self._map = None
        self._cap = 0
        self._shape = ()
        self._shaped = False
        self._data = None
        self._diff = None
        self._dirty = False

    # Called by the runtime when the core says the blob changed.
    def _nr_set(self, mapping, cap, shaped, shape):
        self._map = mapping
        self._cap = cap
        self._shaped = shaped
        self._shape = shape
        self._data = None
        self._diff = None

    def _view(self, offset):
        if not self._shaped:
            return _EMPTY
        if self._map is None:  # a zero-sized shape
            return numpy.empty(self._shape, numpy.float32)
        return _netrun.view(self._map, offset, self._shape)

    @property
    def data(self):
        d = self._data
        if d is None:
            d = self._data = self._view(0)
        return d

    @data.setter
    def data(self, value):
        _assign(self.data, value, self, 'data')

    @property
    def diff(self):
        d = self._diff
        if d is None:
            d = self._diff = self._view(self._cap * 4)
        return d

    @diff.setter
    def diff(self, value):
        _assign(self.diff, value, self, 'diff')

    @property
    def shape(self):
        return self._shape

    @property
    def count(self):
        if not self._shaped:
            return 0
        c = 1
        for d in self._shape:
            c *= d
        return c

    def _legacy(self, i, name):
        if len(self._shape) > 4:
            raise ValueError('blob has %d axes; %s is defined for blobs of at most 4 axes'
                             % (len(self._shape), name))
        return self._shape[i] if i < len(self._shape) else 1

    @property
    def num(self):
        return self._legacy(0, 'num')

    @property
    def channels(self):
        return self._legacy(1, 'channels')

    @property
    def height(self):
        return self._legacy(2, 'height')

    @property
    def width(self):
        return self._legacy(3, 'width')

    def reshape(self, *args, **kwargs):
        if kwargs:
            raise RuntimeError('Blob.reshape takes positional int dimensions only')
        if self._shaped and args == self._shape:
            return
        dims = _dims(args, 'Blob.reshape')
        if self._shaped and dims == self._shape:
            return
        count = 1
        for d in dims:
            count *= d
        if count > self._cap:
            # The core owns all memory: ask it for a bigger segment (raises on refusal).
            self._map, self._cap = _netrun.grow(self._layer, self._kind, self._idx, dims)
        self._shape = dims
        self._shaped = True
        self._data = None
        self._diff = None
        if not self._dirty:
            self._dirty = True
            _netrun.dirty.append(self)

    def __repr__(self):
        return '<caffe.Blob shape=%s>' % (self._shape,)


class BlobVec(list):
    """A layer's learnable parameter blobs (pycaffe's `self.blobs`)."""

    __slots__ = ('_layer',)

    def __init__(self, layer):
        list.__init__(self)
        self._layer = layer

    def add_blob(self, *args):
        """Appends a zero-filled float32 parameter blob of shape args (positional ints)."""
        dims = _dims(args, 'add_blob')
        if self._layer is None:
            raise RuntimeError('add_blob: this layer is not attached to a netrun net')
        mapping, cap = _netrun.add_param(self._layer, dims)
        b = Blob(self._layer, 2, len(self))
        b._nr_set(mapping, cap, True, dims)
        self.append(b)
        return b
