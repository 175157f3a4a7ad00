/* WindowData: batches of windows cut out of images and warped to a square (Caffe's
 * WindowDataLayer, the R-CNN fine-tuning layer), prefetched by core/prefetch.
 *
 * window_data_param: source (the window file), root_folder, batch_size, fg_threshold (0.5),
 * bg_threshold (0.5), fg_fraction (0.25), context_pad (0), crop_mode ("warp" or "square"),
 * cache_images. transform_param: crop_size (required: the output is crop x crop), mirror,
 * scale, mean_file (square, at least crop x crop: its centre crop_size window is used) or
 * mean_value. The window file, per image:
 *     # <image index>
 *     <image path>
 *     <channels> <height> <width>
 *     <number of windows>
 *     <class> <overlap> <x1> <y1> <x2> <y2>      (one line per window, inclusive corners)
 * A window whose overlap is at least fg_threshold is a foreground window of its class (which
 * must be > 0); one below bg_threshold is background, class 0; others are unused.
 *
 * Each batch, as Caffe: batch_size - floor(batch_size * fg_fraction) background windows,
 * then the foreground ones, each drawn uniformly from its kind. A window (grown by
 * context_pad pixels of the output's scale around it, and made square first in "square"
 * mode) is cut from its image, clipped to it, resized with OpenCV's INTER_LINEAR rule and
 * put into the crop x crop output, where what fell outside the image stays 0 (after the
 * mean: the output is (pixel - mean) * scale inside, 0 outside); with mirror the window is
 * flipped left-right with probability 1/2. Tops: data (batch x channels x crop x crop) and
 * label (batch).
 *
 * Decisions: images are read with core/image_io (JPEG, PNG), always as color as Caffe does
 * (the header's channel count is checked against 3); cache_images keeps each image decoded
 * in memory after its first use (Caffe keeps the encoded bytes); the draws come from the
 * layer's own rng (seeded as the Data layer's), not Caffe's; a window that lies outside its
 * image, or an image whose size differs from its header, is an error naming both.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_transformer.h"
#include "image_io.h"
#include "layer.h"
#include "prefetch.h"

typedef struct win {
  int image, label, x1, y1, x2, y2;
} win;

typedef struct wimage {
  char *path;
  int channels, height, width;
  uint8_t *cached; /* cache_images: decoded B,G,R, after the first use */
} wimage;

typedef struct window_priv {
  wimage *images;
  int nimages;
  win *fg, *bg;
  int nfg, nbg;
  nr_transformer *tf;
  nr_transform_info ti;
  nr_rng rng;
  FILE *log;
  const char *source;
  int batch_size, crop, context_pad;
  float fg_threshold, bg_threshold, fg_fraction;
  bool square, cache, has_label;
  uint8_t *warp; /* crop x crop x 3 scratch of the prefetch thread */
  nr_prefetch *ring;
} window_priv;

static const Caffe__WindowDataParameter window_default = CAFFE__WINDOW_DATA_PARAMETER__INIT;

/* ---- the window file ---- */

typedef struct tokens {
  char *text, *pos;
} tokens;

static const char *next_token(tokens *t) {
  while (*t->pos == ' ' || *t->pos == '\t' || *t->pos == '\n' || *t->pos == '\r') t->pos++;
  if (!*t->pos) return NULL;
  char *start = t->pos;
  while (*t->pos && *t->pos != ' ' && *t->pos != '\t' && *t->pos != '\n' && *t->pos != '\r')
    t->pos++;
  if (*t->pos) *t->pos++ = '\0';
  return start;
}

static bool next_long(tokens *t, long *v) {
  const char *s = next_token(t);
  char *end;
  if (!s) return false;
  errno = 0;
  *v = strtol(s, &end, 10);
  return !*end && !errno;
}

static bool next_float(tokens *t, float *v) {
  const char *s = next_token(t);
  char *end;
  if (!s) return false;
  *v = strtof(s, &end);
  return !*end;
}

