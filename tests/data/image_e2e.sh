#!/usr/bin/env bash
# End-to-end tests of the ImageData layer through `netrun test` / `netrun train`, on images
# generated here with PIL (Debian's /usr/bin/python3 and python3-pil), read back through an
# HDF5Output layer (python3-h5py). Usage: image_e2e.sh CASE
#   pixels   PNG (color and gray) and JPEG batches equal PIL's decode (B, G, R planes),
#            labels in list order, wrap-around at the list's end
#   shuffle  shuffle: each pass a permutation of the list, the same order in two runs
#   errors   a missing list, an empty list, a line without a label, a missing image, a
#            corrupt image, images of two sizes: one clear message each, exit 1
#   flickr   Caffe's finetune_flickr_style train_val (unchanged) trains 2 iterations and
#            tests on 100 generated JPEGs, with a generated mean file
#   check    netrun check on that net and on Caffe's pascal_finetune (WindowData) in both
#            phases; without a list, an image, a window file or the mean: exit 1 naming it
#   window_pixels   WindowData: background windows first, then foreground ones (by
#            fg_fraction), labels, and windows of the crop's size cut out exactly
#   window_context  context_pad at the image's corner: the part outside the image stays 0
#            (mean_value applied inside only); with mirror the padding moves to the right
#   window_errors   a missing or malformed window file, a window outside its image, a
#            foreground window of class 0, an image whose size differs from its header, no
#            crop_size: one clear message each
set -u
: "${NETRUN:?}" "${NR_SOURCE_DIR:?}"
PY=/usr/bin/python3
# shellcheck source=../lib/cli_test.sh
. "$NR_SOURCE_DIR/tests/lib/cli_test.sh"

# images DIR N H W MODE EXT [SEED]: N random images imgI.EXT (MODE RGB or L) and list.txt
images() {
  "$PY" - "$@" <<'PYEOF'
import sys
import numpy as np
from PIL import Image
d, n, h, w, mode, ext = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
rng = np.random.RandomState(int(sys.argv[7]) if len(sys.argv) > 7 else 0)
lines = []
for i in range(n):
    shape = (h, w, 3) if mode == 'RGB' else (h, w)
    Image.fromarray(rng.randint(0, 256, shape).astype(np.uint8), mode).save('%s/img%d.%s' % (d, i, ext), quality=90)
    lines.append('img%d.%s %d' % (i, ext, 3 * i + 1))
open('%s/list.txt' % d, 'w').write('\n'.join(lines) + '\n')
PYEOF
}

# net LIST BATCH [EXTRA image_data_param fields] > prototxt: ImageData -> HDF5Output out.h5
net() {
  cat <<N
name: "images"
layer { name: "data" type: "ImageData" top: "data" top: "label"
  image_data_param { source: "$1" batch_size: $2 ${3:-} } }
layer { name: "out" type: "HDF5Output" bottom: "data" bottom: "label"
  hdf5_output_param { file_name: "$WORK/out.h5" } }
N
}

# check_pixels DIR N ITEMS COLOR: $WORK/out.h5 holds ITEMS items, item k = image k % N of
# DIR/list.txt as PIL reads it
check_pixels() {
  "$PY" - "$@" <<'PYEOF' || fail "pixels differ from PIL's decode ($*)"
import sys
import h5py
import numpy as np
from PIL import Image
d, n, items, color = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == '1'
f = h5py.File(sys.argv[5], 'r')
data, label = f['data'][:], f['label'][:].ravel()
assert data.shape[0] == items, data.shape
names = [l.split()[0] for l in open(d + '/list.txt')]
for k in range(items):
    im = Image.open('%s/%s' % (d, names[k % n]))
    if color:
        want = np.asarray(im.convert('RGB'))[:, :, ::-1].transpose(2, 0, 1)
    else:
        want = np.asarray(im)[None]
    got = data[k]
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.array_equal(got, want.astype(np.float32)), (k, np.abs(got - want).max())
    assert label[k] == 3 * (k % n) + 1, (k, label[k])
PYEOF
}

