/* ImageData: batches of images named in a list file (Caffe's ImageDataLayer), decoded with
 * core/image_io.h, transformed by transform_param, computed ahead by a prefetch thread
 * (core/prefetch.h).
 *
 * image_data_param: source (the list: one "path label" per line; the path is everything
 * before the line's last space, so it may hold spaces), root_folder (put before every
 * path), batch_size, shuffle (the list is shuffled at setup and again at each pass's end),
 * rand_skip (skip a random number in [0, rand_skip) of lines at the start), new_height and
 * new_width (both or neither: every image is resized to them, bilinear as OpenCV's
 * INTER_LINEAR), is_color (default true: 3 channels, B G R; false: 1). Tops: data (batch x
 * C x H x W, or the crop size), and label (batch) when there are two.
 *
 * Decisions where Caffe is silent or differs:
 * - Caffe sizes each batch from its first image; netrun fixes the shape from the list's
 *   first image at setup, and an image of another size (without new_height/new_width) is an
 *   error naming the file and both sizes (Caffe would fail its transformer's CHECK).
 * - A line without a label (no space) is an error naming the list and the line number, as
 *   is an empty list ("File is empty" in Caffe), a label that is not an integer, and an image
 *   that cannot be read (Caffe: "Could not load <file>").
 * - The shuffle draws from the layer's own rng, seeded from the net's (as the Data layer's
 *   crops): the same seed gives the same order, not Caffe's order.
 * - Data-parallel training (mpirun -np K): rank r takes items r, r + K, ... of the list's
 *   order, as the Data layer does, so the ranks together read each image once per pass.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_transformer.h"
#include "image_io.h"
#include "layer.h"
#include "prefetch.h"

typedef struct item {
  char *path; /* root_folder + the list's path */
  int label;
} item;

typedef struct image_priv {
  item *items;
  size_t nitems, cur;
  nr_transformer *tf;
  nr_rng rng;
  FILE *log;
  const char *source;
  int batch_size, new_h, new_w;
  bool color, shuffle, has_label;
  int c, h, w;       /* image shape after the resize */
  int64_t out[3];    /* one transformed item */
  size_t item_out;
  int stride;
  uint8_t *hwc, *chw; /* one image, interleaved and planar: the prefetch thread's */
  nr_prefetch *ring;
} image_priv;

static const Caffe__ImageDataParameter image_default = CAFFE__IMAGE_DATA_PARAMETER__INIT;

static void shuffle_items(image_priv *p) {
  for (size_t i = p->nitems; i > 1; i--) {
    size_t j = (size_t)nr_rng_below(&p->rng, i);
    item t = p->items[i - 1];
    p->items[i - 1] = p->items[j];
    p->items[j] = t;
  }
}

/* Reads the list file into p->items. */
static nr_status read_list(image_priv *p, const char *source, const char *root,
                           nr_error *err) {
  FILE *f = fopen(source, "r");
  if (!f)
    return nr_err_set(err, NR_ERR_IO, "cannot open the image list '%s': %s", source,
                      strerror(errno));
  char *line = NULL;
  size_t cap = 0, alloc = 0;
  long lineno = 0;
  nr_status s = NR_OK;
  for (ssize_t n; (n = getline(&line, &cap, f)) >= 0;) {
    lineno++;
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    if (n == 0) continue;
    char *sp = strrchr(line, ' ');
    char *end = NULL;
    long label = sp ? strtol(sp + 1, &end, 10) : 0;
    if (!sp || sp == line || end == sp + 1 || *end) {
      s = nr_err_set(err, NR_ERR_INPUT,
                     "image list '%s' line %ld: expected \"<image path> <integer label>\", got "
                     "\"%.200s\"", source, lineno, line);
      break;
    }
    *sp = '\0';
    if (p->nitems == alloc) {
      size_t na = alloc ? 2 * alloc : 64;
      item *ni = realloc(p->items, na * sizeof *ni);
      if (!ni) {
        s = nr_err_set(err, NR_ERR_NOMEM, "out of memory");
        break;
      }
      p->items = ni;
      alloc = na;
    }
    size_t len = strlen(root) + strlen(line) + 1;
    char *path = malloc(len);
    if (!path) {
      s = nr_err_set(err, NR_ERR_NOMEM, "out of memory");
      break;
    }
    snprintf(path, len, "%s%s", root, line);
    p->items[p->nitems++] = (item){path, (int)label};
  }
  free(line);
  fclose(f);
  if (s == NR_OK && p->nitems == 0)
    s = nr_err_set(err, NR_ERR_INPUT, "image list '%s' is empty", source);
  return s;
}

