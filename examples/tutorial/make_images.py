"""Writes a small binary image data set for the tutorial net: make_images.py DIR [N].

Class 1 images have a bright square somewhere near the middle, class 0 images are noise
only. N images of each set (train, test), half of each class, as PPM files written with
NumPy, and the lists DIR/train.txt and DIR/test.txt ("file label" per line).
"""
import os
import sys

import numpy as np


def write_ppm(path, im):
    h, w, _ = im.shape
    with open(path, 'wb') as f:
        f.write(b'P6\n%d %d\n255\n' % (w, h))
        f.write(im.astype(np.uint8).tobytes())


def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    rng = np.random.RandomState(0)
    os.makedirs(out, exist_ok=True)
    for split in ('train', 'test'):
        lines = []
        for i in range(n):
            label = i % 2
            im = rng.normal(90, 25, (32, 32, 3))
            if label:
                y, x = rng.randint(8, 14, 2)
                im[y:y + 10, x:x + 10, :] += 110
            name = '%s_%03d.ppm' % (split, i)
            write_ppm(os.path.join(out, name), np.clip(im, 0, 255))
            lines.append('%s %d\n' % (name, label))
        with open(os.path.join(out, split + '.txt'), 'w') as f:
            f.writelines(lines)
    print('wrote %d train and %d test images in %s' % (n, n, out))


if __name__ == '__main__':
    main()
