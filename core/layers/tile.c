/* Tile: repeats the bottom tile_param.tiles times (required, > 0) along tile_param.axis
 * (default 1): top shape = bottom shape with that axis multiplied by tiles. Seen as
 * (outer, inner) with inner = count from the axis on, each outer block of the bottom is
 * copied `tiles` times in a row. Backward: each bottom block gets the sum of its copies'
 * diffs. */
#include <stdlib.h>

#include "layer.h"
#include "nr_math.h"

static const Caffe__TileParameter tile_default = CAFFE__TILE_PARAMETER__INIT;

typedef struct tile_priv {
  int64_t outer, inner, tiles;
} tile_priv;

static nr_status tile_reshape(nr_layer *l, nr_error *err) {
  const Caffe__TileParameter *p = l->param->tile_param ? l->param->tile_param : &tile_default;
  const nr_blob *b = l->bottom[0];
  if (!p->has_tiles) return nr_err_set(err, NR_ERR_INPUT, "tile_param.tiles must be given");
  if (p->tiles <= 0)
    return nr_err_set(err, NR_ERR_INPUT, "tile_param.tiles must be > 0, got %d", (int)p->tiles);
  const int axis = nr_blob_axis(b, p->axis);
  if (axis < 0)
    return nr_err_set(err, NR_ERR_INPUT,
                      "tile_param.axis %d out of range for a bottom with %d axes", (int)p->axis,
                      b->num_axes);
  int64_t dims[NR_MAX_AXES];
  for (int i = 0; i < b->num_axes; i++) dims[i] = b->shape[i];
  dims[axis] *= p->tiles;
  tile_priv *q = l->priv;
  q->outer = nr_blob_count_range(b, 0, axis);
  q->inner = nr_blob_count_range(b, axis, b->num_axes);
  q->tiles = p->tiles;
  return nr_blob_reshape(l->top[0], b->num_axes, dims, err);
}

static nr_status tile_forward(nr_layer *l, nr_error *err) {
  const tile_priv *q = l->priv;
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data;
  for (int64_t o = 0; o < q->outer; o++)
    for (int64_t t = 0; t < q->tiles; t++)
      nr_copy(q->inner, x + o * q->inner, y + (o * q->tiles + t) * q->inner);
  return NR_OK;
}

static nr_status tile_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  const tile_priv *q = l->priv;
  const float *dy = l->top[0]->diff;
  float *dx = l->bottom[0]->diff;
  for (int64_t o = 0; o < q->outer; o++) {
    float *d = dx + o * q->inner;
    nr_copy(q->inner, dy + o * q->tiles * q->inner, d);
    for (int64_t t = 1; t < q->tiles; t++)
      nr_axpy(q->inner, 1.0f, dy + (o * q->tiles + t) * q->inner, d);
  }
  return NR_OK;
}

static nr_status tile_setup(nr_layer *l, nr_error *err) {
  if (!(l->priv = calloc(1, sizeof(tile_priv))))
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  return NR_OK;
}

static void tile_destroy(nr_layer *l) { free(l->priv); }

const nr_layer_type nr_layer_tile = {
    .name = "Tile", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = tile_setup, .reshape = tile_reshape, .forward = tile_forward,
    .backward = tile_backward, .destroy = tile_destroy};
