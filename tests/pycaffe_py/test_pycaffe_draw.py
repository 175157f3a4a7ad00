"""caffe.draw: every project net drawn through pydot and graphviz; what the picture holds
(layers, blobs, labels, phases, in-place layers) read back from the graph and an SVG."""

import os
import sys
import unittest
import xml.etree.ElementTree as ET

from google.protobuf import text_format

import caffe
import caffe.draw
from caffe import layers as L
from caffe.proto import caffe_pb2

import pyc_util

LENET_TRAIN_TEST = os.path.join(pyc_util.CAFFE_DATA, 'mnist-lenet_train_test.prototxt')


def load(path):
    with open(path) as f:
        return text_format.Parse(f.read(), caffe_pb2.NetParameter())


def label(node):
    return (node.get('label') or '').strip('"').replace('\\n', '\n')


def layer_labels(graph):
    return [label(n) for n in graph.get_nodes() if n.get_name().startswith('layer')]


def blob_labels(graph):
    return [label(n) for n in graph.get_nodes() if n.get_name().startswith('blob')]


class Pictures(pyc_util.TempDirTest):
    def test_every_project_net(self):
        nets = pyc_util.net_prototxts()
        self.assertGreaterEqual(len(nets), 12)
        for path in nets:
            with self.subTest(net=os.path.relpath(path, pyc_util.SOURCE_DIR)):
                png = caffe.draw.draw_net(load(path), 'LR')
                self.assertEqual(png[:8], b'\x89PNG\r\n\x1a\n')

    def test_svg_file(self):
        f = self.path('lenet.svg')
        caffe.draw.draw_net_to_file(load(LENET_TRAIN_TEST), f, 'TB', phase=caffe.TEST)
        texts = [t.text for t in ET.parse(f).iter('{http://www.w3.org/2000/svg}text')]
        self.assertIn('conv1 (Convolution) kernel size: 5 stride: 1 pad: 0', texts)
        self.assertIn('pool1 (Pooling) pool: MAX kernel size: 2 stride: 2 pad: 0', texts)
        self.assertIn('accuracy (Accuracy)', texts)
        self.assertIn('Batch 100', texts)   # the TEST data layer only
        self.assertNotIn('Batch 64', texts)
        self.assertIn('500', texts)         # ip1's num_output on its edge

    def test_png_and_source_files(self):
        net = load(LENET_TRAIN_TEST)
        caffe.draw.draw_net_to_file(net, self.path('n.png'))
        with open(self.path('n.png'), 'rb') as f:
            self.assertEqual(f.read(8), b'\x89PNG\r\n\x1a\n')
        for ext in ('dot', 'raw'):
            caffe.draw.draw_net_to_file(net, self.path('n.' + ext), 'BT')
            with open(self.path('n.' + ext)) as f:
                src = f.read()
            self.assertTrue(src.startswith('digraph'), src[:40])
            self.assertIn('rankdir=BT', src)


