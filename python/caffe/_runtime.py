"""What netrun's layer runner calls in Python (not part of the user API)."""

import importlib
import os
import sys
import traceback

from ._blob import Blob, BlobVec
from ._layer import Layer

# Where the runner inserts directories of prototxts: after PYTHONPATH and the current
# directory, before the standard library (set by init()).
_insert_at = 0


class LayerParameter(object):
    """The opaque argument a Python layer's constructor receives (as in Caffe)."""

    __slots__ = ('name',)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return '<caffe LayerParameter %r>' % (self.name,)


def init(pkg_dir, layer_types):
    """Sets sys.path: caffe package dir, PYTHONPATH, the current directory, (prototxt
    directories, added per layer), then the interpreter's own paths."""
    global _insert_at
    if pkg_dir in sys.path:
        sys.path.remove(pkg_dir)
    sys.path.insert(0, pkg_dir)
    pos = 1
    for p in os.environ.get('PYTHONPATH', '').split(os.pathsep):
        if p and p in sys.path[pos:]:
            pos = max(pos, sys.path.index(p, pos) + 1)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(pos, cwd)
    _insert_at = sys.path.index(cwd) + 1
    import caffe
    caffe._in_worker = True
    # Data-parallel training (mpirun -np K netrun train): this rank of K, for sharding.
    caffe._solver_count = int(os.environ.get('NETRUN_SOLVER_COUNT', '1'))
    caffe._solver_rank = int(os.environ.get('NETRUN_SOLVER_RANK', '0'))
    if layer_types:
        caffe._layer_types = sorted(set(layer_types.split(', ')) | {'Python'})
    if not sys.argv:
        sys.argv[:] = ['netrun']
    try:
        sys.stdout.reconfigure(line_buffering=True)
        sys.stderr.reconfigure(line_buffering=True)
    except Exception:
        pass


def _add_source_dir(source_dir):
    """Puts a prototxt's directory on sys.path after the current directory (once)."""
    global _insert_at
    if source_dir and source_dir not in sys.path:
        sys.path.insert(_insert_at, source_dir)
        _insert_at += 1


_preloaded = None  # the module preload() imported in the zygote, if any


def preload(module, source_dir):
    """In the zygote: imports the first Python layer's module once, for every clone.
    Errors are left to the worker's own import, which reports them."""
    global _preloaded
    if not module or '/' in module or '\\' in module or module.endswith('.py'):
        return
    _add_source_dir(source_dir)
    try:
        importlib.import_module(module)
        _preloaded = module
    except BaseException:
        pass


def forget_preload():
    """In a clone whose current directory is not the zygote's: the module preload()
    found there may not be the one this directory holds; import it afresh."""
    global _preloaded
    if _preloaded:
        for name in [m for m in sys.modules if m == _preloaded or m.startswith(_preloaded + '.')]:
            del sys.modules[name]
        _preloaded = None


def create_layer(handle, name, module, cls, param_str, source_dir, phase, nbottom, ntop,
                 aliases, replica=0, nreplicas=0, first_batch=0):
    """Imports module, instantiates class; returns (layer, bottom, top, blobs, info) where
    info is the caffe.WorkerInfo of a prefetched data layer (nreplicas > 0) or None."""
    import caffe
    info = caffe.WorkerInfo(replica, nreplicas, first_batch) if nreplicas > 0 else None
    caffe._worker_info = info  # visible from the constructor on
    if not module:
        raise ImportError("python_param has no 'module'")
    if not cls:
        raise ImportError("python_param has no 'layer' (the class name)")
    if '/' in module or '\\' in module or module.endswith('.py'):
        stem = os.path.splitext(os.path.basename(module))[0]
        raise ImportError(
            'python_param.module %r is a file name, not a module name: write module: %r '
            'and put %s on PYTHONPATH, in the current directory or next to the prototxt'
            % (module, stem, os.path.basename(module) or module))
    _add_source_dir(source_dir)
    mod = importlib.import_module(module)
    try:
        klass = getattr(mod, cls)
    except AttributeError:
        raise AttributeError('module %r (%s) has no attribute %r' % (
            module, getattr(mod, '__file__', '?'), cls)) from None
    obj = klass(LayerParameter(name))
    if not isinstance(obj, Layer):
        raise TypeError('%s.%s is not a subclass of caffe.Layer' % (module, cls))
    obj.param_str = param_str
    obj.phase = phase
    blobs = obj.__dict__.get('_nr_blobs')
    if blobs is None or blobs._layer is None:
        blobs = obj.__dict__['_nr_blobs'] = BlobVec(handle)
    bottom = [Blob(handle, 0, i) for i in range(nbottom)]
    top = [bottom[aliases[i]] if aliases[i] >= 0 else Blob(handle, 1, i)
           for i in range(ntop)]
    return obj, bottom, top, blobs, info


def describe(exc_type, exc, tb):
    """(type name, message, formatted traceback) of an exception."""
    name = getattr(exc_type, '__qualname__', None) or str(exc_type)
    mod = getattr(exc_type, '__module__', 'builtins')
    if mod not in ('builtins', '__main__'):
        name = mod + '.' + name
    try:
        msg = str(exc)
    except Exception:
        msg = '<unprintable %s>' % name
    if exc_type is SystemExit:
        msg = 'SystemExit(%s) raised in a layer (a layer cannot end netrun)' % msg
    text = ''.join(traceback.format_exception(exc_type, exc, tb))
    return name, msg, text
