/* Tests of the WindowData layer (core/layers/window_data.c) on PNG images written here
 * (lossless, so a window cut at the crop's own size is copied exactly and can be told
 * apart): foreground/background labels and the fg_fraction split of each batch, which
 * windows are drawn (the unused ones never), determinism, the warp of a smaller window,
 * context_pad at an image corner (outside stays 0, mean only inside; mirrored padding
 * moves right), crop_mode square, cache_images, and the errors a user would see. */
#include "data_util.h"
#include "image_io.h"

/* Channel c (0 R, 1 G, 2 B) of image i at (y, x): distinct across the images. */
static uint8_t px(int i, int y, int x, int c) {
  return (uint8_t)(i * 101 + y * 17 + x * 5 + c * 29 + 3);
}

static const int img_h[2] = {12, 10}, img_w[2] = {16, 10};

/* The windows of wins.txt: image, class, x1, y1, x2, y2 (inclusive); the overlaps put
 * 0 and 1 in the foreground, 2, 4 and 5 in the background (5 as class 0 whatever its class
 * in the file), and 3 between the thresholds (0.5 and 0.3): never used. */
typedef struct wdef {
  int image, label, x1, y1, x2, y2;
} wdef;
static const wdef wins[6] = {{0, 1, 2, 2, 5, 5},   {0, 2, 8, 4, 11, 7}, {0, 0, 0, 0, 3, 3},
                             {0, 3, 4, 4, 7, 7},   {0, 0, 10, 6, 13, 9}, {1, 0, 6, 6, 9, 9}};

static void make_fixtures(void) {
  for (int i = 0; i < 2; i++) {
    uint8_t *rgb = malloc((size_t)img_h[i] * img_w[i] * 3);
    if (!rgb) exit(100);
    for (int y = 0; y < img_h[i]; y++)
      for (int x = 0; x < img_w[i]; x++)
        for (int c = 0; c < 3; c++) rgb[(y * img_w[i] + x) * 3 + c] = px(i, y, x, c);
    int rc = du_write_png(du_path("im%d.png", i), img_w[i], img_h[i], PNG_FORMAT_RGB, rgb);
    free(rgb);
    if (rc) exit(100);
  }
  if (du_write_text(du_path("wins.txt"),
                    "# 0\nim0.png\n3 12 16\n5\n"
                    "1 0.9 2 2 5 5\n2 0.7 8 4 11 7\n0 0.1 0 0 3 3\n3 0.4 4 4 7 7\n"
                    "5 0.2 10 6 13 9\n"
                    "# 1\nim1.png\n3 10 10\n1\n0 0.0 6 6 9 9\n"))
    exit(100);
}

/* A WindowData layer over `file` (root_folder: the scratch directory). */
static du_layer *window_layer(const char *file, int batch, uint64_t seed, const char *extra,
                              const char *transform) {
  return du_make(2, seed, NR_TRAIN,
                 "name: 'windows' type: 'WindowData' top: 'data' top: 'label' "
                 "window_data_param { source: '%s' root_folder: '%s/' batch_size: %d "
                 "fg_threshold: 0.5 bg_threshold: 0.3 %s } transform_param { %s }",
                 file, du_tmpdir(), batch, extra ? extra : "", transform);
}

/* Which window of `wins` (4 x 4, at crop 4) is item d, or -1. */
static int which_window(const float *d) {
  for (int k = 0; k < 6; k++) {
    const wdef *w = &wins[k];
    int ok = 1;
    for (int c = 0; c < 3 && ok; c++)
      for (int y = 0; y < 4 && ok; y++)
        for (int x = 0; x < 4 && ok; x++)
          ok = d[(c * 4 + y) * 4 + x] == px(w->image, w->y1 + y, w->x1 + x, 2 - c);
    if (ok) return k;
  }
  return -1;
}

/* 10 batches of 8 (2 foreground at the default fg_fraction 0.25): the window codes. */
static void run_batches(uint64_t seed, const char *extra, int codes[80]) {
  char *logbuf = NULL;
  size_t loglen = 0;
  FILE *log = open_memstream(&logbuf, &loglen);
  du_layer *f = window_layer(du_path("wins.txt"), 8, seed, extra, "crop_size: 4");
  CHECK(f != NULL && log != NULL);
  f->ctx.log = log;
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->shape[0], 8);
  CHECK_INT_EQ(f->top[0]->shape[1], 3);
  CHECK_INT_EQ(f->top[0]->shape[2], 4);
  CHECK_INT_EQ(f->top[0]->shape[3], 4);
  for (int b = 0; b < 10; b++) {
    CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
    for (int k = 0; k < 8; k++) {
      const int code = which_window(f->top[0]->data + k * 48);
      CHECK(code >= 0);
      const float label = f->top[1]->data[k];
      if (k < 6) { /* background first, class 0 */
        CHECK(code == 2 || code == 4 || code == 5);
        CHECK_NEAR(label, 0, 0);
      } else {
        CHECK(code == 0 || code == 1);
        CHECK_NEAR(label, wins[code].label, 0);
      }
      codes[b * 8 + k] = code;
    }
  }
  du_free(f);
  fclose(log);
  CHECK_CONTAINS(logbuf, "Number of images: 2");
  CHECK_CONTAINS(logbuf, "Foreground windows: 2, background windows: 3");
  free(logbuf);
}

