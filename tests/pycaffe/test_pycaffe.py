"""netrun's pycaffe from the caller's side: crash isolation, zero-copy views, Ctrl-C, bad
input, garbage-collection order. Run by ctest (tests/pycaffe/CMakeLists.txt) with the staged
package first on PYTHONPATH; PYC_WORKERS=0 runs every net's Python layers in this
interpreter instead of workers (the cases that need workers are skipped then)."""
import gc
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # pyc_layers, as a user's module next to their script

import caffe  # noqa: E402

WORKERS = int(os.environ.get('PYC_WORKERS', '1'))
caffe.set_py_workers(WORKERS)
needs_workers = unittest.skipIf(WORKERS == 0, 'needs Python layers in worker processes')


def write(text, suffix='.prototxt'):
    f = tempfile.NamedTemporaryFile('w', suffix=suffix, delete=False)
    f.write(textwrap.dedent(text))
    f.close()
    return f.name


def chain_net(layer='Times10', param_str=''):
    return write("""\
        name: 'chain' force_backward: true
        input: 'data' input_shape { dim: 2 dim: 3 }
        layer { type: 'Python' name: 'one' bottom: 'data' top: 'one'
          python_param { module: 'pyc_layers' layer: '%s' param_str: '%s' } }
        layer { type: 'Python' name: 'two' bottom: 'one' top: 'two'
          python_param { module: 'pyc_layers' layer: 'Times10' } }
        """ % (layer, param_str))


NATIVE_NET = """\
    name: 'native' force_backward: true
    input: 'data' input_shape { dim: 4 dim: 5 }
    layer { type: 'InnerProduct' name: 'ip' bottom: 'data' top: 'ip'
      inner_product_param { num_output: 3 weight_filler { type: 'gaussian' std: 1 } } }
    """


class Base(unittest.TestCase):
    def setUp(self):
        self.files = []

    def tearDown(self):
        for f in self.files:
            if os.path.exists(f):
                os.remove(f)

    def net_file(self, path):
        self.files.append(path)
        return path

    def check_chain_works(self):
        net = caffe.Net(self.net_file(chain_net()), caffe.TRAIN)
        net.blobs['data'].data[...] = 2
        out = net.forward()['two']
        np.testing.assert_array_equal(out, np.full((2, 3), 200, np.float32))


class TestCrashIsolation(Base):
    """A layer that raises, segfaults, exits or hangs raises in the caller; the interpreter
    goes on and a new net works."""

    def fail_in(self, method, kind, expect, **opts):
        net_file = self.net_file(chain_net('Fault', '%s:%s' % (method, kind)))
        with self.assertRaises(caffe.LayerError) as cm:
            net = caffe.Net(net_file, caffe.TRAIN, **opts)
            net.blobs['data'].data[...] = 1
            net.forward()
            net.blobs['two'].diff[...] = 1
            net.backward()
        msg = str(cm.exception)
        self.assertIn("layer 'one'", msg)
        self.assertIn('pyc_layers.Fault.%s' % method, msg)
        self.assertIn(expect, msg)
        return cm.exception

    def test_raise_everywhere(self):
        for method in ('setup', 'reshape', 'forward', 'backward'):
            with self.subTest(method=method):
                e = self.fail_in(method, 'raise', 'pycaffe test failure in %s' % method)
                self.assertIsInstance(e, caffe.LayerRaised)
                self.assertIsInstance(e, RuntimeError)  # as pycaffe's own errors
                self.assertIn('Traceback', str(e))
        self.check_chain_works()

    @needs_workers
    def test_segfault_exit_everywhere(self):
        for method in ('setup', 'forward', 'backward'):
            for kind, expect in (('segv', 'SIGSEGV'), ('exit', 'exit')):
                with self.subTest(method=method, kind=kind):
                    e = self.fail_in(method, kind, expect)
                    self.assertIsInstance(e, caffe.WorkerError)
        self.check_chain_works()

    @needs_workers
    def test_hang_times_out(self):
        t0 = time.monotonic()
        e = self.fail_in('forward', 'hang', 'timeout', py_timeout=1)
        self.assertIsInstance(e, caffe.WorkerError)
        self.assertLess(time.monotonic() - t0, 15)
        self.check_chain_works()

    @needs_workers
    def test_restart_replays_the_call(self):
        marker = tempfile.mktemp()
        self.files.append(marker)
        net = caffe.Net(self.net_file(chain_net('Fault', 'forward:segv:' + marker)),
                        caffe.TRAIN, py_restarts=1)
        net.blobs['data'].data[...] = 3
        out = net.forward()['two']  # the worker dies once, is restarted, the call replayed
        np.testing.assert_array_equal(out, np.full((2, 3), 300, np.float32))
        self.assertTrue(os.path.exists(marker))

    @needs_workers
    def test_layers_run_out_of_process(self):
        net = caffe.Net(self.net_file(write("""\
            name: 'pid'
            layer { type: 'Python' name: 'p' top: 'pid'
              python_param { module: 'pyc_layers' layer: 'Pid' } }""")), caffe.TEST)
        self.assertNotEqual(int(net.forward()['pid'][0]), os.getpid())


