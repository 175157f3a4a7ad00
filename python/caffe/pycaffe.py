"""pycaffe's driving API over netrun's engine: caffe.Net, the solvers, the Python-layer
runtime options. The C half is caffe._caffe (python/ext/); this module gives it pycaffe's
Python surface (blobs, params, forward(**inputs), ...), as Caffe's pycaffe.py does over its
_caffe.cpp. Only importable in the user's own Python, where the extension is built; inside
a netrun worker the `caffe` package is the layer API alone.

Where Python layers run. A net's `type: "Python"` layers run in netrun-worker processes
(py_workers=-1: one for the layers the net calls in step, others for prefetched data
layers, up to the core count), so a layer that raises, segfaults, exits or hangs past
py_timeout raises caffe.LayerError here (LayerRaised for an exception, WorkerError for a
dead or hung worker) and this interpreter goes on; with
py_restarts=K a dead worker is restarted and the call replayed. py_workers=0 runs them in
this interpreter, as Caffe does. Options go to Net(...) and the solvers as keywords, or
process-wide through caffe.set_py_workers() and its siblings. Workers import layer modules
with this interpreter's sys.path (as it is when the net is made; restarted workers too).

Nets made with the same options share one runtime (one worker pool); share_with needs
that. A view (blob.data) outlives its net: it keeps the memory alive.
"""

import os
import sys
import weakref
from collections import OrderedDict

import numpy as np

# First: without the extension (a worker's copy of the package) this raises
# ModuleNotFoundError for caffe._caffe, which caffe/__init__.py expects.
from ._caffe import LayerError, LayerRaised, WorkerError  # noqa: F401 (re-exported)
from . import _caffe

__all__ = ['Net', 'Solver', 'SGDSolver', 'NesterovSolver', 'AdaGradSolver', 'RMSPropSolver',
           'AdaDeltaSolver', 'AdamSolver', 'get_solver', 'LayerError', 'LayerRaised',
           'WorkerError', 'set_py_workers', 'set_py_timeout', 'set_py_restarts',
           'set_py_prefetch', 'set_random_seed', 'layer_type_list']

TRAIN = 0
TEST = 1

_options = {'py_workers': -1, 'py_timeout': 0.0, 'py_restarts': 0, 'py_prefetch': 3,
            'py_max_blob_bytes': 0}
_runtimes = weakref.WeakValueDictionary()


def set_py_workers(n):
    """Worker processes for the Python layers of nets made from now on (-1: one per Python
    layer, at most the core count; 0: in this interpreter)."""
    _options['py_workers'] = int(n)


def set_py_timeout(seconds):
    """Seconds a Python layer call may take before its worker is ended (0: no limit)."""
    _options['py_timeout'] = float(seconds)


def set_py_restarts(k):
    """Restarts of dead or hung workers allowed over a runtime's life (the call is
    replayed)."""
    _options['py_restarts'] = int(k)


def set_py_prefetch(k):
    """Batches a Python data layer computes ahead of the net (0: none)."""
    _options['py_prefetch'] = int(k)


def set_random_seed(seed):
    """Seeds the fillers of every net made from now on (and solvers without
    random_seed)."""
    _caffe.set_random_seed(int(seed))


def _runtime(opts):
    known = set(_options)
    bad = set(opts) - known
    if bad:
        raise TypeError('unknown option(s) %s (known: %s)' % (
            ', '.join(sorted(bad)), ', '.join(sorted(known))))
    o = dict(_options)
    o.update(opts)
    # workers import the caller's layer modules with the caller's sys.path (restarts too)
    dirs = [os.path.abspath(p or '.') for p in sys.path]
    o['python_path'] = os.pathsep.join(d for d in dirs if os.path.isdir(d))
    key = tuple(sorted(o.items()))
    rt = _runtimes.get(key)
    # A runtime with a worker that died for good keeps serving its own nets (their calls say
    # so); new nets get a fresh one.
    if rt is None or rt.failed_workers:
        rt = _caffe.Runtime(**o)
        _runtimes[key] = rt
    return rt


