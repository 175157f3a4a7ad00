/* Tests of core/image_io: the bilinear resize against values worked out by hand from
 * OpenCV's INTER_LINEAR rule (centres aligned, edges clamped, 11-bit weights, OpenCV's own
 * truncations in the vertical pass), PNG decoding of color and gray files written here with libpng,
 * and the errors a user would see for a missing, empty, foreign, corrupt or truncated file. JPEG
 * decoding is compared with PIL's in tests/data/image_e2e.sh. */
#include <stdio.h> /* before jpeglib.h, which needs FILE and size_t */
#include <stdlib.h>

#include <jpeglib.h>
#include <png.h>

#include "data_util.h"
#include "image_io.h"

/* 1 x 2 -> 1 x 4: source centres at x = 0.25 and 0.75 of the destination's... by hand:
 * d = 0: f = 0.5 * 0.5 - 0.5 < 0 -> clamped to pixel 0: 0.
 * d = 1: f = 0.25: weights 1536/512 of 2048: 255 * 512 * 2048 / 2^22 = 63.75 -> 64.
 * d = 2: f = 0.75: 255 * 1536 * 2048 / 2^22 = 191.25 -> 191.
 * d = 3: f = 1.25 -> past the last pixel: clamped: 255. */
static void test_resize_by_hand(void) {
  const uint8_t src[2] = {0, 255};
  uint8_t dst[4];
  nr_image_resize(src, 1, 2, 1, dst, 1, 4);
  CHECK_INT_EQ(dst[0], 0);
  CHECK_INT_EQ(dst[1], 64);
  CHECK_INT_EQ(dst[2], 191);
  CHECK_INT_EQ(dst[3], 255);
  /* vertically too, and per channel: a 2 x 1 two-channel column to 4 x 1 */
  const uint8_t col[4] = {0, 100, 255, 0};
  uint8_t out[8];
  nr_image_resize(col, 2, 1, 2, out, 4, 1);
  const uint8_t want[8] = {0, 100, 64, 75, 191, 25, 255, 0};
  for (int i = 0; i < 8; i++) CHECK_INT_EQ(out[i], want[i]);
  /* 4 -> 2 (down): f = 0.5 and 2.5: the means of each pair */
  const uint8_t row[4] = {10, 20, 30, 41};
  uint8_t half[2];
  nr_image_resize(row, 1, 4, 1, half, 1, 2);
  CHECK_INT_EQ(half[0], 15);
  CHECK_INT_EQ(half[1], 36); /* 35.5 rounds up */
  /* OpenCV rounds as its 8-bit code does, not once: 2 x 2 {20 47 / 98 47} -> 4 x 4, at
   * row 2, column 1: x weights 1536/512 (f 0.25), y weights 512/1536 (f 0.75). Rows:
   * 20 * 1536 + 47 * 512 = 54784 and 98 * 1536 + 47 * 512 = 174592; each is shifted right
   * by 4, times its y weight, shifted right by 16: 26 (26.75) and 255 (255.75); (26 + 255 +
   * 2) >> 2 = 70, where one rounding of the exact 70.625 would give 71. */
  const uint8_t sq[4] = {20, 47, 98, 47};
  uint8_t up[16];
  nr_image_resize(sq, 2, 2, 1, up, 4, 4);
  CHECK_INT_EQ(up[2 * 4 + 1], 70);
  /* Above the first row OpenCV keeps the rows' weights (over two copies of row 0) where it
   * clamps the columns': 2 x 2 {27 221 / 106 8} -> 4 x 5, row 0, column 3: f_x = 0.9 gives
   * weights 205/1843 (rounded on their own), the row 27 * 205 + 221 * 1843 = 412838 >> 4 =
   * 25802; f_y = -0.25 is row -1 at 0.75: weights 512/1536: 201 + 604 (201.58, 604.73
   * truncated), (805 + 2) >> 2 = 201 (weight 2048 on row 0 alone would give 202). */
  const uint8_t sq2[4] = {27, 221, 106, 8};
  uint8_t up2[20];
  nr_image_resize(sq2, 2, 2, 1, up2, 4, 5);
  CHECK_INT_EQ(up2[3], 201);
  /* the same size copies */
  uint8_t same[4];
  nr_image_resize(row, 1, 4, 1, same, 1, 4);
  CHECK(memcmp(same, row, 4) == 0);
}

