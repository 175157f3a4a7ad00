"""netrun's `caffe` package, as seen by Python layers.

User layers run inside a netrun worker process (or inside netrun itself with
--py-workers 0) and import this package exactly as they import pycaffe:

    import caffe
    class MyLayer(caffe.Layer):
        def setup(self, bottom, top): ...
        def reshape(self, bottom, top): top[0].reshape(*bottom[0].data.shape)
        def forward(self, bottom, top): top[0].data[...] = 10 * bottom[0].data
        def backward(self, top, propagate_down, bottom): ...

Blobs are float32 NumPy views over netrun's shared memory (no copies). The parts of
pycaffe that drive a net from Python (caffe.Net, solvers, NetSpec, io) do not exist in
a worker: netrun drives the net.
"""

from ._blob import Blob, BlobVec
from ._layer import Layer

__version__ = '1.0.0'

TRAIN = 0
TEST = 1

_layer_types = ['Python']
_mode = 'cpu'
_solver_count = 1
_solver_rank = 0
_multiprocess = False


class WorkerInfo(object):
    """What caffe.get_worker_info() returns inside a prefetched Python data layer.

    id           this replica's index, 0 .. num_workers - 1
    num_workers  the number of replicas of the layer (python_param { replicas: R }, capped
                 at the pool size; 1 for a data layer that is prefetched but not replicated)
    first_batch  the global index of the batch this replica's first forward after setup
                 produces. netrun consumes batches round-robin: replica id produces
                 batches first_batch, first_batch + num_workers, ... Normally first_batch
                 == id; after a crashed replica was restarted (--py-restarts) it is the
                 index of the batch that was lost, so a layer whose batches are a function
                 of the batch index just starts there (see docs/workers.md).
    """

    __slots__ = ('id', 'num_workers', 'first_batch')

    def __init__(self, id, num_workers, first_batch):
        self.id = id
        self.num_workers = num_workers
        self.first_batch = first_batch

    def __repr__(self):
        return 'WorkerInfo(id=%d, num_workers=%d, first_batch=%d)' % (
            self.id, self.num_workers, self.first_batch)


_worker_info = None  # set by netrun around each call of a prefetched data layer


def get_worker_info():
    """Like torch.utils.data.get_worker_info(): a WorkerInfo (id, num_workers,
    first_batch) while a prefetched Python data layer (no bottoms) runs in a netrun
    worker, else None (layers with bottoms, --py-prefetch 0, --py-workers 0)."""
    return _worker_info


def layer_type_list():
    """Layer types the running netrun knows (contains 'Python')."""
    return list(_layer_types)


def set_mode_cpu():
    global _mode
    _mode = 'cpu'


def set_mode_gpu():
    """netrun is CPU-only; accepted for compatibility, has no effect."""


def set_device(device_id):
    """Accepted for compatibility, has no effect."""


def set_random_seed(seed):
    """Seeds NumPy's global generator (Python layers usually draw from it)."""
    import numpy
    numpy.random.seed(seed)


def init_log(*args, **kwargs):
    """Accepted for compatibility, has no effect."""


def log(message):
    print(message)


def solver_count():
    return _solver_count


def set_solver_count(n):
    global _solver_count
    _solver_count = int(n)


def solver_rank():
    return _solver_rank


def set_solver_rank(r):
    global _solver_rank
    _solver_rank = int(r)


def set_multiprocess(flag):
    global _multiprocess
    _multiprocess = bool(flag)


def has_nccl():
    return False


def _not_here(name):
    def f(*args, **kwargs):
        raise NotImplementedError(
            'caffe.%s is not available inside a netrun Python layer: netrun drives the net '
            '(use the netrun command line)' % name)
    f.__name__ = name
    return f


for _n in ('Net', 'get_solver', 'SGDSolver', 'NesterovSolver', 'AdaGradSolver',
           'RMSPropSolver', 'AdaDeltaSolver', 'AdamSolver', 'Classifier', 'Detector',
           'NetSpec', 'to_proto', 'NCCL', 'Timer'):
    globals()[_n] = _not_here(_n)
del _n