class TestViews(Base):
    def test_zero_copy_both_ways(self):
        net = caffe.Net(self.net_file(write(NATIVE_NET)), caffe.TEST)
        data = net.blobs['data'].data
        self.assertIs(net.blobs['data'].data, data)  # cached: no new view per access
        self.assertEqual(data.dtype, np.float32)
        self.assertTrue(data.flags['C_CONTIGUOUS'])
        data[...] = 1
        w = net.params['ip'][0].data
        w[...] = 0.5  # net surgery through the view
        out = net.forward()['ip']
        np.testing.assert_allclose(out, np.full((4, 3), 2.5), rtol=1e-6)
        # the engine wrote into the very memory the view shows
        self.assertIs(net.blobs['ip'].data, net.blobs['ip'].data)
        np.testing.assert_allclose(net.blobs['ip'].data, 2.5)

    def test_views_outlive_net_and_reshape(self):
        net = caffe.Net(self.net_file(write(NATIVE_NET)), caffe.TEST)
        net.blobs['data'].data[...] = 7
        old = net.blobs['data'].data
        net.blobs['data'].reshape(40, 5)  # grows: new memory
        net.reshape()
        self.assertEqual(net.blobs['data'].data.shape, (40, 5))
        w = net.params['ip'][0].data
        del net
        gc.collect()
        self.assertEqual(float(old.sum()), 7 * 20)  # old memory still alive and intact
        self.assertEqual(w.shape, (3, 5))
        float(w.sum())

    def test_assign_checks(self):
        net = caffe.Net(self.net_file(write(NATIVE_NET)), caffe.TEST)
        with self.assertRaises(TypeError):
            net.blobs['data'].data = None
        with self.assertRaises(ValueError):
            net.blobs['data'].data = np.ones((2, 2))
        net.blobs['data'].data = 3
        self.assertEqual(float(net.blobs['data'].data.sum()), 60)


class TestBadInput(Base):
    def test_missing_file(self):
        with self.assertRaises(OSError) as cm:
            caffe.Net('/nonexistent/net.prototxt', caffe.TEST)
        self.assertIn('/nonexistent/net.prototxt', str(cm.exception))

    def test_parse_error_names_line_and_column(self):
        path = self.net_file(write("name: 'x'\nlayer { name: 'a' type: 'Input' top: 't'\n"))
        with self.assertRaises(ValueError) as cm:
            caffe.Net(path, caffe.TEST)
        self.assertIn(path + ':', str(cm.exception))

    def test_unknown_layer_and_shape_mismatch(self):
        path = self.net_file(write("layer { name: 'a' type: 'Frobnicate' top: 't' }"))
        with self.assertRaises(ValueError) as cm:
            caffe.Net(path, caffe.TEST)
        self.assertIn('Frobnicate', str(cm.exception))
        net = caffe.Net(self.net_file(write(NATIVE_NET)), caffe.TEST)
        net.blobs['data'].reshape(4, 6)
        with self.assertRaises(ValueError) as cm:
            net.forward()
        self.assertIn("'ip'", str(cm.exception))

    def test_bad_phase_and_options(self):
        path = self.net_file(write(NATIVE_NET))
        with self.assertRaises(ValueError):
            caffe.Net(path, 7)
        with self.assertRaises(ValueError):
            caffe.Net(path, caffe.TEST, py_workers=-5)
        with self.assertRaises(TypeError):
            caffe.Net(path, caffe.TEST, py_frobnicate=1)

    def test_weights_of_another_net(self):
        net = caffe.Net(self.net_file(write(NATIVE_NET)), caffe.TEST)
        f = self.net_file(tempfile.mktemp(suffix='.caffemodel'))
        net.save(f)
        other = self.net_file(write(NATIVE_NET.replace('num_output: 3', 'num_output: 4')))
        with self.assertRaises(ValueError) as cm:
            caffe.Net(other, caffe.TEST, weights=f)
        self.assertIn('ip', str(cm.exception))