static void test_png_color_gray_alpha(void) {
  char path[512];
  snprintf(path, sizeof path, "%s/rgb.png", du_tmpdir());
  const uint8_t rgb[2 * 3 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18};
  CHECK(du_write_png(path, 3, 2, PNG_FORMAT_RGB, rgb) == 0);
  nr_error err;
  uint8_t *pix = NULL;
  int h = 0, w = 0;
  CHECK_OK(nr_image_read(path, true, &pix, &h, &w, &err), &err);
  CHECK_INT_EQ(h, 2);
  CHECK_INT_EQ(w, 3);
  for (int i = 0; i < 6; i++) /* B, G, R */
    for (int k = 0; k < 3; k++) CHECK_INT_EQ(pix[i * 3 + k], rgb[i * 3 + 2 - k]);
  free(pix);
  /* a gray file read as color: the value three times; read as gray: itself */
  snprintf(path, sizeof path, "%s/gray.png", du_tmpdir());
  const uint8_t g[4] = {0, 77, 200, 255};
  CHECK(du_write_png(path, 2, 2, PNG_FORMAT_GRAY, g) == 0);
  CHECK_OK(nr_image_read(path, true, &pix, &h, &w, &err), &err);
  for (int i = 0; i < 4; i++)
    for (int k = 0; k < 3; k++) CHECK_INT_EQ(pix[i * 3 + k], g[i]);
  free(pix);
  CHECK_OK(nr_image_read(path, false, &pix, &h, &w, &err), &err);
  for (int i = 0; i < 4; i++) CHECK_INT_EQ(pix[i], g[i]);
  free(pix);
  /* alpha is dropped, not composed: a transparent pixel keeps its color */
  snprintf(path, sizeof path, "%s/rgba.png", du_tmpdir());
  const uint8_t rgba[4] = {200, 100, 50, 0};
  CHECK(du_write_png(path, 1, 1, PNG_FORMAT_RGBA, rgba) == 0);
  CHECK_OK(nr_image_read(path, true, &pix, &h, &w, &err), &err);
  CHECK_INT_EQ(pix[0], 50);
  CHECK_INT_EQ(pix[1], 100);
  CHECK_INT_EQ(pix[2], 200);
  free(pix);
}

/* A 1 x 1 8-bit RGB PNG with no chunk but the image's (no sRGB, gAMA or cHRM). */
static int write_plain_png(const char *path, const uint8_t rgb[3]) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  int rc = -1;
  if (info && !setjmp(png_jmpbuf(png))) {
    png_init_io(png, f);
    png_set_IHDR(png, info, 1, 1, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_row(png, rgb);
    png_write_end(png, NULL);
    rc = 0;
  }
  png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
  fclose(f);
  return rc;
}

/* What OpenCV's imread does and libpng's simplified API would not: a 16-bit sample keeps
 * its high byte (no linear-to-sRGB conversion), a color file read as gray weighs R, G, B by
 * 0.299, 0.587, 0.114 in the stored values unless the file declares sRGB or a gamma (then
 * libpng works in linear light, under OpenCV too). Checked against Debian's OpenCV 4.6
 * imread when written; the values without color-space chunks are worked out by hand. */
static void test_png_as_opencv(void) {
  char path[512];
  nr_error err;
  uint8_t *pix = NULL;
  int h = 0, w = 0;
  /* 16-bit gray 0x1234 and 0xfe01 (written as linear, so with a gAMA of 1.0): 0x12, 0xfe */
  snprintf(path, sizeof path, "%s/gray16.png", du_tmpdir());
  const uint16_t g16[2] = {0x1234, 0xfe01};
  CHECK(du_write_png(path, 2, 1, PNG_FORMAT_LINEAR_Y, (const uint8_t *)g16) == 0);
  CHECK_OK(nr_image_read(path, false, &pix, &h, &w, &err), &err);
  CHECK_INT_EQ(pix[0], 0x12);
  CHECK_INT_EQ(pix[1], 0xfe);
  free(pix);
  /* R 200, G 100, B 50 as gray, in a file without color-space chunks: libpng's 15-bit
   * weights 9798, 19235, 3735: (9798 * 200 + 19235 * 100 + 3735 * 50 + 16384) >> 15 = 124
   * (0.299/0.587/0.114 exactly: 124.2) */
  snprintf(path, sizeof path, "%s/rgb1.png", du_tmpdir());
  const uint8_t rgb[3] = {200, 100, 50};
  CHECK(write_plain_png(path, rgb) == 0);
  CHECK_OK(nr_image_read(path, false, &pix, &h, &w, &err), &err);
  CHECK_INT_EQ(pix[0], 124);
  free(pix);
  /* the same pixel in a file that says sRGB (libpng's simplified writer): libpng then
   * weighs in linear light, as it does under OpenCV: imread gives 137 */
  CHECK(du_write_png(path, 1, 1, PNG_FORMAT_RGB, rgb) == 0);
  CHECK_OK(nr_image_read(path, false, &pix, &h, &w, &err), &err);
  CHECK_INT_EQ(pix[0], 137);
  free(pix);
}

