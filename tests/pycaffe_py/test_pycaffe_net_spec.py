"""caffe.NetSpec / layers / params / to_proto: the prototxt text they produce, their naming
rules and errors, and that netrun builds (and runs) what they write."""

import re
import unittest

from google.protobuf import text_format

import caffe
from caffe import layers as L, params as P
from caffe.proto import caffe_pb2

import pyc_util


def lenet(batch):
    n = caffe.NetSpec()
    n.data, n.label = L.DummyData(shape=[dict(dim=[batch, 1, 28, 28]), dict(dim=[batch])],
                                  transform_param=dict(scale=1. / 255), ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20,
                            weight_filler=dict(type='xavier'))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50,
                            weight_filler=dict(type='xavier'))
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.ip1 = L.InnerProduct(n.pool2, num_output=500, weight_filler=dict(type='xavier'))
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.ip2 = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type='xavier'))
    n.loss = L.SoftmaxWithLoss(n.ip2, n.label)
    return n.to_proto()


class Text(unittest.TestCase):
    maxDiff = None

    def test_small_net_text(self):
        n = caffe.NetSpec()
        n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
        n.conv = L.Convolution(n.data, num_output=4, kernel_size=3, pad=1,
                               param=[dict(lr_mult=1), dict(lr_mult=2)],
                               bias_filler=dict(type='constant', value=0.5))
        n.pool = L.Pooling(n.conv, pool='AVE', global_pooling=True)
        n.out = L.Exp(n.pool, base=2, loss_weight=1)
        self.assertEqual(str(n.to_proto()), '''layer {
  name: "data"
  type: "Input"
  top: "data"
  input_param {
    shape {
      dim: 1
      dim: 3
      dim: 8
      dim: 8
    }
  }
}
layer {
  name: "conv"
  type: "Convolution"
  bottom: "data"
  top: "conv"
  param {
    lr_mult: 1.0
  }
  param {
    lr_mult: 2.0
  }
  convolution_param {
    num_output: 4
    pad: 1
    kernel_size: 3
    bias_filler {
      type: "constant"
      value: 0.5
    }
  }
}
layer {
  name: "pool"
  type: "Pooling"
  bottom: "conv"
  top: "pool"
  pooling_param {
    pool: AVE
    global_pooling: true
  }
}
layer {
  name: "out"
  type: "Exp"
  bottom: "pool"
  top: "out"
  loss_weight: 1.0
  exp_param {
    base: 2.0
  }
}
''')

    def test_text_parses_back(self):
        proto = lenet(8)
        again = text_format.Parse(str(proto), caffe_pb2.NetParameter())
        self.assertEqual(again, proto)


