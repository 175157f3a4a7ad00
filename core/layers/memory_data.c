/* MemoryData: batches from arrays the caller hands over (Caffe's MemoryDataLayer; pycaffe's
 * Net.set_input_arrays feeds it). Tops: data (batch_size x channels x height x width) and
 * labels (batch_size). Each forward copies the next batch_size items into the tops and
 * moves on, wrapping around at n; the arrays are borrowed (the caller keeps them alive, as
 * Caffe's pycaffe keeps them referenced). As Caffe, arrays are used as given: a
 * transform_param draws a warning when arrays are handed over, and is not applied. A forward
 * before any arrays is an error saying how to give them. */
#include <stdlib.h>
#include <string.h>

#include "memory_data.h"

typedef struct memdata {
  int64_t batch, channels, height, width, size; /* size = channels * height * width */
  const float *data, *labels;                   /* borrowed; NULL until a reset */
  int64_t n, pos;
} memdata;

static const Caffe__MemoryDataParameter mem_default = CAFFE__MEMORY_DATA_PARAMETER__INIT;

static nr_status mem_setup(nr_layer *l, nr_error *err) {
  const Caffe__MemoryDataParameter *p =
      l->param->memory_data_param ? l->param->memory_data_param : &mem_default;
  if (p->batch_size == 0 || p->channels == 0 || p->height == 0 || p->width == 0)
    return nr_err_set(err, NR_ERR_INPUT,
                      "batch_size, channels, height, and width must be specified and positive "
                      "in memory_data_param (got %u, %u, %u, %u)",
                      p->batch_size, p->channels, p->height, p->width);
  memdata *m = calloc(1, sizeof *m);
  if (!m) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = m;
  *m = (memdata){p->batch_size, p->channels, p->height, p->width,
                 (int64_t)p->channels * p->height * p->width, NULL, NULL, 0, 0};
  NR_TRY(nr_blob_reshape4(l->top[0], m->batch, m->channels, m->height, m->width, err));
  return nr_blob_reshape(l->top[1], 1, &m->batch, err);
}

static nr_status mem_forward(nr_layer *l, nr_error *err) {
  memdata *m = l->priv;
  if (!m->data)
    return nr_err_set(err, NR_ERR_INPUT,
                      "MemoryData has no arrays: hand them over first (pycaffe: "
                      "net.set_input_arrays(data, labels); C: nr_net_set_input_arrays)");
  NR_TRY(nr_blob_reshape4(l->top[0], m->batch, m->channels, m->height, m->width, err));
  NR_TRY(nr_blob_reshape(l->top[1], 1, &m->batch, err));
  memcpy(l->top[0]->data, m->data + m->pos * m->size, (size_t)(m->batch * m->size) * sizeof(float));
  memcpy(l->top[1]->data, m->labels + m->pos, (size_t)m->batch * sizeof(float));
  m->pos = (m->pos + m->batch) % m->n;
  return NR_OK;
}

static void mem_destroy(nr_layer *l) {
  free(l->priv);
  l->priv = NULL;
}

const nr_layer_type nr_layer_memory_data = {
    .name = "MemoryData", .min_bottoms = 0, .max_bottoms = 0, .min_tops = 2, .max_tops = 2,
    .setup = mem_setup, .forward = mem_forward, .destroy = mem_destroy};

bool nr_memory_data_is(const nr_layer *l) { return l->type == &nr_layer_memory_data; }

void nr_memory_data_dims(const nr_layer *l, int64_t dims[4]) {
  const memdata *m = l->priv;
  dims[0] = m->batch, dims[1] = m->channels, dims[2] = m->height, dims[3] = m->width;
}

nr_status nr_memory_data_reset(nr_layer *l, const float *data, const float *labels, int64_t n,
                               nr_error *err) {
  memdata *m = l->priv;
  if (!data || !labels)
    return nr_err_set(err, NR_ERR_INPUT, "MemoryData '%s': no %s array", l->name,
                      data ? "labels" : "data");
  if (n <= 0 || n % m->batch != 0)
    return nr_err_set(err, NR_ERR_INPUT,
                      "MemoryData '%s': %lld items is not a multiple of batch_size %lld "
                      "(n must be a multiple of batch size)",
                      l->name, (long long)n, (long long)m->batch);
  if (l->param->transform_param && l->ctx && l->ctx->log)
    fprintf(l->ctx->log, "Warning: MemoryData '%s' does not transform array data "
            "(transform_param is ignored for arrays)\n", l->name);
  m->data = data;
  m->labels = labels;
  m->n = n;
  m->pos = 0;
  return NR_OK;
}