case_pixels() {
  for kind in "RGB png 1" "L png 0" "RGB jpg 1"; do
    set -- $kind
    rm -rf imgs && mkdir imgs && images "$WORK/imgs" 5 6 8 "$1" "$2"
    local extra=""
    [ "$3" = 0 ] && extra="is_color: false"
    net "$WORK/imgs/list.txt" 2 "root_folder: \"$WORK/imgs/\" $extra" > net.prototxt
    rm -f out.h5
    run 0 "$NETRUN" test --model net.prototxt --iterations 3
    expect_err "A total of 5 images."
    expect_err "output data size: 2,$([ "$3" = 1 ] && echo 3 || echo 1),6,8"
    expect_err "Restarting data prefetching from start."
    check_pixels "$WORK/imgs" 5 6 "$3" "$WORK/out.h5"
  done
}

case_shuffle() {
  mkdir imgs && images "$WORK/imgs" 7 4 4 RGB png
  net "$WORK/imgs/list.txt" 7 "root_folder: \"$WORK/imgs/\" shuffle: true" > net.prototxt
  local orders=()
  for r in 1 2; do
    rm -f out.h5
    run 0 "$NETRUN" test --model net.prototxt --iterations 2
    expect_err "Shuffling data"
    orders+=("$("$PY" -c "import h5py; print(' '.join('%d' % v for v in h5py.File('$WORK/out.h5', 'r')['label'][:].ravel()))")")
  done
  [ "${orders[0]}" = "${orders[1]}" ] || fail "two runs shuffled differently: ${orders[0]} / ${orders[1]}"
  "$PY" - "${orders[0]}" <<'PYEOF' || fail "shuffled passes are not permutations of the list, or not shuffled: ${orders[0]}"
import sys
v = [int(x) for x in sys.argv[1].split()]
want = sorted(3 * i + 1 for i in range(7))
assert sorted(v[:7]) == want and sorted(v[7:]) == want, v
assert v[:7] != want or v[7:] != want, v  # 1 in 5040 per pass to stay in order
PYEOF
}

case_errors() {
  mkdir imgs && images "$WORK/imgs" 2 4 4 RGB png
  net "$WORK/nolist.txt" 1 > net.prototxt
  run 1 "$NETRUN" test --model net.prototxt --iterations 1
  expect_err "cannot open the image list '$WORK/nolist.txt'"
  : > empty.txt
  net "$WORK/empty.txt" 1 > net.prototxt
  run 1 "$NETRUN" test --model net.prototxt --iterations 1
  expect_err "image list '$WORK/empty.txt' is empty"
  printf 'imgs/img0.png 1\nimgs/img1.png\n' > nolabel.txt
  net "$WORK/nolabel.txt" 1 > net.prototxt
  run 1 "$NETRUN" test --model net.prototxt --iterations 1
  expect_err "image list '$WORK/nolabel.txt' line 2: expected \"<image path> <integer label>\""
  printf '%s/imgs/img0.png 1\n%s/imgs/gone.png 2\n' "$WORK" "$WORK" > missing.txt
  net "$WORK/missing.txt" 1 > net.prototxt
  run 1 "$NETRUN" test --model net.prototxt --iterations 3
  expect_err "cannot open image '$WORK/imgs/gone.png'"
  expect_err "layer 0 'data' (ImageData) forward"
  head -c 200 /dev/urandom > bad.png
  printf '%s/bad.png 1\n' "$WORK" > bad.txt
  net "$WORK/bad.txt" 1 > net.prototxt
  run 1 "$NETRUN" test --model net.prototxt --iterations 1
  expect_err "image '$WORK/bad.png' is neither a JPEG nor a PNG"
  "$PY" -c "from PIL import Image; Image.new('RGB', (40, 30)).save('$WORK/t.jpg')"
  head -c 300 t.jpg > trunc.jpg
  printf '%s/trunc.jpg 1\n' "$WORK" > trunc.txt
  net "$WORK/trunc.txt" 1 > net.prototxt
  run 1 "$NETRUN" test --model net.prototxt --iterations 1
  expect_err "image '$WORK/trunc.jpg' is not a readable JPEG"
  "$PY" -c "from PIL import Image; Image.new('RGB', (5, 5)).save('$WORK/other.png')"
  printf '%s/imgs/img0.png 1\n%s/other.png 2\n' "$WORK" "$WORK" > sizes.txt
  net "$WORK/sizes.txt" 1 > net.prototxt
  run 1 "$NETRUN" test --model net.prototxt --iterations 2
  expect_err "image '$WORK/other.png' is 5x5, but the list's first image is 4x4: give image_data_param new_height and new_width"
}

