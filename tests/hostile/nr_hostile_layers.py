"""Python layers that misbehave on purpose, for tests/hostile/hostile_test.sh (issue: a
careless or hostile layer must never abort, hang, over-read, feed wrong data or leave a
process behind). Each layer says what it does wrong."""
import os
import time

import numpy as np

import caffe


class GrowingOutput(caffe.Layer):
    """A net output whose element count grows by one at every forward: the scores of
    `netrun test` must not be read past what the first batch sized."""

    def setup(self, bottom, top):
        self.n = 2

    def reshape(self, bottom, top):
        top[0].reshape(self.n)

    def forward(self, bottom, top):
        top[0].data[...] = 1.0
        self.n += 1

    def backward(self, top, propagate_down, bottom):
        pass


class Ones(caffe.Layer):
    """A well-behaved data layer: top = ones(2, 3). The baseline the flag cases run."""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(2, 3)

    def forward(self, bottom, top):
        top[0].data[...] = 1.0

    def backward(self, top, propagate_down, bottom):
        pass


class AssignNone(caffe.Layer):
    """Assigns a non-numeric value to its top in forward (param_str: none, str, obj):
    pycaffe raises there; NumPy alone would store NaN and the run would go on."""

    def setup(self, bottom, top):
        self.value = {'none': None, 'str': 'abc', 'obj': object()}[self.param_str]

    def reshape(self, bottom, top):
        top[0].reshape(2, 3)

    def forward(self, bottom, top):
        top[0].data = self.value

    def backward(self, top, propagate_down, bottom):
        pass


class LongExceptionName(caffe.Layer):
    """Raises an exception whose class name is 2 000 characters long: the layer's own
    message must reach the user (the core treated the reply as invalid and killed the
    worker)."""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        cls = type('E' * 2000, (Exception,), {})
        raise cls('the layer said why')

    def backward(self, top, propagate_down, bottom):
        pass


class ScalarToUnshaped(caffe.Layer):
    """Assigns a scalar to a top it never reshaped: the message must say so."""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        top[0].data = 1.0

    def backward(self, top, propagate_down, bottom):
        pass


def _spawn(mode, piddir):
    """Starts a process that sleeps for ten minutes: 'fork' (a child), 'double' (a
    grandchild whose parent exits at once), 'setsid' (a child in a session of its own).
    Returns once its pid is written to piddir/<mode>.pid."""
    path = os.path.join(piddir, mode + '.pid')
    pid = os.fork()
    if pid == 0:
        try:
            if mode == 'setsid':
                os.setsid()
            if mode == 'double' and os.fork() != 0:
                os._exit(0)
            with open(path + '.tmp', 'w') as f:
                f.write(str(os.getpid()))
            os.rename(path + '.tmp', path)
            time.sleep(600)
        finally:
            os._exit(0)
    if mode == 'double':
        os.waitpid(pid, 0)
    while not os.path.exists(path):
        time.sleep(0.01)


class Forker(caffe.Layer):
    """At its first forward starts the processes param_str names ('fork,double,setsid',
    pid files in the current directory): none may outlive the run."""

    def setup(self, bottom, top):
        self.started = False

    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        if not self.started:
            self.started = True
            for mode in self.param_str.split(','):
                _spawn(mode, os.getcwd())
        top[0].data[0] = 1

    def backward(self, top, propagate_down, bottom):
        pass


def _ctl_block():
    """(address, size) of this worker's control block, the mapping it shares with netrun."""
    with open('/proc/self/maps') as f:
        for line in f:
            if 'netrun-ctl' in line:
                lo, hi = (int(x, 16) for x in line.split()[0].split('-'))
                return lo, hi - lo
    raise RuntimeError('no netrun-ctl mapping: not running in a netrun worker')


class ScribbleCtl(caffe.Layer):
    """Overwrites its own worker's control block at its second forward: param_str 'ff'
    (0xFF bytes: glibc's sem_wait aborted netrun on those), '00' (zeros), 'random' (noise),
    'seq' (only the reply number, set to one that cannot be): each message rewrites the
    fields it uses, so the run must go on with right results. 'thread': a thread keeps
    writing 0xFF over the block, replies included: netrun must report the worker as faulty
    and end it. Never an abort, a hang or a wrong result."""

    def setup(self, bottom, top):
        self.calls = 0

    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        import ctypes
        self.calls += 1
        top[0].data[0] = 1
        if self.calls < 2:
            return
        addr, size = _ctl_block()
        n = min(size, 1 << 16)
        if self.param_str == 'thread':
            import threading

            def scribble():
                while True:
                    ctypes.memset(addr, 0xFF, 4096)

            threading.Thread(target=scribble, daemon=True).start()
            time.sleep(0.05)
        elif self.param_str == 'ff':
            ctypes.memset(addr, 0xFF, n)
        elif self.param_str == '00':
            ctypes.memset(addr, 0, n)
        elif self.param_str == 'random':
            ctypes.memmove(addr, os.urandom(n), n)
        elif self.param_str == 'seq':
            ctypes.c_uint32.from_address(addr + 4).value = 0x7FFFFFF0  # rep_seq

    def backward(self, top, propagate_down, bottom):
        pass


class KeptView(caffe.Layer):
    """A common pycaffe habit: keep a view of the top from setup (param_str 'setup') or from
    reshape ('reshape') and fill it in forward. Batch k (1, 2, ...) is all k: the mean over
    N batches of 'out' is (N + 1) / 2 when the net gets what the layer wrote."""

    def setup(self, bottom, top):
        self.k = 0
        top[0].reshape(2, 3)
        if self.param_str == 'setup':
            self.out = top[0].data

    def reshape(self, bottom, top):
        top[0].reshape(2, 3)
        if self.param_str == 'reshape':
            self.out = top[0].data

    def forward(self, bottom, top):
        self.k += 1
        self.out[...] = self.k

    def backward(self, top, propagate_down, bottom):
        pass


class ForkThenDie(caffe.Layer):
    """At its first forward starts a child (os.fork, sleeping) and then kills its own worker
    (SIGKILL): the child must not outlive the run although the worker could not end it."""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        _spawn('fork', os.getcwd())
        os.kill(os.getpid(), 9)

    def backward(self, top, propagate_down, bottom):
        pass
