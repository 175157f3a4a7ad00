"""Python layers for netrun's CLI end-to-end tests (tests/e2e_py/py_test.sh).

Every layer here is deterministic: same inputs, same outputs, whatever the worker."""
import os
import time

import numpy as np

import caffe


class Fault(caffe.Layer):
    """top = 10 * bottom, bottom.diff = 10 * top.diff, with a fault on demand.

    param_str "method:kind[:at[:marker]]": the fault happens in `method` (setup, reshape,
    forward, backward) on its call number `at` (0-based, counted in this object; default 0).
    With a marker path the fault happens only while that file does not exist, and creates
    it (a one-time crash for the restart and resume tests).
    kinds: raise, segv, exit, hang, counts (index a top that is not there). The full set of
    kinds in every method is the fault matrix (tests/faults/fm_layers.py)."""

    def setup(self, bottom, top):
        parts = self.param_str.split(':')
        self.where, self.kind = parts[0], parts[1]
        self.at = int(parts[2]) if len(parts) > 2 and parts[2] else 0
        self.marker = parts[3] if len(parts) > 3 else None
        self.calls = {}
        self._top = top
        self._maybe('setup')

    def _maybe(self, method):
        n = self.calls.get(method, 0)
        self.calls[method] = n + 1
        if method != self.where or n != self.at:
            return
        if self.marker:
            if os.path.exists(self.marker):
                return
            open(self.marker, 'w').close()
        k = self.kind
        if k == 'raise':
            raise ValueError('e2e failure in %s' % method)
        if k == 'segv':
            import ctypes
            ctypes.string_at(0)
        if k == 'exit':
            os._exit(7)
        if k == 'hang':
            while True:
                pass
        if k == 'counts':
            self._top[1].reshape(1)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)
        self._maybe('reshape')

    def forward(self, bottom, top):
        self._maybe('forward')
        top[0].data[...] = 10 * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        self._maybe('backward')
        if propagate_down[0]:
            bottom[0].diff[...] = 10 * top[0].diff


class TwoInputs(caffe.Layer):
    """Checks its blob counts the way the tutorial's layers do."""

    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception('Need two inputs, got %d' % len(bottom))

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data + bottom[1].data

    def backward(self, top, propagate_down, bottom):
        pass


class Scale(caffe.Layer):
    """top[0] = w * bottom with one learnable scalar w (add_blob, starts at 2). A second
    top, if any, reports w as this object sees it (the TEST net's copy)."""

    def setup(self, bottom, top):
        self.blobs.add_blob(1)
        self.blobs[0].data[...] = 2.0

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)
        if len(top) > 1:
            top[1].reshape()

    def forward(self, bottom, top):
        top[0].data[...] = self.blobs[0].data[0] * bottom[0].data
        if len(top) > 1:
            top[1].data = self.blobs[0].data[0]

    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[0] += np.sum(top[0].diff * bottom[0].data)
        if propagate_down[0]:
            bottom[0].diff[...] = self.blobs[0].data[0] * top[0].diff


class Slow(caffe.Layer):
    """Identity that sleeps param_str seconds per forward (the Ctrl-C and kill tests)."""

    def setup(self, bottom, top):
        self.delay = float(self.param_str or 0)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        time.sleep(self.delay)
        top[0].data[...] = bottom[0].data

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff


class Printer(caffe.Layer):
    """Identity that prints long lines (param_str: its tag) on every forward."""

    def setup(self, bottom, top):
        self.tag = self.param_str

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        for i in range(20):
            print('PRINT %s %d %s END' % (self.tag, i, 'x' * 2000))
        top[0].data[...] = bottom[0].data

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff


class Sized(caffe.Layer):
    """A data layer whose top is param_str "rows,cols" floats of ones (the blob-size limit
    test)."""

    def setup(self, bottom, top):
        self.shape = tuple(int(v) for v in self.param_str.split(','))

    def reshape(self, bottom, top):
        top[0].reshape(*self.shape)

    def forward(self, bottom, top):
        top[0].data[...] = 1

    def backward(self, top, propagate_down, bottom):
        pass
