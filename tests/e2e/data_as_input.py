"""Writes a copy of a Caffe net whose data layers (Data, ImageData, HDF5Data, WindowData,
MemoryData) are Input layers of the shapes they would produce, so that `netrun check` can
build nets whose data files are not here. Usage: data_as_input.py IN.prototxt OUT.prototxt

Shapes: batch_size from the layer; C x H x W from transform_param.crop_size (3 channels), or
from what the source names (MNIST 1x28x28, the siamese pairs 2x28x28, CIFAR 3x32x32), or
from new_height/new_width; a second top (the label) is (batch,)."""
import sys

import caffe_pb2  # the staged caffe/proto folder alone: no C extension is loaded
from google.protobuf import text_format

DATA = {'Data': 'data_param', 'ImageData': 'image_data_param', 'HDF5Data': 'hdf5_data_param',
        'WindowData': 'window_data_param', 'MemoryData': 'memory_data_param'}


def image_shape(layer, param):
    crop = layer.transform_param.crop_size
    source = getattr(param, 'source', '')
    if 'siamese' in source:
        return [2, 28, 28]
    if 'mnist' in source:
        return [1, 28, 28]
    if 'cifar' in source:
        return [3, 32, 32]
    if crop:
        return [3, crop, crop]
    if layer.type == 'MemoryData':
        return [param.channels, param.height, param.width]
    if getattr(param, 'new_height', 0):
        return [1 if not getattr(param, 'is_color', True) else 3, param.new_height,
                param.new_width]
    raise SystemExit('%s: cannot tell the shape of data layer %r' % (sys.argv[1], layer.name))


def main():
    net = caffe_pb2.NetParameter()
    with open(sys.argv[1]) as f:
        text_format.Merge(f.read(), net)
    for layer in net.layer:
        if layer.type not in DATA:
            continue
        param = getattr(layer, DATA[layer.type])
        batch = param.batch_size
        shapes = [[batch] + image_shape(layer, param), [batch]][:len(layer.top)]
        for name in (DATA[layer.type], 'transform_param'):
            layer.ClearField(name)
        layer.type = 'Input'
        for s in shapes:
            layer.input_param.shape.add(dim=s)
    with open(sys.argv[2], 'w') as f:
        f.write(text_format.MessageToString(net))


main()