def _split_py_options(kwargs):
    return {k: kwargs.pop(k) for k in list(kwargs) if k.startswith('py_')}


class Net(_caffe.Net):
    """A net, as pycaffe's caffe.Net:

        Net(model, phase)                       phase: caffe.TRAIN or caffe.TEST
        Net(model, weights, phase)              (Caffe's legacy order)
        Net(model, phase, weights=None, level=0, stages=None)

    plus the runtime options py_workers, py_timeout, py_restarts, py_prefetch."""

    def __init__(self, model, *args, **kwargs):
        py = _split_py_options(kwargs)
        weights = kwargs.pop('weights', None)
        level = kwargs.pop('level', 0)
        stages = kwargs.pop('stages', None)
        if kwargs:
            raise TypeError('Net() got unexpected keyword argument(s): %s'
                            % ', '.join(sorted(kwargs)))
        if len(args) == 1:
            phase = args[0]
        elif len(args) == 2 and weights is None:
            weights, phase = args
        else:
            raise TypeError('Net(model, phase) or Net(model, weights, phase)')
        _caffe.Net.__init__(self, _runtime(py), model, phase, weights, level, stages)

    # ---- structure, as pycaffe ----

    @property
    def blobs(self):
        """An OrderedDict of the blobs by name, in creation order."""
        d = self.__dict__.get('_blobs_dict')
        if d is None:
            d = self.__dict__['_blobs_dict'] = OrderedDict(zip(self._blob_names, self._blobs))
        return d

    @property
    def blob_loss_weights(self):
        return OrderedDict(zip(self._blob_names, self._blob_loss_weights))

    @property
    def layer_dict(self):
        return OrderedDict(zip(self._layer_names, self.layers))

    @property
    def params(self):
        """An OrderedDict of each layer's parameter blobs, for layers that have some."""
        return OrderedDict((name, layer.blobs) for name, layer
                           in zip(self._layer_names, self.layers) if len(layer.blobs) > 0)

    @property
    def inputs(self):
        return [self._blob_names[i] for i in self._inputs]

    @property
    def outputs(self):
        return [self._blob_names[i] for i in self._outputs]

    @property
    def top_names(self):
        names = self._blob_names
        return OrderedDict((n, [names[i] for i in self._top_ids(k)])
                           for k, n in enumerate(self._layer_names))

    @property
    def bottom_names(self):
        names = self._blob_names
        return OrderedDict((n, [names[i] for i in self._bottom_ids(k)])
                           for k, n in enumerate(self._layer_names))

    def _layer_index(self, name, what):
        try:
            return list(self._layer_names).index(name)
        except ValueError:
            raise KeyError('%s: no layer named %r' % (what, name)) from None

    # ---- running ----

    def set_input_arrays(self, data, labels):
        """Hands data (N x C x H x W float32, C-contiguous) and labels (N, or N x 1 x 1 x 1) to
        the net's first layer, a MemoryData layer; each forward then takes the next
        batch_size items, wrapping around. N must be a multiple of batch_size. The net keeps
        the arrays referenced and reads them as they are at each forward (as Caffe)."""
        if isinstance(labels, np.ndarray) and labels.ndim == 1:
            labels = np.ascontiguousarray(labels[:, np.newaxis, np.newaxis, np.newaxis])
        # RuntimeError, as Caffe's pycaffe raises for every one of these checks
        try:
            batch, channels, height, width = self._memory_data_dims()
        except ValueError as e:
            raise RuntimeError(str(e)) from None
        for arr, name, shape in ((data, 'data array', (channels, height, width)),
                                 (labels, 'labels array', (1, 1, 1))):
            if not isinstance(arr, np.ndarray):
                raise RuntimeError('%s must be a numpy array' % name)
            if not arr.flags['C_CONTIGUOUS']:
                raise RuntimeError('%s must be C contiguous' % name)
            if arr.ndim != 4:
                raise RuntimeError('%s must be 4-d' % name)
            if arr.dtype != np.float32:
                raise RuntimeError('%s must be float32' % name)
            for axis, what in ((1, 'channels'), (2, 'height'), (3, 'width')):
                if arr.shape[axis] != shape[axis - 1]:
                    raise RuntimeError('%s has wrong %s (%d, expected %d)' % (
                        name, 'number of channels' if what == 'channels' else what,
                        arr.shape[axis], shape[axis - 1]))
        if data.shape[0] != labels.shape[0]:
            raise RuntimeError('data and labels must have the same first dimension')
        if data.shape[0] % batch != 0:
            raise RuntimeError('first dimensions of input arrays must be a multiple of batch '
                             'size (%d items, batch size %d)' % (data.shape[0], batch))
        self._set_input_arrays(data, labels)
        self.__dict__['_input_arrays'] = (data, labels)  # read at every forward

    def forward(self, blobs=None, start=None, end=None, **kwargs):
        """Forward from layer `start` to layer `end` (names; default all). Keyword arguments
        fill the net's inputs first. Returns {name: array} of the outputs (or of end's tops)
        and of the blobs listed in `blobs`."""
        blobs = list(blobs or [])
        start_ind = 0 if start is None else self._layer_index(start, 'forward start')
        if end is None:
            end_ind = len(self.layers) - 1
            outputs = set(self.outputs + blobs)
        else:
            end_ind = self._layer_index(end, 'forward end')
            outputs = set(self.top_names[end] + blobs)
        if kwargs:
            if set(kwargs) != set(self.inputs):
                raise ValueError('input blob arguments %s do not match the net inputs %s'
                                 % (sorted(kwargs), sorted(self.inputs)))
            for name, value in kwargs.items():
                if np.shape(value)[0] != self.blobs[name].shape[0]:
                    raise ValueError('input %r is not batch sized (%d, expected %d)' % (
                        name, np.shape(value)[0], self.blobs[name].shape[0]))
                self.blobs[name].data[...] = value
        self._forward(start_ind, end_ind)
        return {name: self.blobs[name].data for name in outputs}

    def backward(self, diffs=None, start=None, end=None, **kwargs):
        """Backward from layer `start` down to `end` (names; default all). Keyword arguments
        set the output diffs first. Returns {name: diff array} of the inputs (or of end's
        bottoms) and of the blobs listed in `diffs`."""
        diffs = list(diffs or [])
        start_ind = len(self.layers) - 1 if start is None else \
            self._layer_index(start, 'backward start')
        if end is None:
            end_ind = 0
            outputs = set(self.inputs + diffs)
        else:
            end_ind = self._layer_index(end, 'backward end')
            outputs = set(self.bottom_names[end] + diffs)
        if kwargs:
            if set(kwargs) != set(self.outputs):
                raise ValueError('top diff arguments %s do not match the net outputs %s'
                                 % (sorted(kwargs), sorted(self.outputs)))
            for name, diff in kwargs.items():
                if np.shape(diff)[0] != self.blobs[name].shape[0]:
                    raise ValueError('diff %r is not batch sized' % name)
                self.blobs[name].diff[...] = diff
        self._backward(start_ind, end_ind)
        return {name: self.blobs[name].diff for name in outputs}

    def _batch(self, blobs):
        num = len(next(iter(blobs.values())))
        batch_size = next(iter(self.blobs.values())).shape[0]
        remainder = num % batch_size
        num_batches = num // batch_size
        for b in range(num_batches):
            i = b * batch_size
            yield {name: blobs[name][i:i + batch_size] for name in blobs}
        if remainder > 0:
            padded = {}
            for name in blobs:
                pad = np.zeros((batch_size - remainder,) + blobs[name].shape[1:])
                padded[name] = np.concatenate([blobs[name][-remainder:], pad])
            yield padded

    def forward_all(self, blobs=None, **kwargs):
        """Forward over inputs of any batch count (split into the net's batch size, the
        last one padded); returns {name: stacked outputs}."""
        all_outs = {out: [] for out in set(self.outputs + (blobs or []))}
        for batch in self._batch(kwargs):
            outs = self.forward(blobs=blobs, **batch)
            for out, out_blob in outs.items():
                all_outs[out].extend(out_blob.copy())
        pad = len(next(iter(all_outs.values()))) - len(next(iter(kwargs.values())))
        for out in all_outs:
            all_outs[out] = np.asarray(all_outs[out])
            if pad:
                all_outs[out] = all_outs[out][:-pad]
        return all_outs

    def forward_backward_all(self, blobs=None, diffs=None, **kwargs):
        """forward_all and backward over all of the inputs/output diffs given."""
        all_outs = {out: [] for out in set(self.outputs + (blobs or []))}
        all_diffs = {diff: [] for diff in set(self.inputs + (diffs or []))}
        forward_batches = self._batch({k: kwargs[k] for k in self.inputs if k in kwargs})
        backward_batches = self._batch({k: kwargs[k] for k in self.outputs if k in kwargs})
        for fb, bb in zip(forward_batches, backward_batches):
            batch_blobs = self.forward(blobs=blobs, **fb)
            batch_diffs = self.backward(diffs=diffs, **bb)
            for out, out_blobs in batch_blobs.items():
                all_outs[out].extend(out_blobs.copy())
            for diff, out_diffs in batch_diffs.items():
                all_diffs[diff].extend(out_diffs.copy())
        for out, diff in zip(all_outs, all_diffs):
            all_outs[out] = np.asarray(all_outs[out])
            all_diffs[diff] = np.asarray(all_diffs[diff])
        pad = len(next(iter(all_outs.values()))) - len(next(iter(kwargs.values())))
        if pad:
            for out, diff in zip(all_outs, all_diffs):
                all_outs[out] = all_outs[out][:-pad]
                all_diffs[diff] = all_diffs[diff][:-pad]
        return all_outs, all_diffs

    # ---- weights in HDF5 (Caffe's layout: /data/<layer>/<i>) ----

    def save_hdf5(self, path):
        import h5py
        with h5py.File(path, 'w') as f:
            data = f.create_group('data')
            for name, blobs in self.params.items():
                g = data.create_group(name)
                for i, b in enumerate(blobs):
                    g.create_dataset(str(i), data=b.data)

    def load_hdf5(self, path):
        import h5py
        with h5py.File(path, 'r') as f:
            data = f['data']
            for name, blobs in self.params.items():
                if name not in data:
                    continue
                g = data[name]
                if len(g) != len(blobs):
                    raise ValueError('%s: layer %r has %d parameter blobs in the file, %d in '
                                     'the net' % (path, name, len(g), len(blobs)))
                for i, b in enumerate(blobs):
                    b.data[...] = np.asarray(g[str(i)]).reshape(b.data.shape)


