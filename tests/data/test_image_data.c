/* Tests of the ImageData layer (core/layers/image_data.c) on PNG images written here
 * (lossless, so every value is exact): B, G, R planes and labels in list order, the wrap
 * to the list's start, a path with a space, root_folder, gray files and is_color, the
 * resize (a value worked out by hand), transform_param (TEST centre crop, mirror/crop
 * draws, mean_value, scale), shuffle (a permutation per pass, the same for a seed),
 * rand_skip, and every error a user can make, each with one message naming the file. */
#include "data_util.h"
#include "image_io.h"

#define NIMG 5
#define H 3
#define W 4

/* Channel c (0 R, 1 G, 2 B) of image i at (y, x): distinct across the set. */
static uint8_t px(int i, int y, int x, int c) {
  return (uint8_t)(i * 50 + y * 13 + x * 3 + c * 17 + 1);
}

static const char *list5; /* "img0.png 10" ... "img 2.png 12" (a space in the path) ...,
                           * a CRLF line and a blank one; names relative to root_folder */

static const char *const img_name[NIMG] = {"img0.png", "img1.png", "img 2.png", "img3.png",
                                           "img4.png"};

static void make_images(void) {
  uint8_t rgb[H * W * 3];
  for (int i = 0; i < NIMG; i++) {
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++)
        for (int c = 0; c < 3; c++) rgb[(y * W + x) * 3 + c] = px(i, y, x, c);
    if (du_write_png(du_path("%s", img_name[i]), W, H, PNG_FORMAT_RGB, rgb) != 0) {
      fprintf(stderr, "cannot write the PNG fixtures\n");
      exit(100);
    }
  }
  static char path[512];
  snprintf(path, sizeof path, "%s", du_path("list5.txt"));
  if (du_write_text(path, "img0.png 10\nimg1.png 11\nimg 2.png 12\r\n\nimg3.png 13\nimg4.png 14\n"))
    exit(100);
  list5 = path;
}

/* An ImageData layer over `list` (root_folder: the scratch directory) with extra
 * image_data_param fields and other layer text (transform_param). */
static du_layer *image_layer(const char *list, int batch, int phase, uint64_t seed,
                             const char *extra, const char *transform) {
  return du_make(2, seed, phase,
                 "name: 'images' type: 'ImageData' top: 'data' top: 'label' "
                 "image_data_param { source: '%s' root_folder: '%s/' batch_size: %d %s } %s",
                 list, du_tmpdir(), batch, extra ? extra : "", transform ? transform : "");
}

/* Item k of the batch in `f` is image i, unchanged: B, G, R planes of H x W. */
static int item_is(const du_layer *f, int k, int i) {
  const float *d = f->top[0]->data + (size_t)k * 3 * H * W;
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++)
        if (d[(c * H + y) * W + x] != px(i, y, x, 2 - c)) return 0;
  return 1;
}

static void test_pixels_labels_wrap(void) {
  char *logbuf = NULL;
  size_t loglen = 0;
  FILE *log = open_memstream(&logbuf, &loglen);
  du_layer *f = image_layer(list5, 2, NR_TRAIN, 1, NULL, NULL);
  CHECK(f != NULL && log != NULL);
  f->ctx.log = log;
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->num_axes, 4);
  CHECK_INT_EQ(f->top[0]->shape[0], 2);
  CHECK_INT_EQ(f->top[0]->shape[1], 3);
  CHECK_INT_EQ(f->top[0]->shape[2], H);
  CHECK_INT_EQ(f->top[0]->shape[3], W);
  CHECK_INT_EQ(f->top[1]->shape[0], 2);
  for (int b = 0; b < 4; b++) { /* 8 items over 5 images: wraps once */
    CHECK_OK(f->l->type->reshape(f->l, &f->err), &f->err);
    CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
    for (int k = 0; k < 2; k++) {
      const int i = (b * 2 + k) % NIMG;
      CHECK(item_is(f, k, i));
      CHECK_NEAR(f->top[1]->data[k], 10 + i, 0);
    }
  }
  du_free(f);
  fclose(log);
  CHECK_CONTAINS(logbuf, "A total of 5 images.");
  CHECK_CONTAINS(logbuf, "output data size: 2,3,3,4");
  CHECK_CONTAINS(logbuf, "Restarting data prefetching from start.");
  free(logbuf);
  /* one top: data only */
  f = du_make(1, 1, NR_TEST, "name: 'd' type: 'ImageData' top: 'data' image_data_param { "
              "source: '%s' root_folder: '%s/' batch_size: 3 }", list5, du_tmpdir());
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  CHECK(item_is(f, 2, 2));
  du_free(f);
}

