/* image_io.h: reading images for the ImageData layer, as Caffe reads them with OpenCV
 * (ReadImageToCVMat: cv::imread, then cv::resize with INTER_LINEAR).
 *
 * JPEG through libjpeg-turbo, PNG through libpng (the format is told by the file's first
 * bytes, not its name). Pixels come out 8-bit, rows top to bottom, channels interleaved in
 * OpenCV's order: B, G, R for color, one channel for gray. Both decoders are driven with
 * the settings OpenCV's imread uses (its grfmt_jpeg and grfmt_png), so that the bytes are
 * imread's: JPEG with libjpeg's default IDCT and upsampling, gray files read as color
 * replicated, color read as gray by libjpeg (Y); CMYK/YCCK JPEGs converted as OpenCV's
 * icvCvt_CMYK2BGR; PNG 16-bit samples cut to their high byte, alpha and tRNS stripped (not
 * composed), palettes and 1/2/4-bit gray expanded, no gamma correction, color read as gray
 * by libpng with weights 0.299/0.587/0.114 (in linear light when the file declares sRGB or
 * a gamma, as libpng does under OpenCV too). Compared with Debian 12's OpenCV 4.6 imread on
 * JPEG (baseline, progressive, 4:4:4, gray, CMYK) and PNG (RGB, RGBA, gray, gray+alpha,
 * palette, palette+tRNS, 1-bit, 16-bit gray and RGB, gAMA, sRGB), color and gray: equal.
 */
#ifndef NR_IMAGE_IO_H
#define NR_IMAGE_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "nr_status.h"

/* Decodes the file at path; *pix (malloc'ed, h x w x (color ? 3 : 1) bytes) on success.
 * Errors (NR_ERR_IO / NR_ERR_INPUT) name the file: cannot open, not a JPEG or PNG, corrupt
 * or truncated, too big (over 2^28 pixels). */
nr_status nr_image_read(const char *path, bool color, uint8_t **pix, int *h, int *w,
                        nr_error *err);

/* Resizes h x w x c interleaved bytes to nh x nw x c (dst, caller's buffer) by bilinear
 * interpolation bit for bit as OpenCV's cv::resize(INTER_LINEAR) computes it for 8-bit
 * images: pixel centres aligned ((d + 0.5) * scale - 0.5, in float), edges clamped, weights
 * in 11-bit fixed point each rounded on its own, and the vertical pass's truncations
 * (((b0 * (r0 >> 4)) >> 16) + ((b1 * (r1 >> 4)) >> 16) + 2) >> 2. Compared with Debian 12's
 * OpenCV 4.6 on 5000 random sizes and images (92 M pixels, up, down, exactly half, 1-pixel
 * sources): no pixel differs; tests/data/test_resize_opencv.cpp keeps checking it where
 * OpenCV is installed. nh == h and nw == w copies. */
void nr_image_resize(const uint8_t *src, int h, int w, int c, uint8_t *dst, int nh, int nw);

#endif
