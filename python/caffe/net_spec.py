"""caffe.net_spec: nets written as Python calls, turned into caffe_pb2.NetParameter messages.

    from caffe import layers as L, params as P
    n = caffe.NetSpec()
    n.data, n.label = L.DummyData(shape=[dict(dim=[64, 1, 28, 28]), dict(dim=[64])], ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20,
                            weight_filler=dict(type='xavier'))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.relu1 = L.ReLU(n.pool1, in_place=True)
    n.loss = L.SoftmaxWithLoss(n.relu1, n.label)
    print(n.to_proto())          # the prototxt text

`L.<Type>(*bottoms, **kwargs)` makes a layer of that type: it returns its Top (ntop=1, the
default), a tuple of Tops (ntop > 1) or the layer itself (a Function, ntop=0).
in_place=True writes the top over the first bottom. Each other keyword is a field: one
ending in `param` (transform_param, loss_param, param, ...) goes on the LayerParameter; any
other goes into the type's own message (kernel_size -> convolution_param) when that message
has it, else on the LayerParameter (loss_weight, include, propagate_down, name, ...). Values:
a dict fills a message, a list (or tuple) fills a repeated field (a single value is a list of
one), a string names an enum value ('MAX'), anything else is assigned as is.

Names: NetSpec attributes name the tops they are assigned to, and a layer is named after its
first top; the rest are named <Type><n> in order (Convolution1, ...).

Beyond pycaffe: Deconvolution/Im2col take convolution_param's fields, RNN/LSTM
recurrent_param's and SoftmaxWithLoss softmax_param's; a keyword no message has raises
AttributeError naming the layer, and a value of the wrong type TypeError naming the field.
"""

from collections import Counter, OrderedDict

import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from .proto import caffe_pb2

# Layer types whose own message is not named after the type.
_PARAM_ALIASES = {
    'Deconvolution': 'convolution',
    'Im2col': 'convolution',
    'RNN': 'recurrent',
    'LSTM': 'recurrent',
    'SoftmaxWithLoss': 'softmax',
}


def param_name_dict():
    """{layer type: prefix of its *_param field} for every *_param field of
    LayerParameter whose message is <Type>Parameter, e.g. 'Convolution' ->
    'convolution', 'InnerProduct' -> 'inner_product' (as pycaffe's)."""
    names = {}
    for field in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        msg = field.message_type
        if (field.name.endswith('_param') and msg is not None
                and msg.name.endswith('Parameter')):
            names[msg.name[:-len('Parameter')]] = field.name[:-len('_param')]
    return names


def to_proto(*tops):
    """A NetParameter with every layer needed to compute tops (Tops, or Functions of
    layers without tops), inputs first; tops are named automatically (use NetSpec to
    name them)."""
    layers = OrderedDict()
    autonames = Counter()
    names = {}
    for top in tops:
        top._to_proto(layers, names, autonames)
    net = caffe_pb2.NetParameter()
    net.layer.extend(layers.values())
    return net


def _scalar(field, value):
    """value converted for a scalar field: NumPy scalars become Python ones, an enum
    field takes the value's name as well as its number."""
    if isinstance(value, np.generic):
        value = value.item()
    if field.enum_type is not None and isinstance(value, str):
        enum = field.enum_type.values_by_name.get(value)
        if enum is None:
            raise ValueError('%r is not a value of %s (%s)' % (
                value, field.enum_type.name, ', '.join(field.enum_type.values_by_name)))
        value = enum.number
    return value


def _fill_message(msg, value, path):
    if isinstance(value, Message):
        msg.CopyFrom(value)
    elif isinstance(value, dict):
        msg.SetInParent()  # an empty dict still makes the message present
        for k, v in value.items():
            assign_proto(msg, k, v, path)
    else:
        raise TypeError('%s: a %s message takes a dict, got %s' % (
            path, msg.DESCRIPTOR.name, type(value).__name__))


def _set_leaf(proto, field, value, path, container=None):
    try:
        value = _scalar(field, value)
        if container is not None:
            container.append(value)
        else:
            setattr(proto, field.name, value)
    except (TypeError, ValueError) as e:
        raise type(e)('%s: %s' % (path, e)) from None


def assign_proto(proto, name, val, parent=''):
    """Sets field `name` of message `proto` from a Python value: dicts fill messages,
    lists/tuples fill repeated fields (a single value becomes a list of one), strings
    name enum values, anything else is assigned. Raises AttributeError for a field the
    message does not have, TypeError/ValueError for a value it cannot hold; messages
    start with the field's dotted path below `parent`."""
    field = proto.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        raise AttributeError('%s%s has no field %r' % (
            parent + ': ' if parent else '', proto.DESCRIPTOR.name, name))
    path = parent + '.' + name if parent else name
    is_message = field.type == FieldDescriptor.TYPE_MESSAGE
    if field.label == FieldDescriptor.LABEL_REPEATED:
        items = val if isinstance(val, (list, tuple)) else [val]
        container = getattr(proto, name)
        for item in items:
            if is_message:
                _fill_message(container.add(), item, path)
            else:
                _set_leaf(proto, field, item, path, container)
    elif is_message:
        _fill_message(getattr(proto, name), val, path)
    else:
        _set_leaf(proto, field, val, path)