static void test_gray(void) {
  const uint8_t g[H * W] = {0, 1, 2, 3, 50, 60, 70, 80, 200, 210, 254, 255};
  CHECK_INT_EQ(du_write_png(du_path("g.png"), W, H, PNG_FORMAT_GRAY, g), 0);
  CHECK_INT_EQ(du_write_text(du_path("gray.txt"), "g.png 7\n"), 0);
  /* is_color: false -> one plane */
  du_layer *f = image_layer(du_path("gray.txt"), 1, NR_TEST, 1, "is_color: false", NULL);
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->shape[1], 1);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  for (int k = 0; k < H * W; k++) CHECK_NEAR(f->top[0]->data[k], g[k], 0);
  CHECK_NEAR(f->top[1]->data[0], 7, 0);
  du_free(f);
  /* the default (is_color: true): the gray value in all three planes */
  f = image_layer(du_path("gray.txt"), 1, NR_TEST, 1, NULL, NULL);
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->shape[1], 3);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  for (int c = 0; c < 3; c++)
    for (int k = 0; k < H * W; k++) CHECK_NEAR(f->top[0]->data[c * H * W + k], g[k], 0);
  du_free(f);
}

/* new_height/new_width: 2 x 2 gray {20 47 / 98 47} to 4 x 4; at row 2, column 1 OpenCV's
 * INTER_LINEAR gives 70 (tests/data/test_image_io.c works it out); images of another size
 * in the same list are resized too. */
static void test_resize(void) {
  const uint8_t sq[4] = {20, 47, 98, 47};
  CHECK_INT_EQ(du_write_png(du_path("sq.png"), 2, 2, PNG_FORMAT_GRAY, sq), 0);
  CHECK_INT_EQ(du_write_text(du_path("mixed.txt"), "sq.png 0\nimg1.png 1\n"), 0);
  du_layer *f = image_layer(du_path("mixed.txt"), 2, NR_TEST, 1,
                            "new_height: 4 new_width: 4 is_color: false", NULL);
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->shape[2], 4);
  CHECK_INT_EQ(f->top[0]->shape[3], 4);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  const float *d = f->top[0]->data;
  CHECK_NEAR(d[0], 20, 0);
  CHECK_NEAR(d[2 * 4 + 1], 70, 0);
  CHECK_NEAR(d[3 * 4 + 3], 47, 0);
  du_free(f);
  /* the 3 x 4 color image read as gray and resized to 4 x 4 equals image_io's answer */
  uint8_t *pix = NULL, out[16];
  int h, w;
  nr_error err;
  CHECK_OK(nr_image_read(du_path("img1.png"), false, &pix, &h, &w, &err), &err);
  nr_image_resize(pix, h, w, 1, out, 4, 4);
  free(pix);
  f = image_layer(du_path("mixed.txt"), 2, NR_TEST, 1,
                  "new_height: 4 new_width: 4 is_color: false", NULL);
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  for (int k = 0; k < 16; k++) CHECK_NEAR(f->top[0]->data[16 + k], out[k], 0);
  du_free(f);
  /* without a resize, the second image's size is an error of the forward that reads it */
  f = image_layer(du_path("mixed.txt"), 2, NR_TEST, 1, NULL, NULL);
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK(f->l->type->forward(f->l, &f->err) != NR_OK);
  CHECK_CONTAINS(f->err.msg, "img1.png' is 3x4, but the list's first image is 2x2");
  du_free(f);
}