# flickr_files N: the files Caffe's finetune_flickr_style net names, under the current
# directory: its train_val and solver (the solver unchanged but for how long it runs), N
# random JPEGs per split of 200-320 pixels a side with their lists, and a mean file
flickr_files() {
  local caffe="$NR_SOURCE_DIR/tests/data/caffe"
  mkdir -p models/finetune_flickr_style data/flickr_style/images data/ilsvrc12
  cp "$caffe/finetune_flickr_style-train_val.prototxt" models/finetune_flickr_style/train_val.prototxt
  sed -e 's/^test_iter: .*/test_iter: 1/' -e 's/^test_interval: .*/test_interval: 2/' \
      -e 's/^max_iter: .*/max_iter: 2/' -e 's/^display: .*/display: 1/' \
      -e 's/^snapshot: .*/snapshot: 0\nsnapshot_after_train: false/' \
      "$caffe/finetune_flickr_style-solver.prototxt" > models/finetune_flickr_style/solver.prototxt
  "$PY" - "$1" <<'PYEOF' || fail "could not generate the images"
import struct
import sys
import numpy as np
from PIL import Image
rng = np.random.RandomState(3)
n = int(sys.argv[1])
for split in ('train', 'test'):
    with open('data/flickr_style/%s.txt' % split, 'w') as f:
        for i in range(n):
            h, w = rng.randint(200, 320), rng.randint(200, 320)
            p = 'data/flickr_style/images/%s%d.jpg' % (split, i)
            Image.fromarray(rng.randint(0, 256, (h, w, 3)).astype(np.uint8)).save(p, quality=85)
            f.write('%s %d\n' % (p, i % 20))
# the mean file: a BlobProto 1 x 3 x 256 x 256 (num 1, channels 2, height 3, width 4, data 5)
def varint(v):
    out = b''
    while True:
        b = v & 0x7f
        v >>= 7
        out += bytes([b | (0x80 if v else 0)])
        if not v:
            return out
data = np.full(3 * 256 * 256, 120.0, np.float32).tobytes()
blob = b''.join(bytes([k << 3]) + varint(v) for k, v in ((1, 1), (2, 3), (3, 256), (4, 256)))
blob += bytes([5 << 3 | 2]) + varint(len(data)) + data
open('data/ilsvrc12/imagenet_mean.binaryproto', 'wb').write(blob)
PYEOF
}

case_flickr() {
  flickr_files 50
  run 0 "$NETRUN" train --solver models/finetune_flickr_style/solver.prototxt
  expect_err "output data size: 50,3,227,227"
  expect_err "Iteration 2, Testing net (#0)"
  grep -qE "Test net output #[0-9]+: accuracy = " "$WORK/err" || fail "no test accuracy: $(tail -c 2000 "$WORK/err")"
  grep -qE "Iteration 2, loss = [0-9.]+" "$WORK/err" || fail "no loss at iteration 2: $(tail -c 2000 "$WORK/err")"
}

