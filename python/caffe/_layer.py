"""caffe.Layer: the base class of Python layers (pycaffe's PythonLayer surface)."""

from ._blob import BlobVec


class Layer(object):
    """Base class of a Python layer.

    netrun creates the object with one opaque argument (as Caffe does), then sets
    `param_str` (str) and `phase` (caffe.TRAIN = 0 / caffe.TEST = 1) and calls
    setup(bottom, top) then reshape(bottom, top); every forward calls reshape then
    forward; backward(top, propagate_down, bottom) runs when the net needs gradients.
    """

    def __init__(self, *args, **kwargs):
        pass

    @property
    def blobs(self):
        """The layer's learnable parameter blobs; add with self.blobs.add_blob(*shape)."""
        try:
            return self.__dict__['_nr_blobs']
        except KeyError:
            v = self.__dict__['_nr_blobs'] = BlobVec(None)
            return v

    @property
    def type(self):
        return 'Python'

    def _missing(self, what, args):
        raise NotImplementedError('%s.%s does not define %s(%s)' % (
            type(self).__module__, type(self).__name__, what, args))

    def setup(self, bottom, top):
        self._missing('setup', 'self, bottom, top')

    def reshape(self, bottom, top):
        self._missing('reshape', 'self, bottom, top')

    def forward(self, bottom, top):
        self._missing('forward', 'self, bottom, top')

    def backward(self, top, propagate_down, bottom):
        self._missing('backward', 'self, top, propagate_down, bottom')
