"""The data layer of Caffe's Python-layer tutorial: images listed in a text file.

param_str is a Python dict:
  source      the list file: one "path label" per line (paths relative to the list's folder)
  batch_size  images per batch
  im_shape    (height, width) every image is resized to
  crop_size   (optional) side of the square crop: random in TRAIN, central in TEST
  mean        (optional) subtracted from every pixel (default 128); pixels are then / 128
  shuffle     (optional) shuffle the list every epoch (default True in TRAIN)
  seed        (optional) the shuffling and cropping seed (default 1)
Tops: data (batch_size x 3 x crop x crop, or x im_shape) and label (batch_size).

Written as the tutorial writes it (PIL to read images); only Python syntax errors of the
original are fixed.
"""
import os
import random

import caffe
import numpy as np
from PIL import Image


class ImageDataLayer(caffe.Layer):

    def setup(self, bottom, top):
        # Two tops: data and label
        if len(top) != 2:
            raise Exception("Need to define two tops: data and label.")
        # Data layers have no bottoms
        if len(bottom) != 0:
            raise Exception("Do not define a bottom.")

        # Read the parameters
        params = eval(self.param_str)
        self.source = params['source']
        self.batch_size = params['batch_size']
        self.im_shape = tuple(params['im_shape'])
        self.crop_size = params.get('crop_size', None)
        self.mean = params.get('mean', 128.0)
        self.shuffle = params.get('shuffle', self.phase == caffe.TRAIN)
        self.random = random.Random(params.get('seed', 1))

        # Read the list of images
        root = os.path.dirname(self.source)
        self.images = []
        with open(self.source) as f:
            for line in f:
                if line.strip():
                    path, label = line.split()
                    self.images.append((os.path.join(root, path), int(label)))
        if not self.images:
            raise Exception("No images listed in %s" % self.source)
        self.idx = 0
        if self.shuffle:
            self.random.shuffle(self.images)

        # The shape of the tops does not change
        side = self.crop_size or None
        h, w = (side, side) if side else self.im_shape
        top[0].reshape(self.batch_size, 3, h, w)
        top[1].reshape(self.batch_size)

    def reshape(self, bottom, top):
        # Shapes were set in setup
        pass

    def forward(self, bottom, top):
        # Fill the batch, image by image
        for itt in range(self.batch_size):
            im, label = self.load_next_image()
            top[0].data[itt, ...] = im
            top[1].data[itt] = label

    def backward(self, top, propagate_down, bottom):
        # A data layer has no gradient
        pass

    def load_next_image(self):
        # Start a new epoch at the end of the list
        if self.idx == len(self.images):
            self.idx = 0
            if self.shuffle:
                self.random.shuffle(self.images)
        path, label = self.images[self.idx]
        self.idx += 1

        im = Image.open(path).convert('RGB')
        im = im.resize((self.im_shape[1], self.im_shape[0]), Image.BILINEAR)
        im = np.asarray(im, dtype=np.float32)  # H x W x 3

        if self.crop_size:
            c = self.crop_size
            if self.phase == caffe.TRAIN:
                y = self.random.randint(0, self.im_shape[0] - c)
                x = self.random.randint(0, self.im_shape[1] - c)
            else:
                y = (self.im_shape[0] - c) // 2
                x = (self.im_shape[1] - c) // 2
            im = im[y:y + c, x:x + c, :]

        im = (im - self.mean) / 128.0
        return im.transpose((2, 0, 1)), label  # 3 x H x W, as Caffe
