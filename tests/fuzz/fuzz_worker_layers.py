"""Python layers for tests/fuzz/fuzz_worker_request.c: small, quick, and between them
touching every path of the worker's request handling — blob data and diff views over the
core's segments, reshapes that need a nested grow, parameters added through a nested
add_param, exceptions after a reshape, and a blob used after its layer was released."""

import caffe

_kept = []  # tops of Keep layers, possibly of layers released since


def reset():
    """Forgets the kept blobs (the harness calls it after each input)."""
    del _kept[:]


def _factor(param_str, default):
    return int(param_str) if param_str.isdigit() and len(param_str) < 4 else default


class Identity(caffe.Layer):
    """top[i] = bottom[i] forward, bottom[i].diff = top[i].diff backward."""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        for b, t in zip(bottom, top):
            if t is not b:
                t.reshape(*b.shape)

    def forward(self, bottom, top):
        for b, t in zip(bottom, top):
            if t is not b:
                t.data[...] = b.data

    def backward(self, top, propagate_down, bottom):
        for t, p, b in zip(top, propagate_down, bottom):
            if p and t is not b:
                b.diff[...] = t.diff


class Scale(caffe.Layer):
    """Every top gets bottom[0]'s shape with the first axis times int(param_str) (2)."""

    def setup(self, bottom, top):
        self.k = _factor(self.param_str, 2)

    def reshape(self, bottom, top):
        shape = list(bottom[0].shape) if bottom else [1]
        shape[:1] = [(shape[0] if shape else 1) * self.k]
        for t in top:
            t.reshape(*shape)

    def forward(self, bottom, top):
        for t in top:
            t.data[...] = float(bottom[0].data.sum()) if bottom else 1.0

    def backward(self, top, propagate_down, bottom):
        for p, b in zip(propagate_down, bottom):
            if p:
                b.diff[...] = float(sum(t.diff.sum() for t in top))


class Params(caffe.Layer):
    """int(param_str) (1) parameter blobs of shape (k + 1, 3), added in setup."""

    def setup(self, bottom, top):
        for k in range(_factor(self.param_str, 1)):
            self.blobs.add_blob(k + 1, 3)

    def reshape(self, bottom, top):
        for t in top:
            t.reshape(len(self.blobs), 3)

    def forward(self, bottom, top):
        for b in self.blobs:
            b.data[...] += 1
        for t in top:
            t.data[...] = float(len(self.blobs))

    def backward(self, top, propagate_down, bottom):
        for b in self.blobs:
            b.diff[...] = 0.5


class Raise(caffe.Layer):
    """Reshapes its first top, then raises (SystemExit in backward)."""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        if top:
            top[0].reshape(3, 4)
        raise ValueError('Raise.reshape')

    def forward(self, bottom, top):
        if top:
            top[0].reshape(5, 5)
        raise RuntimeError('Raise.forward')

    def backward(self, top, propagate_down, bottom):
        raise SystemExit(3)


class Keep(caffe.Layer):
    """Keeps its first top in a module global; forward grows every kept top, also those
    of Keep layers released since (the blob outlives its layer)."""

    def setup(self, bottom, top):
        if top:
            _kept.append(top[0])

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        for i, b in enumerate(_kept):
            b.reshape(len(_kept) + i, 7)
            b.data[...] = i

    def backward(self, top, propagate_down, bottom):
        pass