static nr_status push_win(win **v, int *n, win w, nr_error *err) {
  if ((*n & (*n - 1)) == 0) { /* 0, 1, 2, 4, ...: grow */
    win *nv = realloc(*v, sizeof *nv * (size_t)(*n ? 2 * *n : 1));
    if (!nv) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    *v = nv;
  }
  (*v)[(*n)++] = w;
  return NR_OK;
}

static nr_status read_windows(window_priv *p, const Caffe__WindowDataParameter *wp,
                              nr_error *err) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = fopen(wp->source, "r");
  if (!f)
    return nr_err_set(err, NR_ERR_IO, "cannot open the window file '%s': %s", wp->source,
                      strerror(errno));
  FILE *m = open_memstream(&text, &len);
  char buf[65536];
  for (size_t n; m && (n = fread(buf, 1, sizeof buf, f)) > 0;) fwrite(buf, 1, n, m);
  fclose(f);
  if (!m || fclose(m) != 0 || !text) {
    free(text);
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory reading '%s'", wp->source);
  }
  tokens t = {text, text};
  const char *root = wp->root_folder ? wp->root_folder : "";
  nr_status s = NR_OK;
  int cap = 0;
  for (const char *hash; (hash = next_token(&t));) {
    long index, c, h, w, nwin;
    const char *path = NULL;
    if (strcmp(hash, "#") || !next_long(&t, &index) || !(path = next_token(&t)) ||
        !next_long(&t, &c) || !next_long(&t, &h) || !next_long(&t, &w) ||
        !next_long(&t, &nwin) || c <= 0 || h <= 0 || w <= 0 || nwin < 0 || h > 1 << 20 ||
        w > 1 << 20 || nwin > 1 << 24) {
      s = nr_err_set(err, NR_ERR_INPUT,
                     "window file '%s', image %d: expected \"# <index>\", the image path, "
                     "<channels> <height> <width> and the number of windows",
                     wp->source, p->nimages);
      break;
    }
    if (c != 3) {
      s = nr_err_set(err, NR_ERR_INPUT,
                     "window file '%s', image %d ('%s'): %ld channels; WindowData reads color "
                     "images (3)", wp->source, p->nimages, path, c);
      break;
    }
    if (p->nimages == cap) {
      cap = cap ? 2 * cap : 16;
      wimage *ni = realloc(p->images, sizeof *ni * (size_t)cap);
      if (!ni) {
        s = nr_err_set(err, NR_ERR_NOMEM, "out of memory");
        break;
      }
      p->images = ni;
    }
    size_t pl = strlen(root) + strlen(path) + 1;
    char *full = malloc(pl);
    if (!full) {
      s = nr_err_set(err, NR_ERR_NOMEM, "out of memory");
      break;
    }
    snprintf(full, pl, "%s%s", root, path);
    const int im = p->nimages++;
    p->images[im] = (wimage){full, (int)c, (int)h, (int)w, NULL};
    for (long k = 0; k < nwin && s == NR_OK; k++) {
      long label, x1, y1, x2, y2;
      float overlap;
      if (!next_long(&t, &label) || !next_float(&t, &overlap) || !next_long(&t, &x1) ||
          !next_long(&t, &y1) || !next_long(&t, &x2) || !next_long(&t, &y2)) {
        s = nr_err_set(err, NR_ERR_INPUT,
                       "window file '%s', image %d ('%s'), window %ld: expected <class> "
                       "<overlap> <x1> <y1> <x2> <y2>", wp->source, im, full, k);
        break;
      }
      if (x1 < 0 || y1 < 0 || x2 < x1 || y2 < y1 || x2 >= w || y2 >= h) {
        s = nr_err_set(err, NR_ERR_INPUT,
                       "window file '%s', image %d ('%s'), window %ld: corners (%ld, %ld) - "
                       "(%ld, %ld) are not inside the %ldx%ld image",
                       wp->source, im, full, k, x1, y1, x2, y2, w, h);
        break;
      }
      win wv = {im, (int)label, (int)x1, (int)y1, (int)x2, (int)y2};
      if (overlap >= p->fg_threshold) {
        if (label <= 0) {
          s = nr_err_set(err, NR_ERR_INPUT,
                         "window file '%s', image %d ('%s'), window %ld: a foreground window "
                         "(overlap %g) needs a class > 0, not %ld",
                         wp->source, im, full, k, overlap, label);
          break;
        }
        s = push_win(&p->fg, &p->nfg, wv, err);
      } else if (overlap < p->bg_threshold) {
        wv.label = 0;
        s = push_win(&p->bg, &p->nbg, wv, err);
      }
    }
    if (s != NR_OK) break;
  }
  free(text);
  if (s == NR_OK && p->nimages == 0)
    s = nr_err_set(err, NR_ERR_INPUT, "window file '%s' is empty", wp->source);
  return s;
}

