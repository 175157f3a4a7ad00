#!/usr/bin/python3
"""The classic pycaffe notebook tasks, on Fashion-MNIST, with netrun's `caffe` package.

1. NetSpec writes LeNet (train/test with the Python data layer of examples/fashion_mnist,
   and a deploy version with an Input layer) and the solver.
2. Training with solver.step() in a loop, recording the loss and the test accuracy, and a
   plot of both (curves.png, python3-matplotlib).
3. Net surgery: the trained weights copied by hand into the deploy net through
   net.params[...] views, checked by predicting the same classes as the trained net.
4. Feature extraction: ip1 features of test images from the deploy net, classified by the
   nearest class mean of training features.

Run from the repository root after the build:

    PYTHONPATH=build/python /usr/bin/python3 examples/pycaffe/fashion_mnist_notebook.py \\
        --iters 1000 --out build/pycaffe_example

The data layer runs in netrun-worker processes (py_workers): a crash there would raise
caffe.LayerError here and this script could carry on.
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'fashion_mnist'))  # fmnist_data, the data layer

import caffe  # noqa: E402
from caffe import layers as L, params as P  # noqa: E402


def lenet(source, batch_size, deploy=False):
    """LeNet as NetSpec writes it: the Python data layer (or an Input for deploy)."""
    n = caffe.NetSpec()
    if deploy:
        n.data = L.Input(shape=dict(dim=[batch_size, 1, 28, 28]))
    else:
        n.data, n.label = L.Python(
            module='fmnist_data', layer='FashionMNISTData', ntop=2,
            param_str=repr({'split': source, 'batch_size': batch_size,
                            'shuffle': source == 'train', 'seed': 1}))
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20,
                            weight_filler=dict(type='xavier'))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50,
                            weight_filler=dict(type='xavier'))
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.ip1 = L.InnerProduct(n.pool2, num_output=500, weight_filler=dict(type='xavier'))
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.ip2 = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type='xavier'))
    if deploy:
        n.prob = L.Softmax(n.ip2)
    else:
        n.loss = L.SoftmaxWithLoss(n.ip2, n.label)
        n.accuracy = L.Accuracy(n.ip2, n.label)
    return n.to_proto()


def write(path, text):
    with open(path, 'w') as f:
        f.write(str(text))
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--iters', type=int, default=1000, help='training iterations')
    ap.add_argument('--test-every', type=int, default=250)
    ap.add_argument('--test-batches', type=int, default=20, help='of 100 test images')
    ap.add_argument('--out', default='pycaffe_example', help='folder for nets and the plot')
    ap.add_argument('--py-workers', type=int, default=2)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    caffe.set_mode_cpu()
    caffe.set_random_seed(1)
    caffe.set_py_workers(args.py_workers)

    # 1. NetSpec: the nets and the solver
    train = write(os.path.join(args.out, 'train.prototxt'), lenet('train', 64))
    test = write(os.path.join(args.out, 'test.prototxt'), lenet('t10k', 100))
    deploy = write(os.path.join(args.out, 'deploy.prototxt'), lenet(None, 100, deploy=True))
    solver = write(os.path.join(args.out, 'solver.prototxt'), '\n'.join([
        'train_net: "%s"' % train, 'test_net: "%s"' % test,
        'test_iter: %d' % args.test_batches, 'test_interval: 1000000',
        'base_lr: 0.01', 'momentum: 0.9', 'weight_decay: 0.0005', 'lr_policy: "inv"',
        'gamma: 0.0001', 'power: 0.75', 'display: 0', 'max_iter: %d' % args.iters,
        'snapshot_after_train: false', 'random_seed: 1',
        'snapshot_prefix: "%s"' % os.path.join(args.out, 'lenet')]))
    print('NetSpec wrote', train, test, deploy)

    # 2. Training in a loop
    s = caffe.SGDSolver(solver)
    losses, tests = [], []
    t0 = time.time()
    for it in range(args.iters):
        s.step(1)
        losses.append(float(s.net.blobs['loss'].data))
        if (it + 1) % args.test_every == 0 or it + 1 == args.iters:
            correct = 0
            for _ in range(args.test_batches):
                s.test_nets[0].forward()
                correct += float(s.test_nets[0].blobs['accuracy'].data)
            tests.append((it + 1, correct / args.test_batches))
            print('iteration %d: loss %.4f, test accuracy %.4f (%.1f s)'
                  % (it + 1, losses[-1], tests[-1][1], time.time() - t0))
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        fig, ax1 = plt.subplots()
        ax1.plot(np.arange(1, len(losses) + 1), losses, lw=0.8)
        ax1.set_xlabel('iteration')
        ax1.set_ylabel('train loss')
        ax2 = ax1.twinx()
        ax2.plot([t[0] for t in tests], [t[1] for t in tests], 'r.-')
        ax2.set_ylabel('test accuracy')
        fig.savefig(os.path.join(args.out, 'curves.png'))
        print('plotted', os.path.join(args.out, 'curves.png'))
    except ImportError:
        print('python3-matplotlib is not installed: no plot')

    # 3. Net surgery: the trained weights into the deploy net, by hand
    net = caffe.Net(deploy, caffe.TEST)
    for name, blobs in net.params.items():
        for i, b in enumerate(blobs):
            b.data[...] = s.net.params[name][i].data
    tn = s.test_nets[0]
    tn.forward()
    images, labels = tn.blobs['data'].data.copy(), tn.blobs['label'].data.copy()
    probs = net.forward(data=images)['prob']
    same = float(np.mean(probs.argmax(1) == tn.blobs['ip2'].data.argmax(1)))
    print('surgery: the deploy net predicts the trained net\'s class for %.0f%% of a batch'
          % (100 * same))
    if same != 1.0:
        raise SystemExit('net surgery failed: the deploy net disagrees with the trained net')

    # 4. Feature extraction: ip1 features of five more test batches give each class's mean;
    # the first batch is classified by the nearest mean
    feats, labs = [], []
    for _ in range(5):
        tn.forward()
        net.forward(data=tn.blobs['data'].data)
        feats.append(net.blobs['ip1'].data.copy())
        labs.append(tn.blobs['label'].data.copy())
    feats, labs = np.concatenate(feats), np.concatenate(labs)
    means = np.stack([feats[labs == k].mean(0) if np.any(labs == k)
                      else np.full(feats.shape[1], np.inf) for k in range(10)])
    net.forward(data=images)
    d = ((net.blobs['ip1'].data[:, None, :] - means[None]) ** 2).sum(-1)
    acc = float(np.mean(d.argmin(1) == labels))
    print('features: nearest class mean on ip1 classifies %.2f of a test batch' % acc)
    print('final test accuracy %.4f' % tests[-1][1])


if __name__ == '__main__':
    main()
