"""Python layers for tests/pycaffe: well-behaved ones and ones that fail on demand.

Fault: top = 10 * bottom; param_str "method:kind[:marker]" fails in `method` (setup,
reshape, forward, backward) with `kind` (raise, segv, exit, hang). With a marker path the
fault happens only while that file does not exist, and creates it (a one-time crash)."""
import os
import time

import numpy as np

import caffe


class Times10(caffe.Layer):
    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = 10 * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = 10 * top[0].diff


class Fault(Times10):
    def setup(self, bottom, top):
        parts = self.param_str.split(':')
        self.where, self.kind = parts[0], parts[1]
        self.marker = parts[2] if len(parts) > 2 else None
        self._maybe('setup')

    def _maybe(self, method):
        if method != self.where:
            return
        if self.marker:
            if os.path.exists(self.marker):
                return
            open(self.marker, 'w').close()
        if self.kind == 'raise':
            raise ValueError('pycaffe test failure in %s' % method)
        if self.kind == 'segv':
            import ctypes
            ctypes.string_at(0)
        if self.kind == 'exit':
            os._exit(3)
        if self.kind == 'hang':
            while True:
                time.sleep(0.01)

    def reshape(self, bottom, top):
        self._maybe('reshape')
        Times10.reshape(self, bottom, top)

    def forward(self, bottom, top):
        self._maybe('forward')
        Times10.forward(self, bottom, top)

    def backward(self, top, propagate_down, bottom):
        self._maybe('backward')
        Times10.backward(self, top, propagate_down, bottom)


class Pid(caffe.Layer):
    """top[0] = the pid of the process the layer runs in."""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        top[0].data[0] = os.getpid()

    def backward(self, top, propagate_down, bottom):
        pass


class OwnDiff(caffe.Layer):
    """top[0] = w * bottom with a learnable scalar w (starts at 1); top[1] = the diff of w as
    this layer sees it at forward (a test net's layer must see its own, not the train net's)."""

    def setup(self, bottom, top):
        self.blobs.add_blob(1)
        self.blobs[0].data[...] = 1

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)
        top[1].reshape(1)

    def forward(self, bottom, top):
        top[0].data[...] = self.blobs[0].data[0] * bottom[0].data
        top[1].data[0] = self.blobs[0].diff[0]

    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[0] += np.sum(top[0].diff * bottom[0].data)
        bottom[0].diff[...] = self.blobs[0].data[0] * top[0].diff


# Nets the Reentrant layer drops or drives from inside a forward (in-process only: the
# caller's interpreter puts them here), and what came of driving one.
held_nets = []
outcome = []


class Reentrant(Times10):
    """forward first drops the last references to the nets in held_nets ('drop': the
    engine must not wait on itself to free them) or drives the first one ('drive': a clear
    RuntimeError, recorded in outcome), then multiplies by 10."""

    def forward(self, bottom, top):
        if self.param_str == 'drive' and held_nets:
            try:
                held_nets[0].forward()
                outcome.append('no error')
            except RuntimeError as e:
                outcome.append(str(e))
        del held_nets[:]
        import gc
        gc.collect()
        Times10.forward(self, bottom, top)