# netrun check builds Caffe's unchanged finetune_flickr_style and pascal_finetune nets in both
# phases: with their files, the shapes; without one of them, exit 1 and a message naming it
case_check() {
  flickr_files 2
  local net=models/finetune_flickr_style/train_val.prototxt
  run 0 "$NETRUN" check --model $net --phase TRAIN; expect_out "total:"
  expect_out "50x3x227x227"
  run 0 "$NETRUN" check --model $net; expect_out "total:"
  mv data/flickr_style/test.txt test.txt.away
  run 1 "$NETRUN" check --model $net
  expect_err "cannot open the image list 'data/flickr_style/test.txt': No such file or directory"
  mv test.txt.away data/flickr_style/test.txt
  # (the list is shuffled first: whichever image comes first is named)
  rm data/flickr_style/images/train*.jpg
  run 1 "$NETRUN" check --model $net --phase TRAIN
  expect_err "cannot open image 'data/flickr_style/images/train"
  expect_err ".jpg': No such file or directory"
  # Caffe's unchanged pascal_finetune net (WindowData) on one image with a foreground and a
  # background window in each phase's window file
  local pascal="$NR_SOURCE_DIR/tests/data/caffe/finetune_pascal_detection-pascal_finetune_trainval_test.prototxt"
  mkdir -p examples/finetune_pascal_detection
  "$PY" -c "import numpy as np; from PIL import Image; Image.fromarray(np.random.RandomState(1).randint(0, 256, (300, 400, 3)).astype(np.uint8)).save('voc.jpg')"
  for split in trainval test; do
    printf '# 0\nvoc.jpg\n3 300 400\n2\n7 0.8 50 60 200 220\n0 0.1 10 10 100 90\n' \
      > examples/finetune_pascal_detection/window_file_2007_$split.txt
  done
  run 0 "$NETRUN" check --model "$pascal" --phase TRAIN; expect_out "128x3x227x227"
  run 0 "$NETRUN" check --model "$pascal"; expect_out "total:"
  rm examples/finetune_pascal_detection/window_file_2007_test.txt
  run 1 "$NETRUN" check --model "$pascal"
  expect_err "cannot open the window file 'examples/finetune_pascal_detection/window_file_2007_test.txt'"
  rm data/ilsvrc12/imagenet_mean.binaryproto
  run 1 "$NETRUN" check --model $net
  expect_err "mean_file 'data/ilsvrc12/imagenet_mean.binaryproto': cannot open"
}

# window image and file: img.png 40 x 60 random (seed 5), windows as given on stdin
window_setup() {
  "$PY" -c "
import numpy as np
from PIL import Image
Image.fromarray(np.random.RandomState(5).randint(1, 256, (40, 60, 3)).astype(np.uint8)).save('$WORK/img.png')"
  { printf '# 0\n%s/img.png\n3\n40\n60\n' "$WORK"; cat; } > windows.txt
  sed -i "5a $(($(wc -l < windows.txt) - 5))" windows.txt
}

# wnet BATCH CROP "window_data_param extras" "transform_param extras"
wnet() {
  cat <<N
name: "windows"
layer { name: "data" type: "WindowData" top: "data" top: "label"
  window_data_param { source: "$WORK/windows.txt" batch_size: $1 ${3:-} }
  transform_param { crop_size: $2 ${4:-} } }
layer { name: "out" type: "HDF5Output" bottom: "data" bottom: "label"
  hdf5_output_param { file_name: "$WORK/out.h5" } }
N
}

case_window_pixels() {
  window_setup <<W
2 0.9 10 5 17 12
5 0.8 30 20 37 27
7 0.5 40 10 47 17
1 0.1 0 0 7 7
3 0.3 50 30 57 37
W
  wnet 4 8 "fg_threshold: 0.7 bg_threshold: 0.4 fg_fraction: 0.5" > net.prototxt
  run 0 "$NETRUN" test --model net.prototxt --iterations 6
  expect_err "Number of images: 1"
  expect_err "Foreground windows: 2, background windows: 2"
  expect_err "output data size: 4,3,8,8"
  "$PY" - "$WORK" <<'PYEOF' || fail "WindowData batches are wrong"
import sys
import h5py
import numpy as np
from PIL import Image
w = sys.argv[1]
img = np.asarray(Image.open(w + '/img.png'))[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)
f = h5py.File(w + '/out.h5', 'r')
data, label = f['data'][:], f['label'][:].ravel()
assert data.shape == (24, 3, 8, 8), data.shape
win = {2: [(10, 5)], 5: [(30, 20)], 0: [(0, 0), (50, 30)]}
seen = set()
for k in range(24):
    assert (label[k] == 0) == (k % 4 < 2), (k, label[k])  # 2 background, then 2 foreground
    cands = [img[:, y:y + 8, x:x + 8] for x, y in win[int(label[k])]]
    hit = [i for i, c in enumerate(cands) if np.array_equal(c, data[k])]
    assert hit, (k, label[k])
    seen.add((int(label[k]), hit[0]))
assert seen == {(2, 0), (5, 0), (0, 0), (0, 1)}, seen  # every window drawn, the unused one never
PYEOF
}