class Graph(unittest.TestCase):
    def test_phases(self):
        net = load(LENET_TRAIN_TEST)
        train = layer_labels(caffe.draw.get_pydot_graph(net, 'LR', phase=caffe.TRAIN))
        test = layer_labels(caffe.draw.get_pydot_graph(net, 'LR', phase=caffe.TEST))
        both = layer_labels(caffe.draw.get_pydot_graph(net, 'LR'))
        names = lambda labels: [l.split('\n')[0] for l in labels]  # noqa: E731
        self.assertEqual(names(train), ['mnist', 'conv1', 'pool1', 'conv2', 'pool2', 'ip1',
                                        'relu1', 'ip2', 'loss'])
        self.assertEqual(names(test), ['mnist', 'conv1', 'pool1', 'conv2', 'pool2', 'ip1',
                                       'relu1', 'ip2', 'accuracy', 'loss'])
        self.assertEqual(len(both), 11)  # both data layers
        # the two data layers write the same data/label blobs
        self.assertEqual(sorted(blob_labels(caffe.draw.get_pydot_graph(net, 'LR')))[:3],
                         ['accuracy', 'conv1', 'conv2'])

    def test_in_place_layers_keep_the_graph_acyclic(self):
        g = caffe.draw.get_pydot_graph(load(LENET_TRAIN_TEST), 'LR', phase=caffe.TRAIN)
        self.assertEqual(blob_labels(g).count('ip1'), 2)  # before and after relu1
        edges = {}
        for e in g.get_edges():
            edges.setdefault(e.get_source(), []).append(e.get_destination())
        state = {}

        def visit(node):  # depth-first search for a back edge
            state[node] = 'open'
            for nxt in edges.get(node, []):
                self.assertNotEqual(state.get(nxt), 'open', 'cycle through ' + nxt)
                if nxt not in state:
                    visit(nxt)
            state[node] = 'done'
        for node in list(edges):
            if node not in state:
                visit(node)

    def test_edge_labels(self):
        net = load(LENET_TRAIN_TEST)
        labelled = [e.get('label') for e in
                    caffe.draw.get_pydot_graph(net, 'LR', phase=caffe.TRAIN).get_edges()]
        self.assertEqual([l for l in labelled if l], ['Batch 64', 'Batch 64', '20', '50',
                                                    '500', '10'])
        plain = caffe.draw.get_pydot_graph(net, 'LR', label_edges=False, phase=caffe.TRAIN)
        self.assertEqual([e.get('label') for e in plain.get_edges() if e.get('label')], [])

    def test_learning_rate_multipliers(self):
        n = caffe.NetSpec()
        n.data = L.Input(shape=dict(dim=[1, 1, 4, 4]))
        n.conv = L.Convolution(n.data, num_output=1, kernel_h=3, kernel_w=1, stride=[1, 2],
                               param=[dict(lr_mult=1), dict(lr_mult=2)])
        conv = layer_labels(caffe.draw.get_pydot_graph(n.to_proto(), 'LR', display_lrm=True))[1]
        self.assertEqual(conv.split('\n'), ['conv', '(Convolution)', 'kernel size: 3x1',
                                            'stride: 1x2', 'pad: 0', 'lr mult: 1, 2'])
        plain = layer_labels(caffe.draw.get_pydot_graph(n.to_proto(), 'TB'))[1]
        self.assertEqual(plain, 'conv (Convolution) kernel size: 3x1 stride: 1x2 pad: 0')

    def test_legacy_v1_net_and_odd_names(self):
        net = text_format.Parse('''name: "my \\"odd\\" net: v1"
            input: "data" input_dim: 1 input_dim: 1 input_dim: 4 input_dim: 4
            layers { name: "conv/1:a" type: CONVOLUTION bottom: "data" top: "c{1}"
                     convolution_param { num_output: 1 kernel_size: 3 } }
            layers { name: "relu <1>" type: RELU bottom: "c{1}" top: "c{1}" }''',
                                caffe_pb2.NetParameter())
        g = caffe.draw.get_pydot_graph(net, 'LR')
        self.assertEqual(layer_labels(g), ['conv/1:a\n(CONVOLUTION)', 'relu <1>\n(RELU)'])
        self.assertEqual(blob_labels(g), ['data', 'c{1}', 'c{1}'])
        self.assertEqual(caffe.draw.draw_net(net, 'LR', 'png')[:4], b'\x89PNG')


class WithoutPydot(unittest.TestCase):
    def test_message(self):
        saved = sys.modules.get('pydot')
        sys.modules['pydot'] = None  # makes `import pydot` fail
        try:
            with self.assertRaisesRegex(ImportError, 'apt-get install python3-pydot graphviz'):
                caffe.draw.get_pydot_graph(caffe_pb2.NetParameter(), 'LR')
        finally:
            if saved is None:
                del sys.modules['pydot']
            else:
                sys.modules['pydot'] = saved


if __name__ == '__main__':
    unittest.main()
