"""caffe.draw: a picture of a NetParameter (pycaffe's draw), through pydot and graphviz.

    net = caffe_pb2.NetParameter(); text_format.Merge(open(path).read(), net)
    caffe.draw.draw_net_to_file(net, 'net.png', 'LR', phase=caffe.TRAIN)

Layers are boxes (blue; pointwise layers drawn in place green; data layers and losses in
their own colours) labelled with name, type and the main geometry; blobs are octagons.
Edges out of a layer carry its output size (batch size, num_output) when label_edges.
A layer that computes in place (top == bottom) gets a fresh node for the blob it writes,
so the graph stays acyclic. phase (caffe.TRAIN / caffe.TEST) keeps only the layers that
net would have (include/exclude rules on phase); None draws all. Nets in the legacy V1
format (`layers { type: CONVOLUTION }`) are drawn as well.

Needs python3-pydot (imported on first use) and graphviz's `dot` for images; a file name
ending in .dot or .raw gets the graph source without graphviz.
"""

LAYER_STYLE_DEFAULT = {'shape': 'box', 'fillcolor': '#6495ED', 'style': 'filled'}
NEURON_LAYER_STYLE = {'shape': 'box', 'fillcolor': '#90EE90', 'style': 'filled'}
BLOB_STYLE = {'shape': 'octagon', 'fillcolor': '#E0E0E0', 'style': 'filled'}

_TYPE_COLORS = {
    'Convolution': '#FF5050', 'Deconvolution': '#FF5050',
    'Pooling': '#FF9900',
    'InnerProduct': '#CC33FF',
    'Data': '#40B0B0', 'Input': '#40B0B0', 'DummyData': '#40B0B0', 'HDF5Data': '#40B0B0',
    'ImageData': '#40B0B0', 'MemoryData': '#40B0B0', 'WindowData': '#40B0B0',
    'Python': '#F0E68C',
}


def _pydot():
    try:
        import pydot
    except ImportError:
        raise ImportError('caffe.draw needs pydot (Debian: apt-get install python3-pydot '
                          'graphviz)') from None
    return pydot


def _pb2():
    from .proto import caffe_pb2
    return caffe_pb2


def get_pooling_types_dict():
    """{PoolingParameter.PoolMethod number: name}."""
    enum = _pb2().PoolingParameter.PoolMethod
    return {number: name for name, number in enum.items()}


def choose_color_by_layertype(layertype):
    """The fill colour of a layer box."""
    if layertype.endswith('Loss'):
        return '#B0B0B0'
    return _TYPE_COLORS.get(layertype, LAYER_STYLE_DEFAULT['fillcolor'])


def _geometry(p, name, default):
    """'3' or '3x5': a repeated <name>_size / <name> field, or the <name>_h/<name>_w pair."""
    values = getattr(p, name + '_size' if name == 'kernel' else name)
    if not hasattr(values, 'extend'):  # PoolingParameter: single values
        values = [values] if p.HasField(name + '_size' if name == 'kernel' else name) else []
    if len(values):
        return 'x'.join(str(v) for v in values)
    if p.HasField(name + '_h') or p.HasField(name + '_w'):
        return '%dx%d' % (getattr(p, name + '_h'), getattr(p, name + '_w'))
    return str(default)


def get_layer_lr_mult(layer):
    """The learning-rate multipliers of a layer's parameters, as a list (1 per
    parameter with no ParamSpec)."""
    return [p.lr_mult if p.HasField('lr_mult') else 1.0 for p in layer.param]


def get_layer_label(layer, rankdir, display_lrm=False):
    """The text of a layer's box: name, (type) and, for convolution and pooling layers,
    kernel size, stride and pad; display_lrm adds the learning-rate multipliers. Lines
    break for LR/RL graphs, spaces separate them for TB/BT ones."""
    sep = '\n' if rankdir in ('LR', 'RL') else ' '
    lines = [layer.name, '(%s)' % _type_name(layer)]
    t = _type_name(layer)
    if t in ('Convolution', 'Deconvolution'):
        p = layer.convolution_param
        lines += ['kernel size: ' + _geometry(p, 'kernel', '?'),
                  'stride: ' + _geometry(p, 'stride', 1), 'pad: ' + _geometry(p, 'pad', 0)]
    elif t == 'Pooling':
        p = layer.pooling_param
        lines.append('pool: ' + get_pooling_types_dict()[p.pool])
        if p.global_pooling:
            lines.append('global')
        else:
            lines += ['kernel size: ' + _geometry(p, 'kernel', '?'),
                      'stride: ' + _geometry(p, 'stride', 1), 'pad: ' + _geometry(p, 'pad', 0)]
    if display_lrm and _is_new(layer):
        lrm = get_layer_lr_mult(layer)
        if lrm:
            lines.append('lr mult: ' + ', '.join('%g' % m for m in lrm))
    return sep.join(lines)


