"""Python layers for tests/soak (restart determinism and the soak).

Batch     replicated data layer: batch k is data[i, 0] = k, data[i, j] = i * 10 + j for
          j > 0 (rows x 3; k alone in column 0 stays exact in float32 up to 2^24 batches,
          whereas k * 1000 + ... rounded past 2^24 / 1000 batches: the 1 M soak saw it)
          and label[i] = (k + i) % 3; replica `id` makes k = first_batch, first_batch +
          num_workers, ... (caffe.get_worker_info()). param_str: see Killer.
Scale     top = w * bottom, one learnable scalar w (add_blob, starts at 1).
Ident     top = bottom (the soak's cheap call).
Check     identity that checks the batch index k = data[0, 0] it receives: k must be
          the last seen index (a replayed call) or the next one; the last index lives in a
          file (param_str "state=PATH"), so it survives a killed worker. Anything else
          (lost or duplicated batch) raises ValueError, which ends the run. Its top is
          sin(bottom / 100), a bounded input that still depends on k.

Killer (mixed into each layer): param_str "seed=S,p=P,done=FILE,arm=ARM" makes the layer SIGKILL its
own worker before call n (counted in the file FILE across restarts, one line per call made)
when a hash of (S, layer name, n) is below P; each call number is killed at most once (the
kill is recorded in FILE before it happens), so a replayed call goes through. Kills are armed only while the file ARM exists (so an
undisturbed run can use the same prototxt: a .caffemodel carries it).
"setups=FILE,setupkill=N" (armed by ARM too) makes the layer SIGKILL its worker in its
setups number 2 .. N+1 (FILE.<layer tag> counts them across restarts): a worker that dies while the
core sets its layers up again after a restart, N times in a row."""
import os
import signal
import zlib

import numpy as np

import caffe


def _params(s):
    out = {}
    for part in (s or '').split(','):
        if '=' in part:
            k, v = part.split('=', 1)
            out[k.strip()] = v.strip()
    return out


class Killer(object):
    def _kill_setup(self, tag):
        p = _params(self.param_str)
        self._seed = int(p.get('seed', 0))
        self._p = float(p.get('p', 0))
        self._done = p.get('done')
        self._arm = p.get('arm')
        self._tag = tag
        self._n = None
        setups, n = p.get('setups'), int(p.get('setupkill', 0))
        if setups and n > 0 and (not self._arm or os.path.exists(self._arm)):
            setups += '.' + tag
            with open(setups, 'a') as f:
                f.write('s\n')
            with open(setups) as f:
                k = len(f.read().split())
            if 2 <= k <= n + 1:
                os.kill(os.getpid(), signal.SIGKILL)

    def _maybe_kill(self):
        if not self._done or self._p <= 0 or (self._arm and not os.path.exists(self._arm)):
            return
        if self._n is None:
            # call number: how many calls this layer made before, across restarts
            try:
                with open(self._done) as f:
                    lines = f.read().split()
                self._n = sum(1 for l in lines if l.startswith('c'))
                self._killed = set(l for l in lines if l.startswith('k'))
            except FileNotFoundError:
                self._n, self._killed = 0, set()
        n = self._n
        h = zlib.crc32(('%d:%s:%d' % (self._seed, self._tag, n)).encode()) / 2.0**32
        key = 'k%d' % n
        if h < self._p and key not in self._killed:
            with open(self._done, 'a') as f:
                f.write(key + '\n')
            os.kill(os.getpid(), signal.SIGKILL)
        self._n = n + 1
        with open(self._done, 'a') as f:
            f.write('c\n')


class Batch(caffe.Layer, Killer):
    def setup(self, bottom, top):
        info = caffe.get_worker_info()
        if info is None:
            raise RuntimeError('Batch expects to be prefetched')
        self.id, self.step, self.k = info.id, info.num_workers, info.first_batch
        p = _params(self.param_str)
        self.rows = int(p.get('rows', 4))
        self._kill_setup('batch%d' % self.id)
        if self._done:
            self._done += '.%d' % self.id

    def reshape(self, bottom, top):
        top[0].reshape(self.rows, 3)
        top[1].reshape(self.rows)

    def forward(self, bottom, top):
        self._maybe_kill()
        k, n = self.k, self.rows
        top[0].data[...] = np.arange(n)[:, None] * 10 + np.arange(3)[None, :]
        top[0].data[:, 0] = k
        top[1].data[...] = (k + np.arange(n)) % 3
        self.k += self.step

    def backward(self, top, propagate_down, bottom):
        pass


class Scale(caffe.Layer, Killer):
    def setup(self, bottom, top):
        self.blobs.add_blob(1)
        self.blobs[0].data[...] = 1.0
        self._kill_setup('scale')

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        self._maybe_kill()
        top[0].data[...] = self.blobs[0].data[0] * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        self._maybe_kill()
        self.blobs[0].diff[0] += np.sum(top[0].diff * bottom[0].data)
        if propagate_down[0]:
            bottom[0].diff[...] = self.blobs[0].data[0] * top[0].diff


class Ident(caffe.Layer, Killer):
    """top = bottom: the cheapest call, for the soak's call count."""

    def setup(self, bottom, top):
        self._kill_setup('ident')

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        self._maybe_kill()
        top[0].data[...] = bottom[0].data

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff


class Check(caffe.Layer):
    def setup(self, bottom, top):
        self.state = _params(self.param_str).get('state')

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        k = int(bottom[0].data[0, 0])
        if self.state:
            try:
                with open(self.state) as f:
                    last = int(f.read() or -1)
            except FileNotFoundError:
                last = -1
            if k != last and k != last + 1:
                raise ValueError('batch %d after batch %d: lost or duplicated batch' % (k, last))
            if k != last:
                with open(self.state + '.tmp', 'w') as f:
                    f.write(str(k))
                os.replace(self.state + '.tmp', self.state)
        top[0].data[...] = np.sin(bottom[0].data / 100.0)

    def backward(self, top, propagate_down, bottom):
        pass
