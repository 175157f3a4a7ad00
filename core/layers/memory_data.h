/* memory_data.h: handing arrays to a MemoryData layer (Caffe's MemoryDataLayer::Reset).
 * The net's entry point is nr_net_set_input_arrays (net.h); this is the layer's half. */
#ifndef NR_MEMORY_DATA_H
#define NR_MEMORY_DATA_H

#include <stdint.h>

#include "layer.h"

/* True when l is a MemoryData layer. */
bool nr_memory_data_is(const nr_layer *l);
/* Makes l serve data (n x C x H x W floats) and labels (n floats), borrowed, batch_size
 * items per forward from the first, wrapping around. n must be a positive multiple of the
 * layer's batch_size. Error: NR_ERR_INPUT naming the sizes (the layer is unchanged). */
nr_status nr_memory_data_reset(nr_layer *l, const float *data, const float *labels, int64_t n,
                               nr_error *err);
/* The layer's batch_size, channels, height, width. */
void nr_memory_data_dims(const nr_layer *l, int64_t dims[4]);

#endif
