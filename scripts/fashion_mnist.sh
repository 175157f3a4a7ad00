#!/usr/bin/env bash
# The main job: installs what is missing, builds netrun, trains Caffe's LeNet on
# Fashion-MNIST with a Python data layer replicated over two worker processes, then scores
# the trained model on the 10 000 test images and prints the final accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
mkdir -p build/logs
log=build/logs/fashion_mnist_train.log
build/netrun --py-workers 2 --py-replicas fmnist=2 train --solver examples/fashion_mnist/lenet_solver.prototxt 2>&1 | tee "$log"
model=$(ls -t examples/fashion_mnist/lenet_iter_*.caffemodel | head -n 1)
build/netrun --py-workers 2 test --model examples/fashion_mnist/lenet_train_test.prototxt \
  --weights "$model" --iterations 100 2>&1 | tee build/logs/fashion_mnist_test.log | grep -v "Batch "
acc=$(grep -E "\] accuracy = " build/logs/fashion_mnist_test.log | tail -n 1 | sed 's/.*accuracy = //')
echo "Fashion-MNIST test accuracy (10 000 images): ${acc}"