class Naming(unittest.TestCase):
    def test_lenet_layers(self):
        proto = lenet(50)
        self.assertEqual([l.name for l in proto.layer],
                         ['data', 'conv1', 'pool1', 'conv2', 'pool2', 'ip1', 'relu1', 'ip2',
                          'loss'])
        self.assertEqual(list(proto.layer[0].top), ['data', 'label'])
        relu = proto.layer[6]
        self.assertEqual((list(relu.bottom), list(relu.top)), (['ip1'], ['ip1']))
        self.assertEqual(list(proto.layer[7].bottom), ['ip1'])  # reads the in-place result
        self.assertEqual(list(proto.layer[8].bottom), ['ip2', 'label'])

    def test_anonymous_tops(self):
        data = L.Input(shape=dict(dim=[1, 2]))
        a = L.InnerProduct(data, num_output=3)
        b = L.InnerProduct(a, num_output=3)
        r = L.ReLU(b, in_place=True)
        proto = L.SoftmaxWithLoss(r, data).fn.tops[0].to_proto()
        self.assertEqual([(l.name, list(l.bottom), list(l.top)) for l in proto.layer], [
            ('Input1', [], ['Input1']),
            ('InnerProduct1', ['Input1'], ['InnerProduct1']),
            ('InnerProduct2', ['InnerProduct1'], ['InnerProduct2']),
            ('ReLU1', ['InnerProduct2'], ['InnerProduct2']),
            ('SoftmaxWithLoss1', ['InnerProduct2', 'Input1'], ['SoftmaxWithLoss1'])])
        self.assertEqual(caffe.to_proto(r, b), caffe.to_proto(r))  # each layer once

    def test_zero_and_many_tops(self):
        n = caffe.NetSpec()
        n.a, n.b = L.DummyData(shape=dict(dim=3), ntop=2)
        n.silence = L.Silence(n.a, n.b, ntop=0)
        self.assertIsInstance(n.silence, caffe.net_spec.Function)
        proto = n.to_proto()
        self.assertEqual([l.name for l in proto.layer], ['a', 'silence'])
        self.assertEqual(list(proto.layer[1].top), [])
        self.assertEqual(list(proto.layer[0].dummy_data_param.shape[0].dim), [3])
        lone = L.Silence(L.Input(shape=dict(dim=[1])), ntop=0)
        self.assertEqual([l.name for l in caffe.to_proto(lone).layer], ['Input1', 'Silence1'])

    def test_netspec_access(self):
        n = caffe.NetSpec()
        n['data'] = L.Input(shape=dict(dim=[1]))
        n.relu = L.ReLU(n['data'])
        self.assertIs(n.data, n['data'])
        self.assertEqual(n.keys(), ['data', 'relu'])
        self.assertEqual(n.vals(), [n.data, n.relu])
        self.assertIn('relu', n)
        with self.assertRaisesRegex(AttributeError, "NetSpec has no top 'nope'"):
            n.nope
        with self.assertRaises(KeyError):
            n['nope']
        n.update('relu', dict(negative_slope=0.1))
        self.assertAlmostEqual(n.to_proto().layer[1].relu_param.negative_slope, 0.1)


class Parameters(unittest.TestCase):
    def test_param_name_dict(self):
        d = caffe.net_spec.param_name_dict()
        self.assertEqual(d['Convolution'], 'convolution')
        self.assertEqual(d['InnerProduct'], 'inner_product')
        self.assertEqual(d['HDF5Data'], 'hdf5_data')
        self.assertEqual(d['LRN'], 'lrn')
        self.assertEqual(d['Python'], 'python')

    def test_enum_values(self):
        self.assertEqual(P.Pooling.MAX, caffe_pb2.PoolingParameter.MAX)
        self.assertEqual(P.Eltwise.SUM, caffe_pb2.EltwiseParameter.SUM)
        with self.assertRaisesRegex(AttributeError, "PoolingParameter has no value 'MEDIAN'"):
            P.Pooling.MEDIAN
        with self.assertRaisesRegex(AttributeError, 'no message NoSuchParameter'):
            P.NoSuch

    def test_types_whose_message_has_another_name(self):
        x = L.Input(shape=dict(dim=[1, 1, 4, 4]))
        d = L.Deconvolution(x, num_output=2, kernel_size=4, stride=2)
        self.assertEqual(d.to_proto().layer[1].convolution_param.stride, [2])
        s = L.SoftmaxWithLoss(x, x, axis=1, loss_param=dict(ignore_label=255))
        layer = s.to_proto().layer[1]
        self.assertEqual((layer.softmax_param.axis, layer.loss_param.ignore_label), (1, 255))

    def test_layer_fields_and_python_layers(self):
        x = L.Input(shape=dict(dim=[2]))
        y = L.Python(x, module='mylayers', layer='Double', param_str='{"k": 2}',
                     include=dict(phase=caffe.TRAIN), propagate_down=[False])
        layer = y.to_proto().layer[1]
        self.assertEqual((layer.python_param.module, layer.python_param.layer,
                          layer.python_param.param_str), ('mylayers', 'Double', '{"k": 2}'))
        self.assertEqual(layer.include[0].phase, caffe_pb2.TRAIN)
        self.assertEqual(list(layer.propagate_down), [False])

    def test_errors_name_layer_and_field(self):
        x = L.Input(shape=dict(dim=[1, 1, 4, 4]))
        with self.assertRaisesRegex(TypeError, r'^Silence input 0 is not a Top '
                                               r"\(type is <class 'tuple'>\)$"):
            L.Silence(L.DummyData(ntop=2), ntop=0)
        with self.assertRaisesRegex(AttributeError, r"layer 'Convolution1' \(Convolution\): "
                                    r"no field 'kernal_size' in ConvolutionParameter or "
                                    r'LayerParameter'):
            L.Convolution(x, kernal_size=3).to_proto()
        with self.assertRaisesRegex(AttributeError, r"convolution_param.weight_filler: "
                                    r"FillerParameter has no field 'tpye'"):
            L.Convolution(x, kernel_size=3, weight_filler=dict(tpye='xavier')).to_proto()
        with self.assertRaisesRegex(TypeError, r"layer 'Convolution1' \(Convolution\): "
                                    r'convolution_param.num_output: '):
            L.Convolution(x, kernel_size=3, num_output='ten').to_proto()
        with self.assertRaisesRegex(ValueError, r"pooling_param.pool: 'MEDIAN' is not a value "
                                    r'of PoolMethod \(MAX, AVE, STOCHASTIC\)'):
            L.Pooling(x, pool='MEDIAN').to_proto()
        with self.assertRaisesRegex(TypeError, 'a FillerParameter message takes a dict, got str'):
            L.Convolution(x, weight_filler='xavier').to_proto()