case_window_context() {
  window_setup <<W
4 0.9 0 0 7 7
1 0.1 0 0 7 7
W
  wnet 2 12 "context_pad: 2" "mean_value: 10" > net.prototxt
  run 0 "$NETRUN" test --model net.prototxt --iterations 4
  expect_err "Amount of context padding: 2"
  "$PY" - "$WORK" left <<'PYEOF' || fail "context padding is wrong (no mirror)"
import sys
import h5py
import numpy as np
d = h5py.File(sys.argv[1] + '/out.h5', 'r')['data'][:]
# the window grown by 2 x 12/8: 13 pixels wide from -2: 2 output rows/columns fall outside
for item in d:
    assert not item[:, :2, :].any() and not item[:, :, :2].any(), item[0, :3, :3]
    assert (item[:, 2:, 2:] != 0).mean() > 0.9
    assert (item[:, 2:, 2:] >= -10).all()  # pixels 1..255 minus the mean value 10
PYEOF
  rm -f out.h5
  wnet 2 12 "context_pad: 2" "mirror: true" > net.prototxt
  run 0 "$NETRUN" test --model net.prototxt --iterations 10
  "$PY" - "$WORK" <<'PYEOF' || fail "context padding is wrong (mirror)"
import sys
import h5py
d = h5py.File(sys.argv[1] + '/out.h5', 'r')['data'][:]
kinds = set()
for item in d:
    assert not item[:, :2, :].any()
    left, right = not item[:, :, :2].any(), not item[:, :, -2:].any()
    assert left != right, item[0, 2, :]
    kinds.add(left)
assert kinds == {True, False}, kinds  # 20 windows: both flipped and not
PYEOF
}

case_window_errors() {
  wnet 2 8 > net.prototxt
  run 1 "$NETRUN" test --model net.prototxt --iterations 1
  expect_err "cannot open the window file '$WORK/windows.txt'"
  printf '0\nimg.png\n' > windows.txt
  run 1 "$NETRUN" test --model net.prototxt --iterations 1
  expect_err "window file '$WORK/windows.txt', image 0: expected \"# <index>\""
  window_setup <<W
1 0.9 55 0 62 7
W
  run 1 "$NETRUN" test --model net.prototxt --iterations 1
  expect_err "window 0: corners (55, 0) - (62, 7) are not inside the 60x40 image"
  window_setup <<W
0 0.9 0 0 7 7
W
  run 1 "$NETRUN" test --model net.prototxt --iterations 1
  expect_err "a foreground window (overlap 0.9) needs a class > 0, not 0"
  window_setup <<W
1 0.9 0 0 7 7
1 0.1 0 0 7 7
W
  sed -i 's/^40$/41/' windows.txt
  run 1 "$NETRUN" test --model net.prototxt --iterations 1
  expect_err "image '$WORK/img.png' is 40x60, but the window file '$WORK/windows.txt' says 41x60"
  sed -i 's/^41$/40/' windows.txt
  wnet 2 0 > net.prototxt
  run 1 "$NETRUN" test --model net.prototxt --iterations 1
  expect_err "WindowData needs transform_param.crop_size"
}

"case_$1"
[ "$failures" = 0 ] || exit 1
echo "ok: $1"