_caffe._set_net_class(Net)


class Solver(_caffe.Solver):
    """A solver from a solver prototxt: Solver(path, py_workers=..., ...). The subclasses
    fix the type (SGDSolver is SGD whatever the file says); get_solver(path) uses the
    file's own `type`."""
    _type = None

    def __new__(cls, path, **kwargs):
        rt = _runtime(_split_py_options(kwargs))
        if kwargs:
            raise TypeError('unexpected keyword argument(s): %s' % ', '.join(sorted(kwargs)))
        return _caffe.Solver.__new__(cls, rt, path, cls._type)

    def add_callback(self, on_start, on_gradients_ready):
        raise NotImplementedError('solver callbacks serve multi-GPU training (NCCL), which '
                                  'netrun does not have')


class SGDSolver(Solver):
    _type = 'SGD'


class NesterovSolver(Solver):
    _type = 'Nesterov'


class AdaGradSolver(Solver):
    _type = 'AdaGrad'


class RMSPropSolver(Solver):
    _type = 'RMSProp'


class AdaDeltaSolver(Solver):
    _type = 'AdaDelta'


class AdamSolver(Solver):
    _type = 'Adam'


def get_solver(path, **kwargs):
    """The solver a solver prototxt describes, of its own `type`."""
    return Solver(path, **kwargs)


def layer_type_list():
    """Every layer type netrun knows, 'Python' included, sorted (as Caffe's registry lists
    them)."""
    return sorted(_caffe.layer_type_list())