class Top(object):
    """One output blob of a layer: the n-th top of Function fn."""

    def __init__(self, fn, n):
        self.fn = fn
        self.n = n

    def to_proto(self):
        """A NetParameter with every layer needed to compute this top."""
        return to_proto(self)

    def _update(self, params):
        self.fn._update(params)

    def _to_proto(self, layers, names, autonames):
        return self.fn._to_proto(layers, names, autonames)


class Function(object):
    """A layer: its type, its bottoms (Tops of other layers) and its parameters."""

    def __init__(self, type_name, inputs, params):
        for i, inp in enumerate(inputs):
            if not isinstance(inp, Top):
                raise TypeError('%s input %d is not a Top (type is %s)' % (
                    type_name, i, type(inp)))
        self.type_name = type_name
        self.inputs = tuple(inputs)
        self.params = dict(params)
        self.ntop = self.params.pop('ntop', 1)
        self.in_place = self.params.pop('in_place', False)
        self.tops = tuple(Top(self, n) for n in range(self.ntop))

    def _get_name(self, names, autonames):
        if self not in names:
            if self.ntop > 0:
                names[self] = self._get_top_name(self.tops[0], names, autonames)
            else:
                autonames[self.type_name] += 1
                names[self] = self.type_name + str(autonames[self.type_name])
        return names[self]

    def _get_top_name(self, top, names, autonames):
        if top not in names:
            autonames[top.fn.type_name] += 1
            names[top] = top.fn.type_name + str(autonames[top.fn.type_name])
        return names[top]

    def _update(self, params):
        self.params.update(params)

    def _to_proto(self, layers, names, autonames):
        if self in layers:
            return
        bottom_names = []
        for inp in self.inputs:
            inp._to_proto(layers, names, autonames)
            bottom_names.append(layers[inp.fn].top[inp.n])
        layer = caffe_pb2.LayerParameter()
        layer.type = self.type_name
        layer.bottom.extend(bottom_names)
        if self.in_place:
            layer.top.extend(layer.bottom)
        else:
            for top in self.tops:
                layer.top.append(self._get_top_name(top, names, autonames))
        layer.name = self._get_name(names, autonames)
        where = 'layer %r (%s)' % (layer.name, self.type_name)
        prefix = _PARAM_ALIASES.get(self.type_name) or _param_names.get(self.type_name)
        own = getattr(layer, prefix + '_param') if prefix else None
        for k, v in self.params.items():
            if not k.endswith('param') and own is not None and k in own.DESCRIPTOR.fields_by_name:
                target, parent = own, prefix + '_param'
            elif k in layer.DESCRIPTOR.fields_by_name:
                target, parent = layer, ''
            else:
                raise AttributeError('%s: no field %r in %s' % (
                    where, k, 'LayerParameter' if own is None else
                    own.DESCRIPTOR.name + ' or LayerParameter'))
            try:
                assign_proto(target, k, v, parent)
            except (AttributeError, TypeError, ValueError) as e:
                raise type(e)('%s: %s' % (where, e)) from None
        layers[self] = layer


class NetSpec(object):
    """Tops assigned as attributes (or items) by name; to_proto() makes the
    NetParameter of every layer needed for them, naming tops and layers after the
    attributes."""

    def __init__(self):
        super(NetSpec, self).__setattr__('tops', OrderedDict())

    def __setattr__(self, name, value):
        self.tops[name] = value

    def __getattr__(self, name):
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError('NetSpec has no top %r' % name) from None

    def __setitem__(self, name, value):
        self.tops[name] = value

    def __getitem__(self, name):
        return self.tops[name]

    def __delitem__(self, name):
        del self.tops[name]

    def __contains__(self, name):
        return name in self.tops

    def keys(self):
        return list(self.tops.keys())

    def vals(self):
        return list(self.tops.values())

    def update(self, name, params):
        """Adds or replaces parameters of the layer of top `name`."""
        self.tops[name]._update(params)

    def to_proto(self):
        names = {v: k for k, v in self.tops.items()}
        autonames = Counter()
        layers = OrderedDict()
        for top in self.tops.values():
            top._to_proto(layers, names, autonames)
        net = caffe_pb2.NetParameter()
        net.layer.extend(layers.values())
        return net


class Layers(object):
    """caffe.layers (L): L.<Type>(*bottoms, **params) specifies a layer of that type."""

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)

        def layer_fn(*args, **kwargs):
            fn = Function(name, args, kwargs)
            if fn.ntop == 0:
                return fn
            if fn.ntop == 1:
                return fn.tops[0]
            return fn.tops
        layer_fn.__name__ = name
        return layer_fn


class _EnumValues(object):
    def __init__(self, message):
        self._message = message

    def __getattr__(self, name):
        try:
            return getattr(self._message, name)
        except AttributeError:
            raise AttributeError('%s has no value %r' % (self._message.DESCRIPTOR.name, name)) \
                from None


class Parameters(object):
    """caffe.params (P): P.<Type>.<VALUE> is the value of an enum of <Type>Parameter,
    e.g. P.Pooling.MAX, P.Eltwise.SUM."""

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)
        message = getattr(caffe_pb2, name + 'Parameter', None)
        if message is None:
            raise AttributeError('caffe_pb2 has no message %sParameter' % name)
        return _EnumValues(message)


_param_names = param_name_dict()
layers = Layers()
params = Parameters()
