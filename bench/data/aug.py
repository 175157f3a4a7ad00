"""The per-sample augmentation of bench/data, shared word for word by the netrun data layer
(data_layer.py) and the PyTorch Dataset (data_torch.py).

Synthetic 3x32x32 uint8 images (a fixed seed: no data set needed). Per sample: pad 4 and
take a random 32x32 crop, a random horizontal flip, then `rounds` rounds of Gaussian
noise and a 3x3 box blur (shifted sums) — per-sample NumPy on small arrays, CPU-bound and
GIL-bound, like most hand-written augmentation. light = no round (pad, crop and flip
only: the per-batch cost of the pipeline around the user's code shows), medium = 1 round,
heavy = 8 rounds.
"""
import numpy as np

N_IMAGES = 2048
ROUNDS = {'light': 0, 'medium': 1, 'heavy': 8}


def make_images(seed=0):
    rng = np.random.RandomState(seed)
    return rng.randint(0, 256, size=(N_IMAGES, 3, 32, 32)).astype(np.uint8)


def augment(img, k, rounds):
    """Sample k (its index: the random draws depend on k only) of image img, float32."""
    rng = np.random.default_rng(k)
    x = np.pad(img.astype(np.float32) * (1.0 / 255), ((0, 0), (4, 4), (4, 4)), mode='reflect')
    dy, dx = rng.integers(0, 9, size=2)
    x = x[:, dy:dy + 32, dx:dx + 32]
    if rng.random() < 0.5:
        x = x[:, :, ::-1]
    for _ in range(rounds):
        x = x + rng.normal(0, 0.02, size=x.shape).astype(np.float32)
        p = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode='edge')
        x = (p[:, :-2, :-2] + p[:, :-2, 1:-1] + p[:, :-2, 2:] + p[:, 1:-1, :-2] +
             p[:, 1:-1, 1:-1] + p[:, 1:-1, 2:] + p[:, 2:, :-2] + p[:, 2:, 1:-1] +
             p[:, 2:, 2:]) * (1.0 / 9)
    return np.ascontiguousarray(x, dtype=np.float32)