/* Adobe CMYK JPEGs (libjpeg writes the inverted form with an Adobe marker) are converted as
 * OpenCV does: stored C 255, M 128, Y 0, K 200 -> R = 200 - (0 * 200 >> 8) = 200,
 * G = 200 - (127 * 200 >> 8) = 101, B = 200 - (255 * 200 >> 8) = 1; gray (1 * 1868 +
 * 101 * 9617 + 200 * 4899 + 8192) >> 14 = 120. One uniform 8 x 8 block at quality 100
 * comes back within one level. */
static void test_cmyk_jpeg(void) {
  char path[512];
  snprintf(path, sizeof path, "%s/cmyk.jpg", du_tmpdir());
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  if (!f) return;
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr jm;
  c.err = jpeg_std_error(&jm);
  jpeg_create_compress(&c);
  jpeg_stdio_dest(&c, f);
  c.image_width = 8;
  c.image_height = 8;
  c.input_components = 4;
  c.in_color_space = JCS_CMYK;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 100, TRUE);
  jpeg_start_compress(&c, TRUE);
  uint8_t row[8 * 4];
  for (int x = 0; x < 8; x++) memcpy(row + 4 * x, (const uint8_t[4]){255, 128, 0, 200}, 4);
  while (c.next_scanline < 8) {
    JSAMPROW r = row;
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  fclose(f);
  nr_error err;
  uint8_t *pix = NULL;
  int h = 0, w = 0;
  CHECK_OK(nr_image_read(path, true, &pix, &h, &w, &err), &err);
  if (pix) {
    CHECK(abs(pix[0] - 1) <= 1 && abs(pix[1] - 101) <= 1 && abs(pix[2] - 200) <= 1);
    CHECK(memcmp(pix, pix + 3 * 63, 3) == 0);
  }
  free(pix);
  pix = NULL;
  CHECK_OK(nr_image_read(path, false, &pix, &h, &w, &err), &err);
  if (pix) CHECK(abs(pix[0] - 120) <= 1);
  free(pix);
}

static void expect_error(const char *path, const char *want) {
  nr_error err;
  uint8_t *pix = (uint8_t *)1;
  int h, w;
  CHECK(nr_image_read(path, true, &pix, &h, &w, &err) != NR_OK);
  CHECK(pix == NULL);
  CHECK_CONTAINS(err.msg, want);
  CHECK_CONTAINS(err.msg, path);
}

static void put_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  if (!f) return;
  CHECK(fwrite(data, 1, n, f) == n);
  fclose(f);
}

static void test_errors(void) {
  char path[512];
  snprintf(path, sizeof path, "%s/none.png", du_tmpdir());
  expect_error(path, "cannot open image");
  snprintf(path, sizeof path, "%s/empty.png", du_tmpdir());
  put_file(path, "", 0);
  expect_error(path, "neither a JPEG nor a PNG (the file is empty)");
  snprintf(path, sizeof path, "%s/text.jpg", du_tmpdir());
  put_file(path, "hello, world\n", 13);
  expect_error(path, "neither a JPEG nor a PNG");
  /* a PNG cut after its header, a JPEG start marker and garbage */
  char src[512];
  snprintf(src, sizeof src, "%s/full.png", du_tmpdir());
  uint8_t px[64 * 64 * 3];
  for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 7);
  CHECK(du_write_png(src, 64, 64, PNG_FORMAT_RGB, px) == 0);
  FILE *f = fopen(src, "rb");
  uint8_t buf[100];
  CHECK(f && fread(buf, 1, sizeof buf, f) == sizeof buf);
  if (f) fclose(f);
  snprintf(path, sizeof path, "%s/cut.png", du_tmpdir());
  put_file(path, buf, sizeof buf);
  expect_error(path, "is not a readable PNG");
  const uint8_t jpg[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0, 1, 2, 3};
  snprintf(path, sizeof path, "%s/cut.jpg", du_tmpdir());
  put_file(path, jpg, sizeof jpg);
  expect_error(path, "is not a readable JPEG");
}

int main(void) {
  NR_RUN(test_resize_by_hand);
  NR_RUN(test_png_color_gray_alpha);
  NR_RUN(test_png_as_opencv);
  NR_RUN(test_cmyk_jpeg);
  NR_RUN(test_errors);
  du_cleanup();
  return NR_TEST_EXIT();
}
