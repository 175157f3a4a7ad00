/* data_transformer.c: scale, mean, mirror and crop of one Datum (see data_transformer.h). */
#include "data_transformer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binary.h"
#include "layer.h"

struct nr_transformer {
  float scale;
  bool mirror;
  int crop;
  int phase;
  char *mean_file;   /* owned copy of the path, for messages */
  float *mean;       /* mean_file values, owned */
  int64_t mean_dims[NR_BLOB_MAX_AXES];
  int mean_naxes;
  size_t mean_count;
  float *mean_values; /* one per channel after set_input, owned */
  int nmean_values;
  int c, h, w; /* input shape, from set_input */
};

void nr_transformer_destroy(nr_transformer *t) {
  if (!t) return;
  free(t->mean_file);
  free(t->mean);
  free(t->mean_values);
  free(t);
}

nr_status nr_transformer_create(const Caffe__TransformationParameter *p, int phase,
                                nr_transformer **out, nr_error *err) {
  static const Caffe__TransformationParameter defaults = CAFFE__TRANSFORMATION_PARAMETER__INIT;
  if (!p) p = &defaults;
  nr_status s = NR_OK;
  Caffe__BlobProto *bp = NULL;
  nr_transformer *t = calloc(1, sizeof *t);
  if (!t) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  t->scale = p->has_scale ? p->scale : 1.0f;
  t->mirror = p->mirror;
  t->crop = (int)p->crop_size;
  t->phase = phase;
  if (p->crop_size > 1u << 20) {
    s = nr_err_set(err, NR_ERR_INPUT, "transform_param.crop_size %u is absurd", p->crop_size);
    goto fail;
  }
  if (p->mean_file && p->n_mean_value) {
    s = nr_err_set(err, NR_ERR_INPUT,
                   "transform_param has both mean_file and mean_value: give one");
    goto fail;
  }
  if (p->n_mean_value) {
    t->nmean_values = (int)p->n_mean_value;
    t->mean_values = malloc(p->n_mean_value * sizeof *t->mean_values);
    if (!t->mean_values) {
      s = nr_err_set(err, NR_ERR_NOMEM, "out of memory");
      goto fail;
    }
    memcpy(t->mean_values, p->mean_value, p->n_mean_value * sizeof *t->mean_values);
  }
  if (p->mean_file) {
    if (!(t->mean_file = strdup(p->mean_file))) {
      s = nr_err_set(err, NR_ERR_NOMEM, "out of memory");
      goto fail;
    }
    s = nr_proto_load_binary(p->mean_file, &caffe__blob_proto__descriptor,
                             (ProtobufCMessage **)&bp, err);
    if (s == NR_OK) s = nr_blobproto_shape(bp, t->mean_dims, &t->mean_naxes, err);
    if (s == NR_OK) {
      t->mean_count = 1;
      for (int i = 0; i < t->mean_naxes; i++) t->mean_count *= (size_t)t->mean_dims[i];
      t->mean = malloc((t->mean_count ? t->mean_count : 1) * sizeof *t->mean);
      if (!t->mean) s = nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    }
    if (s == NR_OK) s = nr_blobproto_get_floats(bp, 0, t->mean, t->mean_count, err);
    if (s != NR_OK) {
      nr_err_prefix(err, "transform_param.mean_file '%s'", p->mean_file);
      goto fail;
    }
  }
  if (bp) protobuf_c_message_free_unpacked(&bp->base, NULL);
  *out = t;
  return NR_OK;
fail:
  if (bp) protobuf_c_message_free_unpacked(&bp->base, NULL);
  nr_transformer_destroy(t);
  return s;
}

