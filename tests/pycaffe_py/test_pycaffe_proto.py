"""caffe.proto.caffe_pb2 (generated from netrun's proto/caffe.proto) against the project's
own files: every prototxt parses with google.protobuf.text_format; Python's re-printed text
builds the same net in netrun; binary files netrun writes (.caffemodel, .solverstate) parse;
a .caffemodel written from Python loads in netrun with the values given."""

import os
import re
import unittest

import numpy as np
from google.protobuf import text_format

import caffe
from caffe.proto import caffe_pb2

import pyc_util


def parse(path, message):
    with open(path) as f:
        return text_format.Parse(f.read(), message)


def check_summary(stdout):
    """netrun check's table and totals, without the header line naming the file."""
    return [line for line in stdout.splitlines() if not line.startswith('net ')]


class ProjectPrototxts(pyc_util.TempDirTest):
    def test_every_net_parses(self):
        nets = pyc_util.net_prototxts()
        self.assertGreaterEqual(len(nets), 12)
        for path in nets:
            with self.subTest(path=os.path.relpath(path, pyc_util.SOURCE_DIR)):
                net = parse(path, caffe_pb2.NetParameter())
                self.assertGreater(len(net.layer) + len(net.layers), 0)

    def test_every_solver_parses(self):
        solvers = [os.path.join(cwd, f)
                   for root in (pyc_util.CAFFE_DATA, os.path.join(pyc_util.SOURCE_DIR, 'examples'))
                   for cwd, _, files in os.walk(root) for f in files
                   if f.endswith('.prototxt') and 'solver' in f]
        self.assertGreaterEqual(len(solvers), 4)
        for path in solvers:
            with self.subTest(path=os.path.basename(path)):
                s = parse(path, caffe_pb2.SolverParameter())
                self.assertTrue(s.HasField('base_lr'))

    def test_python_text_builds_the_same_net(self):
        # Deploy nets need no data files: netrun check builds them whole.
        for name in ('mnist-lenet.prototxt',
                     'bvlc_googlenet-deploy.prototxt', 'bvlc_reference_caffenet-deploy.prototxt'):
            with self.subTest(net=name):
                original = os.path.join(pyc_util.CAFFE_DATA, name)
                net = parse(original, caffe_pb2.NetParameter())
                again = self.write(name, text_format.MessageToString(net))
                st1, out1, err1 = pyc_util.run_netrun('check', '--model', original)
                st2, out2, err2 = pyc_util.run_netrun('check', '--model', again)
                self.assertEqual(st1, 0, err1)
                self.assertEqual(st2, 0, err2)
                self.assertEqual(check_summary(out1), check_summary(out2))

    def test_field_named_base(self):
        # netrun's schema says base_ (protobuf-c); Python keeps Caffe's name
        net = text_format.Parse('layer { type: "Exp" exp_param { base: 2 } }',
                                caffe_pb2.NetParameter())
        self.assertEqual(net.layer[0].exp_param.base, 2)
        self.assertIn('base: 2', str(net))
        self.assertEqual(caffe_pb2.LogParameter().base, -1)


class BinaryFiles(pyc_util.TempDirTest):
    NET = '''name: "tiny"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
'''

    def test_netrun_snapshots_parse(self):
        self.write('net.prototxt', self.NET)
        self.write('solver.prototxt', 'net: "net.prototxt"\nbase_lr: 0.1\nmax_iter: 3\n'
                   'lr_policy: "fixed"\nmomentum: 0.9\nsnapshot: 3\nsnapshot_prefix: "snap"\n'
                   'display: 0\nrandom_seed: 1\n')
        st, out, err = pyc_util.run_netrun('train', '--solver', 'solver.prototxt', cwd=self.dir)
        self.assertEqual(st, 0, err)
        model = caffe_pb2.NetParameter()
        with open(self.path('snap_iter_3.caffemodel'), 'rb') as f:
            model.ParseFromString(f.read())
        ip = [l for l in model.layer if l.name == 'ip']
        self.assertEqual(len(ip), 1)
        shapes = [caffe.io.blobproto_to_array(b).shape for b in ip[0].blobs]
        self.assertEqual(shapes, [(2, 3), (2,)])
        state = caffe_pb2.SolverState()
        with open(self.path('snap_iter_3.solverstate'), 'rb') as f:
            state.ParseFromString(f.read())
        self.assertEqual(state.iter, 3)
        self.assertEqual(os.path.basename(state.learned_net), 'snap_iter_3.caffemodel')
        self.assertEqual([caffe.io.blobproto_to_array(h).shape for h in state.history],
                         [(2, 3), (2,)])

    def test_python_written_weights_load(self):
        # DummyData 2 -> Power (3x + 1 = 7) -> Exp (2^(0.1 x) = 2^0.7) -> InnerProduct with
        # weights written here: each output is known.
        self.write('net.prototxt', '''name: "w"
layer { name: "data" type: "DummyData" top: "data" dummy_data_param { shape { dim: 1 dim: 3 }
  data_filler { type: "constant" value: 2 } } }
layer { name: "p" type: "Power" bottom: "data" top: "p" power_param { scale: 3 shift: 1 } }
layer { name: "e" type: "Exp" bottom: "p" top: "e" exp_param { base: 2 scale: 0.1 } }
layer { name: "ip" type: "InnerProduct" bottom: "e" top: "ip" inner_product_param { num_output: 2 } }
''')
        w = np.array([[1, 2, 3], [-1, 0, 0.5]], dtype=np.float32)
        b = np.array([0.5, -1], dtype=np.float32)
        model = caffe_pb2.NetParameter()
        layer = model.layer.add(name='ip', type='InnerProduct')
        layer.blobs.extend([caffe.io.array_to_blobproto(w), caffe.io.array_to_blobproto(b)])
        with open(self.path('w.caffemodel'), 'wb') as f:
            f.write(model.SerializeToString())
        st, out, err = pyc_util.run_netrun('test', '--verbose', '--model', 'net.prototxt',
                                           '--weights', 'w.caffemodel', '--iterations', '1',
                                           cwd=self.dir)
        self.assertEqual(st, 0, err)
        got = [float(v) for v in re.findall(r'Batch 0, ip = (\S+)', err + out)]
        e = 2 ** 0.7
        want = [e * 6 + 0.5, e * -0.5 - 1]
        self.assertEqual(len(got), 2, err)
        np.testing.assert_allclose(got, want, rtol=1e-4)


if __name__ == '__main__':
    unittest.main()