static void test_transform(void) {
  /* TEST: centre crop 2 of 3 x 4: rows 0..1 ((3-2)/2 = 0), columns 1..2; then mean and
   * scale: (v - 5) * 0.5 */
  du_layer *f = image_layer(list5, 1, NR_TEST, 1, NULL,
                            "transform_param { crop_size: 2 mean_value: 5 scale: 0.5 }");
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->shape[2], 2);
  CHECK_INT_EQ(f->top[0]->shape[3], 2);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < 2; y++)
      for (int x = 0; x < 2; x++)
        CHECK_NEAR(f->top[0]->data[(c * 2 + y) * 2 + x], (px(0, y, x + 1, 2 - c) - 5) * 0.5,
                   0);
  du_free(f);
  /* TRAIN with mirror and crop 2: every item is some 2 x 2 window of its image, maybe
   * flipped; over 20 items both flips and several offsets appear; same seed, same draws */
  int codes[2][20];
  for (int run = 0; run < 2; run++) {
    f = image_layer(list5, 4, NR_TRAIN, 9, NULL,
                    "transform_param { crop_size: 2 mirror: true }");
    CHECK(f != NULL);
    CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
    for (int b = 0; b < 5; b++) {
      CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
      for (int k = 0; k < 4; k++) {
        const int i = (b * 4 + k) % NIMG;
        const float *d = f->top[0]->data + k * 12;
        int code = -1;
        for (int m = 0; m < 2 && code < 0; m++)
          for (int ho = 0; ho <= H - 2 && code < 0; ho++)
            for (int wo = 0; wo <= W - 2 && code < 0; wo++) {
              int ok = 1;
              for (int c = 0; c < 3; c++)
                for (int y = 0; y < 2; y++)
                  for (int x = 0; x < 2; x++)
                    ok &= d[(c * 2 + y) * 2 + (m ? 1 - x : x)] == px(i, ho + y, wo + x, 2 - c);
              if (ok) code = m * 100 + ho * 10 + wo;
            }
        CHECK(code >= 0);
        codes[run][b * 4 + k] = code;
      }
    }
    du_free(f);
  }
  int flips = 0, offsets = 0;
  for (int k = 0; k < 20; k++) {
    CHECK_INT_EQ(codes[0][k], codes[1][k]);
    flips += codes[0][k] >= 100;
    offsets |= 1 << (codes[0][k] % 100);
  }
  CHECK(flips > 0 && flips < 20);
  CHECK(__builtin_popcount((unsigned)offsets) >= 3);
}

/* Runs 3 batches of 5 with shuffle and records the labels. */
static void shuffled(uint64_t seed, int labels[15]) {
  du_layer *f = image_layer(list5, 5, NR_TRAIN, seed, "shuffle: true", NULL);
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  for (int b = 0; b < 3; b++) {
    CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
    for (int k = 0; k < 5; k++) {
      labels[b * 5 + k] = (int)f->top[1]->data[k];
      CHECK(item_is(f, k, labels[b * 5 + k] - 10)); /* the image goes with its label */
    }
  }
  du_free(f);
}

static void test_shuffle(void) {
  int a[15], b[15], c[15], d[15];
  for (int k = 0; k < 15; k++) a[k] = b[k] = c[k] = d[k] = -1;
  shuffled(3, a);
  shuffled(3, b);
  shuffled(4, c);
  shuffled(5, d);
  int differ = 0, passes_differ = 0;
  for (int p = 0; p < 3; p++) {
    int seen = 0;
    for (int k = 0; k < 5; k++) seen |= 1 << (a[p * 5 + k] - 10);
    CHECK_INT_EQ(seen, 0x1f); /* each pass is a permutation of the list */
  }
  for (int k = 0; k < 15; k++) {
    CHECK_INT_EQ(a[k], b[k]); /* same seed, same order */
    differ += a[k] != c[k] || a[k] != d[k];
  }
  for (int k = 0; k < 5; k++) passes_differ += a[k] != a[5 + k] || a[5 + k] != a[10 + k];
  CHECK(differ > 0);        /* other seeds, other orders */
  CHECK(passes_differ > 0); /* reshuffled at each pass's end */
}

static void test_rand_skip(void) {
  du_layer *f = image_layer(list5, 2, NR_TRAIN, 3, "rand_skip: 5", NULL);
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  const int first = (int)f->top[1]->data[0] - 10;
  CHECK(first >= 0 && first < 5);
  CHECK_NEAR(f->top[1]->data[1], 10 + (first + 1) % 5, 0);
  CHECK(item_is(f, 0, first));
  du_free(f);
}

