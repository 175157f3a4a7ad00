"""Python layers of the MPI tests.

ShardData: sample i of an endless stream (features from a generator seeded by i % n, label
i % 10); rank r of K takes samples r, r+K, r+2K, ... (caffe.solver_rank/solver_count), so K
ranks x batch B read, batch by batch, the same samples as one process x batch K*B. With
`log` it appends the ids it produced to <log>.<rank>.
Boom: passes its bottom through; raises on forward call `at` on rank `rank`.
"""
import caffe
import numpy as np


def _params(layer):
    return eval(layer.param_str) if layer.param_str else {}


class ShardData(caffe.Layer):
    def setup(self, bottom, top):
        p = _params(self)
        self.batch = int(p['batch'])
        self.n = int(p.get('n', 1 << 30))
        self.log = p.get('log') if self.phase == caffe.TRAIN else None
        self.k = caffe.solver_count()
        self.pos = caffe.solver_rank()
        self.rank = caffe.solver_rank()

    def reshape(self, bottom, top):
        top[0].reshape(self.batch, 1, 6, 6)
        top[1].reshape(self.batch)

    def forward(self, bottom, top):
        ids = []
        for m in range(self.batch):
            i = self.pos % self.n
            g = np.random.RandomState(i)
            top[0].data[m] = g.standard_normal((1, 6, 6)).astype(np.float32)
            top[1].data[m] = i % 10
            ids.append(i)
            self.pos += self.k
        if self.log:
            with open('%s.%d' % (self.log, self.rank), 'a') as f:
                f.write(''.join('%d\n' % i for i in ids))

    def backward(self, top, propagate_down, bottom):
        pass


class Boom(caffe.Layer):
    def setup(self, bottom, top):
        p = _params(self)
        self.at = int(p.get('at', 10))
        self.where = int(p.get('rank', 1))
        self.calls = 0

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        self.calls += 1
        if self.calls == self.at and caffe.solver_rank() == self.where:
            raise RuntimeError('boom on rank %d at call %d' % (self.where, self.at))
        top[0].data[...] = bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = top[0].diff