/* Reads an image, resized, into p->hwc (h x w x c bytes, interleaved). */
static nr_status load_image(image_priv *p, const item *it, nr_error *err) {
  uint8_t *pix = NULL;
  int ih, iw;
  NR_TRY(nr_image_read(it->path, p->color, &pix, &ih, &iw, err));
  if (p->new_h) {
    nr_image_resize(pix, ih, iw, p->c, p->hwc, p->new_h, p->new_w);
  } else if (ih != p->h || iw != p->w) {
    free(pix);
    return nr_err_set(err, NR_ERR_INPUT,
                      "image '%s' is %dx%d, but the list's first image is %dx%d: give "
                      "image_data_param new_height and new_width to resize them all",
                      it->path, ih, iw, p->h, p->w);
  } else {
    memcpy(p->hwc, pix, (size_t)ih * iw * p->c);
  }
  free(pix);
  return NR_OK;
}

/* One batch, on the prefetch thread. */
static nr_status fill_batch(void *ctx, float *data, float *label, nr_error *err) {
  image_priv *p = ctx;
  const size_t hw = (size_t)p->h * p->w;
  for (int i = 0; i < p->batch_size; i++) {
    const item *it = &p->items[p->cur];
    NR_TRY(load_image(p, it, err));
    for (int c = 0; c < p->c; c++) /* HWC -> CHW */
      for (size_t k = 0; k < hw; k++) p->chw[c * hw + k] = p->hwc[k * p->c + c];
    nr_transformer_apply(p->tf, p->chw, NULL, &p->rng, data + (size_t)i * p->item_out);
    if (label) label[i] = (float)it->label;
    for (int k = 0; k < p->stride; k++)
      if (++p->cur == p->nitems) {
        p->cur = 0;
        fprintf(p->log, "Restarting data prefetching from start.\n");
        if (p->shuffle) shuffle_items(p);
      }
  }
  return NR_OK;
}

static void image_destroy(nr_layer *l) {
  image_priv *p = l->priv;
  if (!p) return;
  nr_prefetch_stop(p->ring);
  for (size_t i = 0; i < p->nitems; i++) free(p->items[i].path);
  free(p->items);
  free(p->hwc);
  free(p->chw);
  nr_transformer_destroy(p->tf);
  free(p);
  l->priv = NULL;
}