/* The layer over `list` (batch 1) fails at setup (at_forward 0), or (1) at the second
 * forward, that reads the list's second image, after a good first one. */
static void expect_error(const char *list, const char *extra, int at_forward, const char *want) {
  du_expect_fail(image_layer(list, 1, NR_TRAIN, 1, extra, NULL), at_forward ? 1 : -1, want);
}

static void test_errors(void) {
  char want[700];
  /* a missing list */
  snprintf(want, sizeof want, "cannot open the image list '%s': No such file or directory",
           du_path("nolist.txt"));
  expect_error(du_path("nolist.txt"), NULL, 0, want);
  /* an empty list (blank lines only) */
  CHECK_INT_EQ(du_write_text(du_path("empty.txt"), "\n\n"), 0);
  snprintf(want, sizeof want, "image list '%s' is empty", du_path("empty.txt"));
  expect_error(du_path("empty.txt"), NULL, 0, want);
  /* a line without a label, with its number */
  CHECK_INT_EQ(du_write_text(du_path("nolabel.txt"), "img0.png 1\nimg1.png\n"), 0);
  snprintf(want, sizeof want, "image list '%s' line 2: expected \"<image path> <integer label>\"",
           du_path("nolabel.txt"));
  expect_error(du_path("nolabel.txt"), NULL, 0, want);
  /* a missing first image: at setup (it gives the shape); a missing later one: at the
   * forward that reads it */
  CHECK_INT_EQ(du_write_text(du_path("missing1.txt"), "gone.png 0\n"), 0);
  snprintf(want, sizeof want, "cannot open image '%s/gone.png': No such file or directory",
           du_tmpdir());
  expect_error(du_path("missing1.txt"), NULL, 0, want);
  CHECK_INT_EQ(du_write_text(du_path("missing2.txt"), "img0.png 0\ngone.png 1\n"), 0);
  expect_error(du_path("missing2.txt"), NULL, 1, want);
  /* a corrupt image (a PNG cut short) and a file that is no image */
  FILE *in = fopen(du_path("img3.png"), "rb");
  uint8_t buf[60];
  CHECK(in && fread(buf, 1, sizeof buf, in) == sizeof buf);
  if (in) fclose(in);
  FILE *out = fopen(du_path("cut.png"), "wb");
  CHECK(out && fwrite(buf, 1, sizeof buf, out) == sizeof buf);
  if (out) fclose(out);
  CHECK_INT_EQ(du_write_text(du_path("cut.txt"), "img0.png 0\ncut.png 1\n"), 0);
  snprintf(want, sizeof want, "image '%s/cut.png' is not a readable PNG", du_tmpdir());
  expect_error(du_path("cut.txt"), NULL, 1, want);
  CHECK_INT_EQ(du_write_text(du_path("text.png"), "not an image\n"), 0);
  CHECK_INT_EQ(du_write_text(du_path("text.txt"), "text.png 0\n"), 0);
  snprintf(want, sizeof want, "image '%s/text.png' is neither a JPEG nor a PNG", du_tmpdir());
  expect_error(du_path("text.txt"), NULL, 0, want);
  /* parameters */
  expect_error(list5, "new_height: 4", 0, "give both new_height and new_width, or neither");
  du_layer *f = du_make(2, 1, NR_TRAIN, "name: 'd' type: 'ImageData' top: 'data' top: 'label' "
                        "image_data_param { batch_size: 1 }");
  CHECK(f != NULL);
  CHECK(nr_layer_setup(f->l, &f->err) != NR_OK);
  CHECK_CONTAINS(f->err.msg, "image_data_param.source is not set");
  du_free(f);
}

int main(void) {
  make_images();
  NR_RUN(test_pixels_labels_wrap);
  NR_RUN(test_gray);
  NR_RUN(test_resize);
  NR_RUN(test_transform);
  NR_RUN(test_shuffle);
  NR_RUN(test_rand_skip);
  NR_RUN(test_errors);
  du_cleanup();
  return NR_TEST_EXIT();
}