MEMORY_NET = """\
    name: 'md'
    layer { name: 'data' type: 'MemoryData' top: 'data' top: 'label'
      memory_data_param { batch_size: 2 channels: 1 height: 2 width: 3 } }
    layer { name: 'ip' type: 'InnerProduct' bottom: 'data' top: 'ip'
      inner_product_param { num_output: 1 weight_filler { type: 'constant' value: 1 } } }
    """


class TestMemoryData(Base):
    """set_input_arrays feeds the first layer, a MemoryData layer, batch by batch."""

    def test_batches_in_order_and_wrap_around(self):
        net = caffe.Net(self.net_file(write(MEMORY_NET)), caffe.TEST)
        data = np.arange(4 * 6, dtype=np.float32).reshape(4, 1, 2, 3)
        labels = np.array([7, 8, 9, 10], dtype=np.float32)
        net.set_input_arrays(data, labels)
        seen = []
        for _ in range(3):
            out = net.forward()
            seen.append((net.blobs['label'].data.tolist(), out['ip'][:, 0].tolist()))
        sums = data.reshape(4, 6).sum(axis=1).tolist()
        self.assertEqual(seen, [([7, 8], sums[:2]), ([9, 10], sums[2:]), ([7, 8], sums[:2])])
        self.assertEqual(net.blobs['data'].data.shape, (2, 1, 2, 3))
        # the arrays are read as they are at each forward (kept by reference, as Caffe)
        data[0] = 0
        net.forward()
        net.forward()
        self.assertEqual(float(net.blobs['ip'].data[0, 0]), 0.0)

    def test_checks_as_caffe(self):
        net = caffe.Net(self.net_file(write(MEMORY_NET)), caffe.TEST)
        with self.assertRaisesRegex(ValueError, 'MemoryData has no arrays'):
            net.forward()
        good = np.zeros((4, 1, 2, 3), np.float32)
        labels = np.zeros(4, np.float32)
        cases = [
            (good[:3], labels[:3], 'multiple of batch size'),
            (good, labels[:2], 'same first dimension'),
            (good.astype(np.float64), labels, 'data array must be float32'),
            (np.zeros((4, 1, 2, 2), np.float32), labels, 'data array has wrong width'),
            (np.zeros((4, 2, 2, 3), np.float32), labels, 'wrong number of channels'),
            (good.reshape(4, 6), labels, 'data array must be 4-d'),
            (np.zeros((4, 1, 3, 2), np.float32).transpose(0, 1, 3, 2), labels,
             'data array must be C contiguous'),
        ]
        for data, lab, msg in cases:
            with self.subTest(msg=msg):
                with self.assertRaisesRegex(RuntimeError, msg):
                    net.set_input_arrays(data, lab)
        # the C entry point itself refuses buffers smaller than the layer reads
        with self.assertRaisesRegex(ValueError, 'data must hold 4 x 1 x 2 x 3 floats'):
            net._set_input_arrays(np.zeros((4, 1), np.float32), labels)
        with self.assertRaisesRegex(ValueError, 'labels 4'):
            net._set_input_arrays(good, np.zeros(3, np.float32))
        other = caffe.Net(self.net_file(write(NATIVE_NET)), caffe.TEST)
        with self.assertRaisesRegex(RuntimeError, 'first layer is a MemoryData layer'):
            other.set_input_arrays(good, labels)


