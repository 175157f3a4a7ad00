/* Silence: consumes bottoms so they are not reported as net outputs; no tops. Backward
 * zeroes the bottom diffs (as Caffe). */
#include "layer.h"
#include "nr_math.h"

static nr_status silence_forward(nr_layer *l, nr_error *err) { return NR_OK; }

static nr_status silence_backward(nr_layer *l, nr_error *err) {
  for (int i = 0; i < l->nbottom; i++)
    if (l->prop_down[i]) nr_set(l->bottom[i]->count, 0.0f, l->bottom[i]->diff);
  return NR_OK;
}

const nr_layer_type nr_layer_silence = {
    .name = "Silence", .min_bottoms = 1, .max_bottoms = -1, .min_tops = 0, .max_tops = 0,
    .forward = silence_forward, .backward = silence_backward};