/* ---- one window ---- */

static nr_status image_pixels(window_priv *p, wimage *im, uint8_t **pix, nr_error *err) {
  if (im->cached) {
    *pix = im->cached;
    return NR_OK;
  }
  int h, w;
  NR_TRY(nr_image_read(im->path, true, pix, &h, &w, err));
  if (h != im->height || w != im->width) {
    free(*pix);
    *pix = NULL;
    return nr_err_set(err, NR_ERR_INPUT,
                      "image '%s' is %dx%d, but the window file '%s' says %dx%d", im->path, h,
                      w, p->source, im->height, im->width);
  }
  if (p->cache) im->cached = *pix;
  return NR_OK;
}

/* Writes window wv, warped, to out (3 x crop x crop floats, zeroed by the caller). */
static nr_status one_window(window_priv *p, const win *wv, bool mirror, float *out,
                            nr_error *err) {
  wimage *im = &p->images[wv->image];
  uint8_t *pix = NULL;
  NR_TRY(image_pixels(p, im, &pix, err));
  const int crop = p->crop, W = im->width, H = im->height;
  int x1 = wv->x1, y1 = wv->y1, x2 = wv->x2, y2 = wv->y2;
  int pad_w = 0, pad_h = 0, out_w = crop, out_h = crop;
  if (p->context_pad > 0 || p->square) {
    const double context_scale = (double)crop / (crop - 2 * p->context_pad);
    double half_h = (y2 - y1 + 1) / 2.0, half_w = (x2 - x1 + 1) / 2.0;
    const double cx = x1 + half_w, cy = y1 + half_h;
    if (p->square) half_h = half_w = half_h > half_w ? half_h : half_w;
    x1 = (int)lround(cx - half_w * context_scale);
    x2 = (int)lround(cx + half_w * context_scale);
    y1 = (int)lround(cy - half_h * context_scale);
    y2 = (int)lround(cy + half_h * context_scale);
    const int uh = y2 - y1 + 1, uw = x2 - x1 + 1; /* unclipped */
    int px1 = x1 < 0 ? -x1 : 0, py1 = y1 < 0 ? -y1 : 0;
    int px2 = x2 > W - 1 ? x2 - W + 1 : 0, py2 = y2 > H - 1 ? y2 - H + 1 : 0;
    x1 += px1, x2 -= px2, y1 += py1, y2 -= py2;
    const double sx = (double)crop / uw, sy = (double)crop / uh;
    out_w = (int)lround((x2 - x1 + 1) * sx);
    out_h = (int)lround((y2 - y1 + 1) * sy);
    px1 = (int)lround(px1 * sx), px2 = (int)lround(px2 * sx), py1 = (int)lround(py1 * sy);
    pad_h = py1;
    pad_w = mirror ? px2 : px1;
    if (pad_h + out_h > crop) out_h = crop - pad_h;
    if (pad_w + out_w > crop) out_w = crop - pad_w;
  }
  nr_status s = NR_OK;
  if (out_w <= 0 || out_h <= 0 || x2 < x1 || y2 < y1) goto done; /* nothing of the image */
  const int rw = x2 - x1 + 1, rh = y2 - y1 + 1;
  uint8_t *roi = malloc((size_t)rw * rh * 3);
  if (!roi) {
    s = nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (int y = 0; y < rh; y++)
    memcpy(roi + (size_t)y * rw * 3, pix + ((size_t)(y1 + y) * W + x1) * 3, (size_t)rw * 3);
  nr_image_resize(roi, rh, rw, 3, p->warp, out_h, out_w);
  free(roi);
  const nr_transform_info *t = &p->ti;
  const int64_t moff = t->mean ? (t->mean_w - crop) / 2 : 0;
  for (int c = 0; c < 3; c++) {
    const float mv = t->nmean_values ? t->mean_values[t->nmean_values > 1 ? c : 0] : 0.0f;
    for (int y = 0; y < out_h; y++)
      for (int x = 0; x < out_w; x++) {
        const int sx = mirror ? out_w - 1 - x : x;
        float v = p->warp[((size_t)y * out_w + sx) * 3 + c];
        if (t->mean)
          v -= t->mean[((size_t)c * t->mean_h + y + moff + pad_h) * t->mean_w + x + moff + pad_w];
        else
          v -= mv;
        out[((size_t)c * crop + y + pad_h) * crop + x + pad_w] = v * t->scale;
      }
  }
done:
  if (!p->cache) free(pix);
  return s;
}

/* One batch, on the prefetch thread: the background windows, then the foreground ones. */
static nr_status fill_batch(void *ctx, float *data, float *label, nr_error *err) {
  window_priv *p = ctx;
  const size_t item = (size_t)3 * p->crop * p->crop;
  memset(data, 0, item * (size_t)p->batch_size * sizeof *data);
  const int nfg = (int)(p->batch_size * p->fg_fraction);
  const int count[2] = {p->batch_size - nfg, nfg};
  int k = 0;
  for (int fg = 0; fg < 2; fg++)
    for (int i = 0; i < count[fg]; i++, k++) {
      const win *v = fg ? &p->fg[nr_rng_below(&p->rng, (uint64_t)p->nfg)]
                        : &p->bg[nr_rng_below(&p->rng, (uint64_t)p->nbg)];
      const bool mirror = p->ti.mirror && nr_rng_below(&p->rng, 2);
      NR_TRY(one_window(p, v, mirror, data + (size_t)k * item, err));
      if (label) label[k] = (float)v->label;
    }
  return NR_OK;
}

static void window_destroy(nr_layer *l) {
  window_priv *p = l->priv;
  if (!p) return;
  nr_prefetch_stop(p->ring);
  for (int i = 0; i < p->nimages; i++) {
    free(p->images[i].path);
    free(p->images[i].cached);
  }
  free(p->images);
  free(p->fg);
  free(p->bg);
  free(p->warp);
  nr_transformer_destroy(p->tf);
  free(p);
  l->priv = NULL;
}

static nr_status window_setup(nr_layer *l, nr_error *err) {
  const Caffe__WindowDataParameter *wp =
      l->param->window_data_param ? l->param->window_data_param : &window_default;
  if (!wp->source || !*wp->source)
    return nr_err_set(err, NR_ERR_INPUT, "window_data_param.source is not set (the window file)");
  if (wp->batch_size == 0 || wp->batch_size > (1u << 20))
    return nr_err_set(err, NR_ERR_INPUT, "window_data_param.batch_size %u: give 1 to 2^20",
                      wp->batch_size);
  const char *mode = wp->crop_mode ? wp->crop_mode : "warp";
  if (strcmp(mode, "warp") && strcmp(mode, "square"))
    return nr_err_set(err, NR_ERR_INPUT,
                      "window_data_param.crop_mode '%s': give \"warp\" or \"square\"", mode);
  const float fgf = wp->has_fg_fraction ? wp->fg_fraction : 0.25f;
  if (!(fgf >= 0 && fgf <= 1))
    return nr_err_set(err, NR_ERR_INPUT, "window_data_param.fg_fraction %g: give 0 to 1", fgf);
  window_priv *p = calloc(1, sizeof *p);
  if (!p) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = p;
  p->log = l->ctx && l->ctx->log ? l->ctx->log : stderr;
  p->source = wp->source;
  p->batch_size = (int)wp->batch_size;
  p->fg_threshold = wp->has_fg_threshold ? wp->fg_threshold : 0.5f;
  p->bg_threshold = wp->has_bg_threshold ? wp->bg_threshold : 0.5f;
  p->fg_fraction = fgf;
  p->context_pad = (int)wp->context_pad;
  p->square = !strcmp(mode, "square");
  p->cache = wp->cache_images;
  p->has_label = l->ntop > 1;
  nr_layer_seed_own_rng(l, &p->rng);
  if (wp->has_scale || wp->mean_file || wp->has_crop_size || wp->has_mirror)
    fprintf(p->log, "WindowData layer '%s': window_data_param.scale/mean_file/crop_size/mirror "
            "are ignored (as in Caffe); put them in transform_param\n", l->name);
  NR_TRY(nr_transformer_create(l->param->transform_param, l->phase, &p->tf, err));
  nr_transformer_info(p->tf, &p->ti);
  p->crop = p->ti.crop;
  if (p->crop <= 0)
    return nr_err_set(err, NR_ERR_INPUT,
                      "WindowData needs transform_param.crop_size (the output's side)");
  if (2 * p->context_pad >= p->crop)
    return nr_err_set(err, NR_ERR_INPUT,
                      "window_data_param.context_pad %d leaves nothing of a %d crop",
                      p->context_pad, p->crop);
  if (p->ti.mean && (p->ti.mean_c != 3 || p->ti.mean_h != p->ti.mean_w ||
                     p->ti.mean_w < p->crop))
    return nr_err_set(err, NR_ERR_INPUT,
                      "transform_param.mean_file is %lldx%lldx%lld: WindowData needs a square "
                      "3-channel mean at least crop_size (%d) wide",
                      (long long)p->ti.mean_c, (long long)p->ti.mean_h, (long long)p->ti.mean_w,
                      p->crop);
  if (p->ti.nmean_values > 1 && p->ti.nmean_values != 3)
    return nr_err_set(err, NR_ERR_INPUT,
                      "transform_param.mean_value has %d values: give one, or one per channel "
                      "(3)", p->ti.nmean_values);
  NR_TRY(read_windows(p, wp, err));
  fprintf(p->log, "Number of images: %d\n", p->nimages);
  fprintf(p->log, "Foreground windows: %d, background windows: %d\n", p->nfg, p->nbg);
  fprintf(p->log, "Amount of context padding: %d\n", p->context_pad);
  fprintf(p->log, "Crop mode: %s\n", mode);
  const int nfg = (int)(p->batch_size * p->fg_fraction);
  if ((nfg > 0 && p->nfg == 0) || (p->batch_size - nfg > 0 && p->nbg == 0))
    return nr_err_set(err, NR_ERR_INPUT,
                      "window file '%s' has %d foreground and %d background windows, but each "
                      "batch takes %d and %d (fg_threshold %g, bg_threshold %g, fg_fraction %g)",
                      wp->source, p->nfg, p->nbg, nfg, p->batch_size - nfg, p->fg_threshold,
                      p->bg_threshold, p->fg_fraction);
  p->warp = malloc((size_t)p->crop * p->crop * 3);
  if (!p->warp) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  NR_TRY(nr_layer_reshape_data_tops(l, p->batch_size, 3, p->crop, p->crop, err));
  fprintf(p->log, "output data size: %d,3,%d,%d\n", p->batch_size, p->crop, p->crop);
  return nr_prefetch_start(4, (size_t)p->batch_size * 3 * p->crop * p->crop,
                           p->has_label ? (size_t)p->batch_size : 0, fill_batch, p, p->log,
                           &p->ring, err);
}

static nr_status window_reshape(nr_layer *l, nr_error *err) {
  const window_priv *p = l->priv;
  return nr_layer_reshape_data_tops(l, p->batch_size, 3, p->crop, p->crop, err);
}

static nr_status window_forward(nr_layer *l, nr_error *err) {
  window_priv *p = l->priv;
  nr_status s = nr_prefetch_take(p->ring, l->top[0]->data,
                                 p->has_label ? l->top[1]->data : NULL, err);
  if (s != NR_OK) return nr_err_prefix(err, "window file '%s'", p->source);
  return NR_OK;
}

const nr_layer_type nr_layer_window_data = {
    .name = "WindowData", .min_bottoms = 0, .max_bottoms = 0, .min_tops = 1, .max_tops = 2,
    .setup = window_setup, .reshape = window_reshape, .forward = window_forward,
    .destroy = window_destroy};
