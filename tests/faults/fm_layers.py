"""Layers of the fault matrix (tests/faults/fault_matrix.sh).

Fault     y = 10 x, dx = 10 dy, with one fault on demand. param_str "method:kind:at[:helper]":
          the fault happens in `method` (setup, reshape, forward, backward) on its call
          number `at` (0-based, counted in this object).
Source    a data layer (no bottoms; tops data, label of 4 x 3) run with replicas: 2. Batch k
          is produced by replica k % 2 (caffe.get_worker_info()). param_str "kind[:helper]": a
          module-level kind happens in the setup of replica 1 (the one on the second worker),
          any other kind in the forward of batch 5 (made by replica 1 in a prefetch thread).
NotALayer what python_param.layer names in the setup cell of "wrong class".
Scaler    the helper wrong_class builds by the class name `helper` (default Scaler).

Kinds (what each does where it happens):
  raise           raise ValueError
  segfault        ctypes.string_at(0)
  os_exit         os._exit(7)
  hang            a busy loop (the run's --py-timeout ends it)
  memory_error    np.empty of 4 PiB: NumPy's own MemoryError, from a failed allocation
  sysexit         sys.exit(3)
  import_error    import fm_no_such_module (a lazy import of a module that is not installed)
  syntax_error    import fm_syntax_helper (a lazy import of a helper module with a syntax
                  error; the driver writes it)
  wrong_class     the helper class named in param_str is built and called, but it is not
                  a helper (a Layer class): TypeError
  absurd_reshape  top[0].reshape to 2^60 elements (the core refuses: ValueError)
"""
import ctypes
import os
import sys

import numpy as np

import caffe


class Scaler(object):
    """The helper: multiplies by k."""

    def __init__(self, k):
        self.k = k

    def __call__(self, x):
        return self.k * x


# One function per kind; each gets the layer's tops and the helper class name.
def _raise(top, helper):
    raise ValueError('fault matrix failure')


def _segfault(top, helper):
    ctypes.string_at(0)


def _os_exit(top, helper):
    os._exit(7)


def _hang(top, helper):
    while True:
        pass


def _memory_error(top, helper):
    np.empty(1 << 50, dtype=np.float32)


def _sysexit(top, helper):
    sys.exit(3)


def _import_error(top, helper):
    import fm_no_such_module  # noqa: F401


def _syntax_error(top, helper):
    import fm_syntax_helper  # noqa: F401


def _wrong_class(top, helper):
    globals()[helper](10)(np.ones(3))


def _absurd_reshape(top, helper):
    top[0].reshape(1 << 20, 1 << 20, 1 << 20)


def fault(kind, top, helper):
    """Does what `kind` says (an unknown kind is a KeyError: a typo in the driver fails)."""
    return globals()['_' + kind](top, helper)


class Fault(caffe.Layer):
    def setup(self, bottom, top):
        parts = self.param_str.split(':')
        self.where, self.kind, self.at = parts[0], parts[1], int(parts[2])
        self.helper = parts[3] if len(parts) > 3 else 'Scaler'
        self.calls = {}
        self._maybe('setup', top)

    def _maybe(self, method, top):
        n = self.calls.get(method, 0)
        self.calls[method] = n + 1
        if method == self.where and n == self.at:
            fault(self.kind, top, self.helper)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)
        self._maybe('reshape', top)

    def forward(self, bottom, top):
        self._maybe('forward', top)
        top[0].data[...] = 10 * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        self._maybe('backward', top)
        if propagate_down[0]:
            bottom[0].diff[...] = 10 * top[0].diff


MODULE_KINDS = ('import_error', 'syntax_error', 'wrong_class')


class Source(caffe.Layer):
    def setup(self, bottom, top):
        parts = self.param_str.split(':')
        self.kind = parts[0]
        self.helper = parts[1] if len(parts) > 1 else 'Scaler'
        info = caffe.get_worker_info()
        if info is None:
            raise RuntimeError('Source expects to be prefetched (get_worker_info() is None)')
        self.id, self.step, self.k = info.id, info.num_workers, info.first_batch
        if self.kind in MODULE_KINDS and self.id == 1:
            fault(self.kind, top, self.helper)

    def reshape(self, bottom, top):
        top[0].reshape(4, 3)
        top[1].reshape(4, 3)

    def forward(self, bottom, top):
        if self.k == 5 and self.kind not in MODULE_KINDS:
            fault(self.kind, top, self.helper)
        top[0].data[...] = 0.5
        top[1].data[...] = 1
        self.k += self.step

    def backward(self, top, propagate_down, bottom):
        pass


class NotALayer(object):
    """A class that is not a caffe.Layer (python_param.layer naming the wrong class)."""

    def __init__(self, *args):
        pass