class SolverFiles(Base):
    def solver_file(self):
        net = write(NATIVE_NET.replace("input: 'data' input_shape { dim: 4 dim: 5 }",
                                       "layer { type: 'DummyData' name: 'd' top: 'data' "
                                       "dummy_data_param { shape { dim: 4 dim: 5 } } }") +
                    "layer { type: 'EuclideanLoss' name: 'l' bottom: 'ip' bottom: 'ip' "
                    "top: 'loss' }\n")
        self.files.append(net)
        return self.net_file(write("net: '%s' base_lr: 0.1 lr_policy: 'fixed' max_iter: 5 "
                                   "snapshot_after_train: false display: 0\n" % net))


class TestSharedWeights(Base):
    """A solver's test net shares the trained values, not the gradients (Caffe's
    ShareTrainedLayersWith): its layers, Python ones included, see diffs of their own."""

    def test_test_net_shares_data_not_diff(self):
        net = self.net_file(write("""\
            name: 'shared'
            layer { type: 'DummyData' name: 'd' top: 'data' top: 'target'
              dummy_data_param { shape { dim: 4 dim: 5 } shape { dim: 4 dim: 3 }
                data_filler { type: 'constant' value: 1 } } }
            layer { type: 'Python' name: 'own' bottom: 'data' top: 'scaled' top: 'seen'
              python_param { module: 'pyc_layers' layer: 'OwnDiff' } }
            layer { type: 'InnerProduct' name: 'ip' bottom: 'scaled' top: 'ip'
              inner_product_param { num_output: 3 weight_filler { type: 'gaussian' std: 1 } } }
            layer { type: 'EuclideanLoss' name: 'l' bottom: 'ip' bottom: 'target' top: 'loss' }
            """))
        s = caffe.SGDSolver(self.net_file(write(
            "net: '%s' base_lr: 0.01 lr_policy: 'fixed' max_iter: 5 test_iter: 1 "
            "test_interval: 1000 snapshot_after_train: false display: 0\n" % net)))
        s.step(2)
        train, test = s.net, s.test_nets[0]
        self.assertNotEqual(float(np.abs(train.params['ip'][0].diff).sum()), 0)
        self.assertNotEqual(float(train.params['own'][0].diff[0]), 0)
        test.forward()
        # the values are the trained ones, in the native and in the Python layer
        np.testing.assert_array_equal(test.params['ip'][0].data, train.params['ip'][0].data)
        self.assertEqual(float(test.params['own'][0].data[0]),
                         float(train.params['own'][0].data[0]))
        self.assertNotEqual(float(train.params['own'][0].data[0]), 1)
        # the gradients are the test net's own: zero, as the Python layer saw at forward
        self.assertEqual(float(test.blobs['seen'].data[0]), 0)
        self.assertEqual(float(np.abs(test.params['ip'][0].diff).sum()), 0)
        train_diff = train.params['ip'][0].diff.copy()
        test.blobs['loss'].diff[...] = 1
        test.backward()
        self.assertNotEqual(float(np.abs(test.params['ip'][0].diff).sum()), 0)
        np.testing.assert_array_equal(train.params['ip'][0].diff, train_diff)
        # a train-net update is seen by the test net at once (shared data)
        train.params['ip'][0].data[...] = 0.5
        np.testing.assert_array_equal(test.params['ip'][0].data,
                                      np.full((3, 5), 0.5, np.float32))