static nr_status image_setup(nr_layer *l, nr_error *err) {
  const Caffe__ImageDataParameter *ip =
      l->param->image_data_param ? l->param->image_data_param : &image_default;
  if (!ip->source || !*ip->source)
    return nr_err_set(err, NR_ERR_INPUT, "image_data_param.source is not set (the image list)");
  if (ip->batch_size == 0 || ip->batch_size > (1u << 24))
    return nr_err_set(err, NR_ERR_INPUT, "image_data_param.batch_size %u: give 1 to 2^24",
                      ip->batch_size);
  if ((ip->new_height == 0) != (ip->new_width == 0))
    return nr_err_set(err, NR_ERR_INPUT,
                      "image_data_param: give both new_height and new_width, or neither");
  if (ip->new_height > 65536 || ip->new_width > 65536)
    return nr_err_set(err, NR_ERR_INPUT, "image_data_param: new size %ux%u is absurd",
                      ip->new_height, ip->new_width);
  image_priv *p = calloc(1, sizeof *p);
  if (!p) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = p;
  p->log = l->ctx && l->ctx->log ? l->ctx->log : stderr;
  p->source = ip->source;
  p->batch_size = (int)ip->batch_size;
  p->new_h = (int)ip->new_height;
  p->new_w = (int)ip->new_width;
  p->color = ip->is_color;
  p->shuffle = ip->shuffle;
  p->has_label = l->ntop > 1;
  nr_layer_seed_own_rng(l, &p->rng);
  NR_TRY(nr_transformer_create(l->param->transform_param, l->phase, &p->tf, err));
  NR_TRY(read_list(p, ip->source, ip->root_folder ? ip->root_folder : "", err));
  if (p->shuffle) {
    fprintf(p->log, "Shuffling data\n");
    shuffle_items(p);
  }
  fprintf(p->log, "A total of %zu images.\n", p->nitems);
  if (ip->rand_skip) {
    size_t skip = (size_t)nr_rng_below(&p->rng, ip->rand_skip);
    fprintf(p->log, "Skipping first %zu data points.\n", skip);
    if (skip >= p->nitems)
      return nr_err_set(err, NR_ERR_INPUT,
                        "image_data_param.rand_skip drew %zu, but the list '%s' has %zu images",
                        skip, ip->source, p->nitems);
    p->cur = skip;
  }
  p->stride = 1;
  if (l->ctx && l->ctx->solver_count > 1) {
    p->stride = l->ctx->solver_count;
    p->cur = (p->cur + (size_t)l->ctx->solver_rank) % p->nitems;
  }
  /* the first image fixes the shape (and must be readable: Caffe's check at setup) */
  p->c = p->color ? 3 : 1;
  {
    uint8_t *pix = NULL;
    NR_TRY(nr_image_read(p->items[p->cur].path, p->color, &pix, &p->h, &p->w, err));
    free(pix);
  }
  if (p->new_h) {
    p->h = p->new_h;
    p->w = p->new_w;
  }
  const int h = p->h, w = p->w;
  const size_t bytes = (size_t)p->c * h * w;
  p->hwc = malloc(bytes);
  p->chw = malloc(bytes);
  if (!p->hwc || !p->chw) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  nr_status s = nr_transformer_set_input(p->tf, p->c, h, w, p->out, err);
  if (s != NR_OK) return nr_err_prefix(err, "image '%s'", p->items[p->cur].path);
  p->item_out = (size_t)(p->out[0] * p->out[1] * p->out[2]);
  NR_TRY(nr_layer_reshape_data_tops(l, p->batch_size, p->out[0], p->out[1], p->out[2], err));
  fprintf(p->log, "output data size: %d,%lld,%lld,%lld\n", p->batch_size,
          (long long)p->out[0], (long long)p->out[1], (long long)p->out[2]);
  return nr_prefetch_start(4, (size_t)p->batch_size * p->item_out,
                           p->has_label ? (size_t)p->batch_size : 0, fill_batch, p, p->log,
                           &p->ring, err);
}

static nr_status image_reshape(nr_layer *l, nr_error *err) {
  const image_priv *p = l->priv;
  return nr_layer_reshape_data_tops(l, p->batch_size, p->out[0], p->out[1], p->out[2], err);
}

static nr_status image_forward(nr_layer *l, nr_error *err) {
  image_priv *p = l->priv;
  nr_status s = nr_prefetch_take(p->ring, l->top[0]->data,
                                 p->has_label ? l->top[1]->data : NULL, err);
  if (s != NR_OK) return nr_err_prefix(err, "image list '%s'", p->source);
  return NR_OK;
}

const nr_layer_type nr_layer_image_data = {
    .name = "ImageData", .min_bottoms = 0, .max_bottoms = 0, .min_tops = 1, .max_tops = 2,
    .setup = image_setup, .reshape = image_reshape, .forward = image_forward,
    .destroy = image_destroy};