nr_status nr_transformer_set_input(nr_transformer *t, int channels, int height, int width,
                                   int64_t out[3], nr_error *err) {
  if (t->crop && (t->crop > height || t->crop > width))
    return nr_err_set(err, NR_ERR_INPUT,
                      "transform_param.crop_size %d is larger than the data (%dx%d)", t->crop,
                      height, width);
  if (t->mean) {
    /* The mean is 1 x C x H x W (legacy) or C x H x W: leading axes must be 1. */
    bool ok = t->mean_naxes >= 3;
    for (int i = 0; ok && i < t->mean_naxes - 3; i++) ok = t->mean_dims[i] == 1;
    const int64_t *d = t->mean_dims + t->mean_naxes - 3;
    ok = ok && d[0] == channels && d[1] == height && d[2] == width;
    if (!ok) {
      char shape[128] = "";
      size_t o = 0;
      for (int i = 0; i < t->mean_naxes && o < sizeof shape; i++)
        o += (size_t)snprintf(shape + o, sizeof shape - o, "%s%lld", i ? "x" : "",
                              (long long)t->mean_dims[i]);
      return nr_err_set(err, NR_ERR_INPUT,
                        "transform_param.mean_file '%s' has shape %s, but the data is %dx%dx%d",
                        t->mean_file, t->mean_naxes ? shape : "(scalar)", channels, height,
                        width);
    }
  }
  if (t->nmean_values) {
    if (t->nmean_values != 1 && t->nmean_values != channels)
      return nr_err_set(err, NR_ERR_INPUT,
                        "transform_param.mean_value has %d values for %d channels: give one, "
                        "or one per channel",
                        t->nmean_values, channels);
    if (t->nmean_values == 1 && channels > 1) {
      float *v = realloc(t->mean_values, (size_t)channels * sizeof *v);
      if (!v) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
      for (int c = 1; c < channels; c++) v[c] = v[0];
      t->mean_values = v;
      t->nmean_values = channels;
    }
  }
  t->c = channels;
  t->h = height;
  t->w = width;
  out[0] = channels;
  out[1] = t->crop ? t->crop : height;
  out[2] = t->crop ? t->crop : width;
  return NR_OK;
}

void nr_transformer_info(const nr_transformer *t, nr_transform_info *out) {
  *out = (nr_transform_info){t->scale, t->mirror, t->crop, t->mean, 1, 1, 1, t->mean_values,
                             t->nmean_values};
  if (t->mean) {
    int64_t *d[3] = {&out->mean_w, &out->mean_h, &out->mean_c};
    for (int i = 0; i < 3 && i < t->mean_naxes; i++) *d[i] = t->mean_dims[t->mean_naxes - 1 - i];
  }
}

bool nr_transformer_needs_rng(const nr_transformer *t) {
  return t->mirror || (t->crop && t->phase == NR_TRAIN);
}

void nr_transformer_apply(const nr_transformer *t, const uint8_t *u8, const float *f32,
                          nr_rng *rng, float *dst) {
  const int oh = t->crop ? t->crop : t->h, ow = t->crop ? t->crop : t->w;
  const bool flip = t->mirror && nr_rng_below(rng, 2);
  int h_off = 0, w_off = 0;
  if (t->crop) {
    if (t->phase == NR_TRAIN) {
      h_off = (int)nr_rng_below(rng, (uint64_t)(t->h - t->crop + 1));
      w_off = (int)nr_rng_below(rng, (uint64_t)(t->w - t->crop + 1));
    } else {
      h_off = (t->h - t->crop) / 2;
      w_off = (t->w - t->crop) / 2;
    }
  }
  const float scale = t->scale;
  for (int c = 0; c < t->c; c++) {
    const float mv = t->nmean_values ? t->mean_values[c] : 0.0f;
    for (int y = 0; y < oh; y++) {
      const size_t src_row = ((size_t)c * t->h + h_off + y) * t->w + w_off;
      float *out = dst + ((size_t)c * oh + y) * ow;
      for (int x = 0; x < ow; x++) {
        const size_t si = src_row + x;
        float v = u8 ? (float)u8[si] : f32[si];
        v = t->mean ? (v - t->mean[si]) * scale : (v - mv) * scale;
        out[flip ? ow - 1 - x : x] = v;
      }
    }
  }
}
