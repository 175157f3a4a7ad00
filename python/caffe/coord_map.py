"""caffe.coord_map: how spatial coordinates of one NetSpec top map onto another's.

A layer's map is (axis, a, b): along each spatial axis after `axis`, the input (bottom)
coordinate x lands on the output (top) coordinate y = a * x + b; a chain of layers composes
them. axis is the last non-spatial axis (1 for N x C x H x W); None means the layer works
on any axis (pointwise layers). a and b are NumPy arrays (one entry per spatial axis, or
one for all). coord_map_from_to(top_from, top_to) walks the NetSpec graph back from both
tops to a common ancestor; crop(top_from, top_to) makes the Crop layer that aligns
top_from to top_to (FCN-style skip connections).

Beyond pycaffe: Pooling parameters may sit in pooling_param, and kernel_h/kernel_w,
stride_h/stride_w and pad_h/pad_w are read (as a 2-D map) instead of refused; a global
pooling layer has no map (it is not spatially connected).
"""

import numpy as np

from . import net_spec

PASS_THROUGH_LAYERS = ['AbsVal', 'BatchNorm', 'Bias', 'BNLL', 'Clip', 'Dropout',
                       'Eltwise', 'ELU', 'Log', 'LRN', 'Exp', 'MVN', 'Power',
                       'ReLU', 'PReLU', 'Scale', 'Sigmoid', 'Split', 'Swish', 'TanH',
                       'Threshold']


class UndefinedMapException(Exception):
    """The layer has no coordinate map (it is not a spatial layer)."""


class AxisMismatchException(Exception):
    """Two maps work on different axes and cannot be composed."""


def _vec(value):
    return np.array(value, ndmin=1)


def _hw(params, name, default):
    """A per-axis parameter, from `name` or from its legacy `name_h`/`name_w` pair."""
    h, w = params.get(name + '_h'), params.get(name + '_w')
    if h is None and w is None:
        return _vec(params.get(name, default))
    if name in params:
        raise ValueError('both %s and %s_h/%s_w are given' % (name, name, name))
    return np.array([default if h is None else h, default if w is None else w])


def conv_params(fn):
    """(axis, stride, effective kernel extent, pad) of a Convolution, Deconvolution,
    Im2col or Pooling Function, each an array (effective extent = (kernel - 1) *
    dilation + 1)."""
    params = fn.params.get('convolution_param') or fn.params.get('pooling_param') or fn.params
    if params.get('global_pooling'):
        raise UndefinedMapException
    axis = params.get('axis', 1)
    ks = _hw(params, 'kernel', None) if 'kernel_size' not in params else _vec(params['kernel_size'])
    if ks.dtype == object:
        raise ValueError('%s layer has no kernel size' % fn.type_name)
    dilation = _vec(params.get('dilation', 1))
    return (axis, _hw(params, 'stride', 1), (ks - 1) * dilation + 1, _hw(params, 'pad', 0))


def crop_params(fn):
    """(axis, offset) of a Crop Function, with Caffe's defaults (axis 2, offset 0)."""
    params = fn.params.get('crop_param') or fn.params
    return params.get('axis', 2), _vec(params.get('offset', 0))


def coord_map(fn):
    """The (axis, a, b) map of one layer, from its input coordinates to its output's.
    Raises UndefinedMapException for a layer that has none."""
    if fn.type_name in ('Convolution', 'Pooling', 'Im2col'):
        axis, stride, ks, pad = conv_params(fn)
        return axis, 1 / stride, (pad - (ks - 1) / 2) / stride
    if fn.type_name == 'Deconvolution':
        axis, stride, ks, pad = conv_params(fn)
        return axis, stride, (ks - 1) / 2 - pad
    if fn.type_name in PASS_THROUGH_LAYERS:
        return None, 1, 0
    if fn.type_name == 'Crop':
        axis, offset = crop_params(fn)
        return axis - 1, 1, -offset  # crop's axis is the first cropped one
    raise UndefinedMapException


def compose(base_map, next_map):
    """base_map followed by next_map: scales multiply, next's shift is scaled by base's."""
    ax1, a1, b1 = base_map
    ax2, a2, b2 = next_map
    if ax1 is None:
        ax = ax2
    elif ax2 is None or ax1 == ax2:
        ax = ax1
    else:
        raise AxisMismatchException('axis %s then axis %s' % (ax1, ax2))
    return ax, a1 * a2, a1 * b2 + b1


def inverse(coord_map):
    """The map going the other way."""
    ax, a, b = coord_map
    return ax, 1 / a, -b / a


def _mapped_bottoms(top):
    # A Crop layer's second bottom only gives the output its size: not a mapped input.
    inputs = top.fn.inputs
    return inputs[:1] if top.fn.type_name == 'Crop' else inputs


def _ancestors(top):
    """(ancestor Top, map from that ancestor's coordinates to top's), breadth first from
    top itself (the identity), through every chain of mapped layers above top."""
    maps = {top: (None, 1, 0)}
    queue = [top]
    while queue:
        t = queue.pop(0)
        yield t, maps[t]
        try:
            m = compose(maps[t], coord_map(t.fn))
        except UndefinedMapException:
            continue
        for bottom in _mapped_bottoms(t):
            if bottom not in maps:
                maps[bottom] = m
                queue.append(bottom)


def coord_map_from_to(top_from, top_to):
    """The (axis, a, b) map taking coordinates of top_from to coordinates of top_to:
    x_to = a * x_from + b, through their nearest common ancestor. Raises RuntimeError
    when the two tops have none through spatial layers."""
    from_maps = dict(_ancestors(top_from))
    for t, to_map in _ancestors(top_to):
        if t in from_maps:
            return compose(to_map, inverse(from_maps[t]))
    raise RuntimeError('Could not compute map between tops; are they connected by '
                       'spatial layers?')


def crop(top_from, top_to):
    """A Crop layer (a Top) cutting top_from down to top_to's region: axis and offsets
    from the coordinate map. Asserts that the map is a pure shift (scale 1) by a whole,
    non-negative number of pixels."""
    ax, a, b = coord_map_from_to(top_from, top_to)
    a, b = _vec(a), _vec(b)
    assert (a == 1).all(), 'scale mismatch on crop (a = {})'.format(a)
    assert (b <= 0).all(), 'cannot crop negative offset (b = {})'.format(b)
    assert (np.round(b) == b).all(), 'cannot crop noninteger offset (b = {})'.format(b)
    return net_spec.layers.Crop(top_from, top_to, crop_param=dict(
        axis=ax + 1, offset=[int(o) for o in -np.round(b)]))
