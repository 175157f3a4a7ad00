"""bench/data: the PyTorch peer — the same augmentation (aug.py) in a Dataset, batched by
torch.utils.data.DataLoader (batch 64, default collate, num_workers N, no shuffle).

usage: data_torch.py VARIANT NUM_WORKERS WARMUP BATCHES  ->  prints "batches_per_s X"
"""
import os
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aug  # noqa: E402


class AugDataset(Dataset):
    def __init__(self, variant, n):
        self.rounds = aug.ROUNDS[variant]
        self.images = aug.make_images()
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, s):
        return aug.augment(self.images[s % aug.N_IMAGES], s, self.rounds), np.float32(s % 10)


def main():
    variant, workers, warmup, batches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(1)
    ds = AugDataset(variant, 64 * (warmup + batches))
    dl = DataLoader(ds, batch_size=64, num_workers=workers, shuffle=False)
    it = iter(dl)
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        x, y = next(it)
        assert x.shape == (64, 3, 32, 32)
    dt = time.perf_counter() - t0
    print("batches_per_s %.4f torch=%s" % (batches / dt, torch.__version__), flush=True)


if __name__ == '__main__':
    main()