static void test_labels_and_fraction(void) {
  int a[80], b[80], c[80], d[80];
  memset(a, -1, sizeof a);
  memset(c, -1, sizeof c);
  run_batches(5, NULL, a);
  run_batches(5, NULL, b);
  run_batches(6, NULL, c);
  run_batches(5, "cache_images: true", d);
  int seen = 0, differ = 0;
  for (int k = 0; k < 80; k++) {
    seen |= 1 << a[k];
    CHECK_INT_EQ(a[k], b[k]); /* same seed, same windows */
    CHECK_INT_EQ(a[k], d[k]); /* the cache changes nothing */
    differ += a[k] != c[k];
  }
  CHECK_INT_EQ(seen, 0x37); /* windows 0, 1, 2, 4, 5: all used ones, never 3 */
  CHECK(differ > 0);
  /* fg_fraction 0.5 of 4: two background, then two foreground */
  du_layer *f = window_layer(du_path("wins.txt"), 4, 1, "fg_fraction: 0.5", "crop_size: 4");
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  for (int r = 0; r < 5; r++) {
    CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
    for (int k = 0; k < 4; k++) CHECK((f->top[1]->data[k] > 0) == (k >= 2));
  }
  du_free(f);
}

/* One foreground window (class 1) on image 0, batch 1, fg_fraction 1: the layer's output. */
static du_layer *one_window(const char *corners, const char *extra, const char *transform,
                            uint64_t seed) {
  if (du_write_text(du_path("one.txt"), "# 0\nim0.png\n3 12 16\n1\n1 1.0 %s\n", corners))
    return NULL;
  du_layer *f = window_layer(du_path("one.txt"), 1, seed, extra, transform);
  if (f && nr_layer_setup(f->l, &f->err) != NR_OK) {
    fprintf(stderr, "%s\n", f->err.msg);
    du_free(f);
    return NULL;
  }
  return f;
}

/* The region x0..x0+rw-1, y0..y0+rh-1 of image 0 resized to oh x ow: interleaved B,G,R. */
static void resized_region(int x0, int y0, int rw, int rh, int oh, int ow, uint8_t *out) {
  uint8_t *roi = malloc((size_t)rw * rh * 3);
  if (!roi) return;
  for (int y = 0; y < rh; y++)
    for (int x = 0; x < rw; x++)
      for (int c = 0; c < 3; c++) roi[(y * rw + x) * 3 + c] = px(0, y0 + y, x0 + x, 2 - c);
  nr_image_resize(roi, rh, rw, 3, out, oh, ow);
  free(roi);
}

static void test_warp(void) {
  /* a 2 x 2 window warped to the 4 x 4 crop: OpenCV's resize of the window */
  du_layer *f = one_window("3 5 4 6", "fg_fraction: 1", "crop_size: 4", 1);
  CHECK(f != NULL);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  uint8_t want[4 * 4 * 3];
  resized_region(3, 5, 2, 2, 4, 4, want);
  for (int c = 0; c < 3; c++)
    for (int k = 0; k < 16; k++) CHECK_NEAR(f->top[0]->data[c * 16 + k], want[k * 3 + c], 0);
  CHECK(want[0] != want[15 * 3]); /* not a flat window */
  du_free(f);
  /* crop_mode square: a 2-wide, 4-tall window (x 4..5, y 4..7) becomes the 5 x 5 square
   * x 3..7, y 4..8 around its centre (5, 6): at crop 5, copied as it is */
  f = one_window("4 4 5 7", "fg_fraction: 1 crop_mode: 'square'", "crop_size: 5", 1);
  CHECK(f != NULL);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < 5; y++)
      for (int x = 0; x < 5; x++)
        CHECK_NEAR(f->top[0]->data[(c * 5 + y) * 5 + x], px(0, 4 + y, 3 + x, 2 - c), 0);
  du_free(f);
}

/* context_pad 1 at crop 6 around the corner window (0, 0)-(3, 3): context scale 6/4, the
 * grown window (-1, -1)-(5, 5) is 7 x 7, clipped to (0, 0)-(5, 5); at scale 6/7 the
 * clipped 6 x 6 becomes 5 x 5 (round(36/7)) after a padding of round(6/7) = 1 row and
 * column of zeros at the top and left. The mean applies inside only. Mirrored, the
 * padding follows the right edge (none there): columns 0..4 hold the flipped window. */