def get_edge_label(layer):
    """The label of the edges out of a layer: the batch size of a data layer, the
    num_output of a convolution or inner product, else empty."""
    t = _type_name(layer)
    if not _is_new(layer):
        return ''
    if t == 'Data':
        return 'Batch %d' % layer.data_param.batch_size
    if t in ('Convolution', 'Deconvolution'):
        return str(layer.convolution_param.num_output)
    if t == 'InnerProduct':
        return str(layer.inner_product_param.num_output)
    return ''


def _is_new(layer):
    return layer.DESCRIPTOR.name == 'LayerParameter'


def _type_name(layer):
    if _is_new(layer):
        return layer.type
    # V1LayerParameter: an enum (CONVOLUTION, INNER_PRODUCT, ...)
    return layer.DESCRIPTOR.fields_by_name['type'].enum_type.values_by_number[layer.type].name


def _in_phase(layer, phase):
    """Whether a net of this phase has the layer (Caffe's include/exclude rules, by phase
    only: a rule naming stages or levels counts as matching)."""
    if phase is None:
        return True
    if len(layer.include):
        return any(not r.HasField('phase') or r.phase == phase for r in layer.include)
    return not any(not r.HasField('phase') or r.phase == phase for r in layer.exclude)


def get_pydot_graph(caffe_net, rankdir, label_edges=True, phase=None, display_lrm=False):
    """A pydot.Dot of the net (a caffe_pb2.NetParameter), laid out towards rankdir
    ('LR', 'TB', 'BT' or 'RL')."""
    pydot = _pydot()
    graph = pydot.Dot('net', graph_type='digraph', rankdir=rankdir)
    if caffe_net.name:
        graph.set_label(caffe_net.name)
    blob_node = {}  # blob name -> id of the node holding its current value
    count = [0]

    def new_blob(name):
        node_id = 'blob%d' % count[0]
        count[0] += 1
        graph.add_node(pydot.Node(node_id, label=name, **BLOB_STYLE))
        blob_node[name] = node_id
        return node_id

    for name in caffe_net.input:  # legacy net inputs
        new_blob(name)
    layers = caffe_net.layer if len(caffe_net.layer) else caffe_net.layers
    for i, layer in enumerate(layers):
        if not _in_phase(layer, phase):
            continue
        layer_id = 'layer%d' % i
        in_place = set(layer.top) & set(layer.bottom)
        style = dict(NEURON_LAYER_STYLE if in_place else LAYER_STYLE_DEFAULT)
        if not in_place:
            style['fillcolor'] = choose_color_by_layertype(_type_name(layer))
        graph.add_node(pydot.Node(layer_id, label=get_layer_label(layer, rankdir, display_lrm),
                                  **style))
        for bottom in layer.bottom:
            src = blob_node.get(bottom) or new_blob(bottom)
            graph.add_edge(pydot.Edge(src, layer_id))
        edge_label = get_edge_label(layer) if label_edges else ''
        for top in layer.top:
            # A layer writing a blob it reads makes a new value: a new node. Tops of the
            # same name from layers of different phases share one node.
            dst = new_blob(top) if top in in_place or top not in blob_node else blob_node[top]
            edge = pydot.Edge(layer_id, dst)
            if edge_label:
                edge.set_label(edge_label)
            graph.add_edge(edge)
    return graph


def draw_net(caffe_net, rankdir, ext='png', phase=None, display_lrm=False):
    """The picture of the net as bytes in graphviz's format ext ('png', 'svg', 'pdf',
    ...; 'dot'/'raw': the graph source)."""
    graph = get_pydot_graph(caffe_net, rankdir, phase=phase, display_lrm=display_lrm)
    if ext in ('dot', 'raw'):
        return graph.to_string().encode('utf-8')
    return graph.create(format=ext)


def draw_net_to_file(caffe_net, filename, rankdir='LR', phase=None, display_lrm=False):
    """Writes the picture of the net to filename, in the format its extension names
    ('.png', '.svg', ...; '.dot' or '.raw' for the graph source)."""
    ext = filename.rsplit('.', 1)[-1] if '.' in filename else 'png'
    data = draw_net(caffe_net, rankdir, ext, phase, display_lrm)
    with open(filename, 'wb') as f:
        f.write(data)