class TestLifetimes(SolverFiles):
    def test_any_gc_order(self):
        for order in ('net_first', 'solver_first', 'views_first'):
            with self.subTest(order=order):
                s = caffe.SGDSolver(self.solver_file())
                net = s.net
                view = net.blobs['ip'].data
                s.step(2)
                objs = {'net_first': [net, s, view], 'solver_first': [s, net, view],
                        'views_first': [view, net, s]}[order]
                del s, net, view
                while objs:
                    objs.pop(0)
                    gc.collect()

    @unittest.skipIf(WORKERS != 0, 'Python layers in this interpreter only')
    def test_layer_drops_or_drives_a_net_of_its_runtime(self):
        # A layer running in this interpreter drops the last reference to another net (as
        # a garbage collection inside a layer may): freed when the call ends, no deadlock.
        # Driving one from inside a layer is a RuntimeError, not a hang.
        import pyc_layers
        for mode in ('drop', 'drive'):
            with self.subTest(mode=mode):
                pyc_layers.held_nets[:] = [caffe.Net(self.net_file(chain_net()), caffe.TRAIN)]
                del pyc_layers.outcome[:]
                net = caffe.Net(self.net_file(chain_net('Reentrant', mode)), caffe.TRAIN)
                net.blobs['data'].data[...] = 1
                out = net.forward()['two']
                np.testing.assert_array_equal(out, np.full((2, 3), 100, np.float32))
                self.assertEqual(pyc_layers.held_nets, [])
                if mode == 'drive':
                    self.assertEqual(len(pyc_layers.outcome), 1)
                    self.assertIn('cannot drive a net or solver of the runtime that is running '
                                  'it', pyc_layers.outcome[0])
                del net
                gc.collect()
        self.check_chain_works()

    @needs_workers
    def test_workers_survive_the_creating_thread(self):
        made = {}

        def make():
            made['net'] = caffe.Net(self.net_file(chain_net()), caffe.TRAIN)

        t = threading.Thread(target=make)
        t.start()
        t.join()
        time.sleep(0.3)  # a worker tied to the dead thread would be killed by now
        net = made['net']
        net.blobs['data'].data[...] = 1
        np.testing.assert_array_equal(net.forward()['two'], np.full((2, 3), 100, np.float32))

    @needs_workers
    def test_fork_child_leaves_parent_nets_alone(self):
        net = caffe.Net(self.net_file(chain_net()), caffe.TRAIN)
        net.blobs['data'].data[...] = 1
        net.forward()
        pid = os.fork()
        if pid == 0:  # the child: using the parent's net is refused; dropping it is harmless
            code = 4
            try:
                net.forward()
                code = 1
            except RuntimeError as e:
                code = 0 if 'os.fork()' in str(e) else 2
            finally:
                del net
                gc.collect()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        np.testing.assert_array_equal(net.forward()['two'], np.full((2, 3), 100, np.float32))

    def test_gil_released_during_forward(self):
        net = caffe.Net(self.net_file(write(NATIVE_NET.replace('dim: 4 dim: 5',
                                                               'dim: 256 dim: 4096')
                                            .replace('num_output: 3', 'num_output: 1024'))),
                        caffe.TEST)
        ticks = []
        stop = threading.Event()

        def ticker():
            while not stop.is_set():
                ticks.append(time.monotonic())
                time.sleep(0.001)

        t = threading.Thread(target=ticker)
        t.start()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.5:
            net.forward()
        stop.set()
        t.join()
        gaps = np.diff(ticks)
        self.assertGreater(len(ticks), 50)  # the other thread ran during the forwards
        self.assertLess(float(np.median(gaps)), 0.05)


CTRL_C_SCRIPT = """
import os, sys, time
sys.path[:0] = %r
import caffe
caffe.set_py_workers(%d)
s = caffe.SGDSolver(%r)
print('ready', flush=True)
try:
    s.step(2147483647)
    print('finished?!', flush=True)
except KeyboardInterrupt:
    print('interrupted at', s.iter, flush=True)
it = s.iter
s.step(3)
assert s.iter == it + 3, (s.iter, it)
print('consistent', flush=True)
"""


class TestCtrlC(SolverFiles):
    def test_ctrl_c_interrupts_step(self):
        script = CTRL_C_SCRIPT % (sys.path[:3], WORKERS, self.solver_file())
        p = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.assertEqual(p.stdout.readline().strip(), 'ready')
        time.sleep(0.5)
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, err[-2000:])
        self.assertIn('interrupted at', out)
        self.assertIn('consistent', out)
        self.assertLess(time.monotonic() - t0, 10)


if __name__ == '__main__':
    unittest.main()