static void test_context_pad(void) {
  uint8_t in[5 * 5 * 3];
  resized_region(0, 0, 6, 6, 5, 5, in);
  du_layer *f = one_window("0 0 3 3", "fg_fraction: 1 context_pad: 1",
                           "crop_size: 6 mean_value: 10", 1);
  CHECK(f != NULL);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  const float *d = f->top[0]->data;
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < 6; y++)
      for (int x = 0; x < 6; x++) {
        const float want = y == 0 || x == 0 ? 0 : in[((y - 1) * 5 + x - 1) * 3 + c] - 10.0f;
        CHECK_NEAR(d[(c * 6 + y) * 6 + x], want, 0);
      }
  du_free(f);
  /* mirror: each draw is either layout; both appear over 16 draws */
  f = one_window("0 0 3 3", "fg_fraction: 1 context_pad: 1", "crop_size: 6 mirror: true", 2);
  CHECK(f != NULL);
  int plain = 0, flipped = 0;
  for (int r = 0; r < 16; r++) {
    CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
    d = f->top[0]->data;
    int is_plain = 1, is_flipped = 1;
    for (int c = 0; c < 3; c++)
      for (int y = 0; y < 6; y++)
        for (int x = 0; x < 6; x++) {
          const float v = d[(c * 6 + y) * 6 + x];
          is_plain &= v == (y == 0 || x == 0 ? 0 : in[((y - 1) * 5 + x - 1) * 3 + c]);
          is_flipped &= v == (y == 0 || x == 5 ? 0 : in[((y - 1) * 5 + 4 - x) * 3 + c]);
        }
    CHECK(is_plain || is_flipped);
    plain += is_plain;
    flipped += is_flipped;
  }
  CHECK(plain > 0 && flipped > 0);
  du_free(f);
}

/* The layer over `file` fails at setup (at_forward 0) or at its first forward (1). */
static void expect_error(const char *file, const char *extra, const char *transform,
                         int at_forward, const char *want) {
  du_expect_fail(window_layer(file, 2, 1, extra, transform), at_forward ? 0 : -1, want);
}

static void test_errors(void) {
  char want[700];
  snprintf(want, sizeof want, "cannot open the window file '%s': No such file or directory",
           du_path("none.txt"));
  expect_error(du_path("none.txt"), NULL, "crop_size: 4", 0, want);
  expect_error(du_path("wins.txt"), NULL, "", 0, "WindowData needs transform_param.crop_size");
  CHECK_INT_EQ(du_write_text(du_path("out.txt"), "# 0\nim0.png\n3 12 16\n1\n1 0.9 10 2 16 5\n"),
               0);
  expect_error(du_path("out.txt"), NULL, "crop_size: 4", 0,
               "window 0: corners (10, 2) - (16, 5) are not inside the 16x12 image");
  CHECK_INT_EQ(du_write_text(du_path("cls0.txt"), "# 0\nim0.png\n3 12 16\n1\n0 0.9 1 1 4 4\n"),
               0);
  expect_error(du_path("cls0.txt"), NULL, "crop_size: 4", 0,
               "a foreground window (overlap 0.9) needs a class > 0, not 0");
  CHECK_INT_EQ(du_write_text(du_path("bad.txt"), "# 0\nim0.png\n3 12\n"), 0);
  expect_error(du_path("bad.txt"), NULL, "crop_size: 4", 0,
               "expected \"# <index>\", the image path, <channels> <height> <width>");
  /* only foreground windows, but each batch takes background ones too */
  CHECK_INT_EQ(du_write_text(du_path("fgonly.txt"), "# 0\nim0.png\n3 12 16\n1\n1 0.9 1 1 4 4\n"),
               0);
  expect_error(du_path("fgonly.txt"), NULL, "crop_size: 4", 0,
               "has 1 foreground and 0 background windows, but each batch takes 0 and 2");
  /* a missing image, and one whose size is not its header's: at the forward */
  CHECK_INT_EQ(du_write_text(du_path("gone.txt"), "# 0\ngone.png\n3 12 16\n1\n1 0.9 1 1 4 4\n"),
               0);
  snprintf(want, sizeof want, "cannot open image '%s/gone.png'", du_tmpdir());
  expect_error(du_path("gone.txt"), "fg_fraction: 1", "crop_size: 4", 1, want);
  CHECK_INT_EQ(du_write_text(du_path("size.txt"), "# 0\nim1.png\n3 12 16\n1\n1 0.9 1 1 4 4\n"),
               0);
  snprintf(want, sizeof want, "image '%s/im1.png' is 10x10, but the window file", du_tmpdir());
  expect_error(du_path("size.txt"), "fg_fraction: 1", "crop_size: 4", 1, want);
}

int main(void) {
  make_fixtures();
  NR_RUN(test_labels_and_fraction);
  NR_RUN(test_warp);
  NR_RUN(test_context_pad);
  NR_RUN(test_errors);
  du_cleanup();
  return NR_TEST_EXIT();
}
