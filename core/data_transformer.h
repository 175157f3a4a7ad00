/* data_transformer.h: Caffe's DataTransformer for raw Datum records.
 *
 * From a TransformationParameter, each C x H x W input (uint8 bytes or floats) becomes a
 * C x crop x crop (or C x H x W) float output:
 *   out = (in - mean) * scale
 * where mean is the mean_file BlobProto (per element, of the uncropped input), or the
 * mean_value list (one value for all channels, or one per channel), or 0. With crop_size,
 * TRAIN takes a random crop and TEST the center one ((H - crop) / 2, rounded down). With
 * mirror, each item is flipped left-right with probability 1/2 — in both phases, as Caffe
 * does (put mirror only in the TRAIN layer's transform_param to mirror only when training).
 * Random draws per item, in Caffe's order: mirror coin, then the crop's row, then column.
 *
 * Ownership: nr_transformer_create returns a new transformer (it owns the loaded mean);
 * free with nr_transformer_destroy. The parameter is not kept. Not thread safe; the rng is
 * the caller's.
 */
#ifndef NR_DATA_TRANSFORMER_H
#define NR_DATA_TRANSFORMER_H

#include <stdbool.h>
#include <stdint.h>

#include "caffe.pb-c.h"
#include "nr_status.h"
#include "rng.h"

typedef struct nr_transformer nr_transformer;

/* p may be NULL (no transformation). Loads mean_file if given. Errors: NR_ERR_INPUT for
 * mean_file together with mean_value ("give one"), an unreadable or malformed mean file
 * (naming the path). */
nr_status nr_transformer_create(const Caffe__TransformationParameter *p, int phase,
                                nr_transformer **out, nr_error *err);
void nr_transformer_destroy(nr_transformer *t);

/* Fixes the input shape (channels, height, width) and gives the output shape in out[3].
 * Errors: NR_ERR_INPUT when crop_size exceeds height or width, when the mean file's shape
 * differs from the input's, when mean_value has neither 1 nor `channels` values. */
nr_status nr_transformer_set_input(nr_transformer *t, int channels, int height, int width,
                                   int64_t out[3], nr_error *err);

/* Transforms one item of the shape given to set_input: exactly one of u8 / f32 is non-NULL
 * (C*H*W values). Writes the output (count out[0]*out[1]*out[2]) to dst. rng is needed only
 * when nr_transformer_needs_rng() says so. */
void nr_transformer_apply(const nr_transformer *t, const uint8_t *u8, const float *f32,
                          nr_rng *rng, float *dst);
bool nr_transformer_needs_rng(const nr_transformer *t);

/* The parameter's settings for a layer that crops and warps by itself (WindowData): scale,
 * mirror, crop size, and the mean: mean_file values (mean_c x mean_h x mean_w, the last
 * three axes of the file's blob; NULL without a file) or mean_value (nmean_values: 0, 1 or
 * one per channel). Borrowed from t. */
typedef struct nr_transform_info {
  float scale;
  bool mirror;
  int crop;
  const float *mean;
  int64_t mean_c, mean_h, mean_w;
  const float *mean_values;
  int nmean_values;
} nr_transform_info;
void nr_transformer_info(const nr_transformer *t, nr_transform_info *out);

#endif