class InNetrun(pyc_util.TempDirTest):
    """What NetSpec writes is what netrun builds."""

    def check(self, proto, *flags):
        f = self.write('net.prototxt', str(proto))
        st, out, err = pyc_util.run_netrun('check', '--model', f, *flags)
        self.assertEqual(st, 0, err)
        return out

    def test_lenet_builds(self):
        out = self.check(lenet(50))
        self.assertIn('9 layers', out)
        self.assertIn('431080 learnable values', out)  # Caffe's LeNet
        self.assertRegex(out, r'pool2\s+Pooling\s+50x50x4x4')

    def test_zero_tops_builds(self):
        n = caffe.NetSpec()
        n.data, n.data2 = L.DummyData(shape=dict(dim=3), ntop=2)
        n.silence_data = L.Silence(n.data, ntop=0)
        n.silence_data2 = L.Silence(n.data2, ntop=0)
        out = self.check(n.to_proto())
        self.assertIn('3 layers', out)
        self.assertRegex(out, r'outputs: *\n')

    def test_values_computed_as_written(self):
        # data 2 -> Power 3x + 1 = 7 -> Exp base 2, scale 0.1: 2^0.7 -> Eltwise PROD with
        # data: 2 * 2^0.7
        n = caffe.NetSpec()
        n.data = L.DummyData(shape=dict(dim=[1, 2]), data_filler=dict(type='constant', value=2))
        n.p = L.Power(n.data, scale=3, shift=1)
        n.e = L.Exp(n.p, base=2, scale=0.1)
        n.out = L.Eltwise(n.e, n.data, operation=P.Eltwise.PROD)
        f = self.write('net.prototxt', str(n.to_proto()))
        st, out, err = pyc_util.run_netrun('test', '--verbose', '--model', f, '--iterations', '1')
        self.assertEqual(st, 0, err)
        values = [float(v) for v in re.findall(r'Batch 0, out = (\S+)', err + out)]
        self.assertEqual(len(values), 2, err)
        for v in values:
            self.assertAlmostEqual(v, 2 * 2 ** 0.7, places=4)

    def test_phases(self):
        n = caffe.NetSpec()
        n.data = L.Input(shape=dict(dim=[1, 3]))
        n.train_only = L.ReLU(n.data, include=dict(phase=caffe.TRAIN))
        n.always = L.Sigmoid(n.data)
        proto = n.to_proto()
        self.assertNotIn('train_only', self.check(proto, '--phase', 'TEST'))
        self.assertIn('train_only', self.check(proto, '--phase', 'TRAIN'))


if __name__ == '__main__':
    unittest.main()
