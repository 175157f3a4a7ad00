/* net.c: building and running a net (Caffe's Net::Init, Forward, Backward).
 *
 * Build order, as Caffe's:
 *   1. copy the NetParameter; merge the caller's phase/level/stages into its NetState;
 *   2. drop layers whose include/exclude rules reject that state;
 *   3. insert Split layers where a top feeds several bottoms (or feeds a bottom and carries a
 *      loss weight), rewiring consumers to the split's tops;
 *   4. create blobs and layers in order, set each layer up, record loss weights;
 *   5. collect parameters, aliasing the ones that share a ParamSpec name;
 *   6. decide which layers and bottoms need backward (forward sweep for "depends on a
 *      learnable thing", reverse sweep for "contributes to a loss"), then force_backward.
 * The NetParameter kept in the net is the one actually built: filtered, with splits, each
 * layer's phase filled in.
 *
 * Decision: the loss is computed as sum(weight * top data) directly, and loss tops get their
 * diff set to the weight right before each backward. Caffe writes the weight into the diff
 * once at setup and dots data with diff; ours gives the same numbers but survives a loss
 * top that is reallocated by a later reshape (a known Caffe pitfall).
 */
#include "net.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "layers/memory_data.h"
#include "nr_math.h"
#include "parallel.h"
#include "pylayer.h"
#include "weights.h"

/* ---- small helpers ---------------------------------------------------------------- */

static void logf_(FILE *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(FILE *log, const char *fmt, ...) {
  if (!log) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(log, fmt, ap);
  va_end(ap);
  fputc('\n', log);
}

static char *xstrdup(const char *s) { return strdup(s ? s : ""); }

static Caffe__NetParameter *copy_net_param(const Caffe__NetParameter *p) {
  size_t len = protobuf_c_message_get_packed_size(&p->base);
  uint8_t *buf = malloc(len ? len : 1);
  if (!buf) return NULL;
  protobuf_c_message_pack(&p->base, buf);
  Caffe__NetParameter *c = caffe__net_parameter__unpack(NULL, len, buf);
  free(buf);
  return c;
}

static bool has_stage(const Caffe__NetState *state, const char *stage) {
  for (size_t m = 0; m < state->n_stage; m++)
    if (strcmp(stage, state->stage[m]) == 0) return true;
  return false;
}

/* A rule matches when every condition it sets holds. */
static bool rule_matches(const Caffe__NetState *state, const Caffe__NetStateRule *r) {
  if (r->has_phase && r->phase != state->phase) return false;
  if (r->has_min_level && state->level < r->min_level) return false;
  if (r->has_max_level && state->level > r->max_level) return false;
  for (size_t k = 0; k < r->n_stage; k++)
    if (!has_stage(state, r->stage[k])) return false;
  for (size_t k = 0; k < r->n_not_stage; k++)
    if (has_stage(state, r->not_stage[k])) return false;
  return true;
}

bool nr_net_state_includes(const Caffe__NetState *state, const Caffe__LayerParameter *layer) {
  if (layer->n_include > 0) {
    for (size_t i = 0; i < layer->n_include; i++)
      if (rule_matches(state, layer->include[i])) return true;
    return false;
  }
  for (size_t i = 0; i < layer->n_exclude; i++)
    if (rule_matches(state, layer->exclude[i])) return false;
  return true;
}

/* ---- step 2 and 3: filter and insert splits ----------------------------------------- */

static nr_status filter_layers(Caffe__NetParameter *p, const Caffe__NetState *state,
                               nr_error *err) {
  size_t keep = 0;
  for (size_t i = 0; i < p->n_layer; i++) {
    Caffe__LayerParameter *l = p->layer[i];
    if (l->n_include > 0 && l->n_exclude > 0)
      return nr_err_set(err, NR_ERR_INPUT,
                        "layer '%s' specifies both include and exclude rules (use one)",
                        l->name ? l->name : "");
    if (nr_net_state_includes(state, l))
      p->layer[keep++] = l;
    else
      protobuf_c_message_free_unpacked(&l->base, NULL);
  }
  p->n_layer = keep;
  return NR_OK;
}

/* Appends a copy of s to the string vector (*v, *n). On failure (out of memory) the vector
 * is left as it was, still owned by the caller; *v may have moved either way. */
static bool strv_add(char ***v, size_t *n, const char *s) {
  char **nv = realloc(*v, (*n + 1) * sizeof *nv);
  if (!nv) return false;
  *v = nv;
  nv[*n] = xstrdup(s);
  if (!nv[*n]) return false;
  (*n)++;
  return true;
}

/* Caffe's AutoTopBlobs: a loss layer written without a top gets one, so its loss counts
 * (Caffe's pascal finetune net relies on it). Named "(automatic)", then "(automatic)#2", ...
 * (Caffe leaves them anonymous; a name keeps them apart in the net's blob list). Unknown
 * types are left for the layer build to report. */
static nr_status auto_tops(Caffe__NetParameter *p, nr_error *err) {
  int made = 0;
  for (size_t i = 0; i < p->n_layer; i++) {
    Caffe__LayerParameter *l = p->layer[i];
    const nr_layer_type *t = l->type ? nr_layer_type_find(l->type) : NULL;
    if (!t || !t->is_loss) continue;
    while ((int)l->n_top < t->min_tops) {
      char name[64];
      snprintf(name, sizeof name, made ? "(automatic)#%d" : "(automatic)", made + 1);
      if (!strv_add(&l->top, &l->n_top, name))
        return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
      made++;
    }
  }
  return NR_OK;
}

/* Inserts Caffe's Split layers. Producers are tracked per (layer, top index); a later layer
 * producing the same name (in-place) supersedes the earlier producer. */
static nr_status insert_splits(Caffe__NetParameter *p, nr_error *err) {
  size_t nl = p->n_layer;
  /* For each (layer, top): consumer count and loss weight. Flattened: offset[l] + j. */
  size_t *off = calloc(nl + 1, sizeof *off);
  if (!off) return nr_err_set(err, NR_ERR_NOMEM, "out of memory inserting splits");
  for (size_t i = 0; i < nl; i++) off[i + 1] = off[i] + p->layer[i]->n_top;
  size_t ntops = off[nl];
  int *consumers = calloc(ntops + 1, sizeof *consumers);
  /* For each (layer, bottom): the flattened producer index or -1. */
  size_t nbot = 0;
  for (size_t i = 0; i < nl; i++) nbot += p->layer[i]->n_bottom;
  long *bot_producer = calloc(nbot + 1, sizeof *bot_producer);
  int *split_count_used = calloc(ntops + 1, sizeof *split_count_used);
  Caffe__LayerParameter **out = NULL;
  nr_status st = NR_OK;
  if (!consumers || !bot_producer || !split_count_used) goto nomem;

  {
    size_t b = 0;
    for (size_t i = 0; i < nl; i++) {
      Caffe__LayerParameter *l = p->layer[i];
      for (size_t j = 0; j < l->n_bottom; j++, b++) {
        bot_producer[b] = -1;
        /* find the latest producer of this name before layer i */
        for (size_t k = i; k-- > 0;) {
          Caffe__LayerParameter *q = p->layer[k];
          for (size_t t = 0; t < q->n_top; t++)
            if (strcmp(q->top[t], l->bottom[j]) == 0) {
              bot_producer[b] = (long)(off[k] + t);
              goto found;
            }
        }
      found:
        if (bot_producer[b] >= 0) consumers[bot_producer[b]]++;
      }
    }
  }
  for (size_t i = 0; i < nl; i++) {
    Caffe__LayerParameter *l = p->layer[i];
    for (size_t t = 0; t < l->n_top && t < l->n_loss_weight; t++)
      if (l->loss_weight[t] != 0) consumers[off[i] + t]++;
  }

  size_t nsplit = 0;
  for (size_t t = 0; t < ntops; t++)
    if (consumers[t] > 1) nsplit++;
  if (nsplit == 0) goto done;

  out = calloc(nl + nsplit, sizeof *out);
  if (!out) goto nomem;
  size_t no = 0, b = 0;
  for (size_t i = 0; i < nl; i++) {
    Caffe__LayerParameter *l = p->layer[i];
    /* rewire this layer's bottoms that read a split blob */
    for (size_t j = 0; j < l->n_bottom; j++, b++) {
      long pr = bot_producer[b];
      if (pr < 0 || consumers[pr] <= 1) continue;
      size_t pl = 0;
      while (off[pl + 1] <= (size_t)pr) pl++;
      size_t pt = (size_t)pr - off[pl];
      char name[1024];
      snprintf(name, sizeof name, "%s_%s_%zu_split_%d", l->bottom[j], p->layer[pl]->name,
               pt, split_count_used[pr]++);
      char *nn = xstrdup(name);
      if (!nn) goto nomem;
      free(l->bottom[j]);
      l->bottom[j] = nn;
    }
    out[no++] = l;
    for (size_t t = 0; t < l->n_top; t++) {
      if (consumers[off[i] + t] <= 1) continue;
      Caffe__LayerParameter *s = malloc(sizeof *s);
      if (!s) goto nomem;
      caffe__layer_parameter__init(s);
      out[no++] = s;
      char name[1024];
      snprintf(name, sizeof name, "%s_%s_%zu_split", l->top[t], l->name ? l->name : "", t);
      s->name = xstrdup(name);
      s->type = xstrdup("Split");
      if (!s->name || !s->type) goto nomem;
      if (!strv_add(&s->bottom, &s->n_bottom, l->top[t])) goto nomem;
      for (int k = 0; k < consumers[off[i] + t]; k++) {
        snprintf(name, sizeof name, "%s_%s_%zu_split_%d", l->top[t], l->name ? l->name : "",
                 t, k);
        if (!strv_add(&s->top, &s->n_top, name)) goto nomem;
      }
      if (t < l->n_loss_weight && l->loss_weight[t] != 0) {
        /* The loss weight moves to split top 0. */
        s->loss_weight = calloc(s->n_top, sizeof *s->loss_weight);
        if (!s->loss_weight) goto nomem;
        s->n_loss_weight = s->n_top;
        s->loss_weight[0] = l->loss_weight[t];
        l->loss_weight[t] = 0;
      }
      if (l->has_phase) {
        s->has_phase = 1;
        s->phase = l->phase;
      }
    }
  }
  free(p->layer);
  p->layer = out;
  p->n_layer = no;
  out = NULL;
  goto done;
nomem:
  st = nr_err_set(err, NR_ERR_NOMEM, "out of memory inserting split layers");
  if (out) {
    /* out holds borrowed layers and possibly new splits; free only the splits */
    for (size_t k = 0; k < nl + nsplit; k++) {
      bool borrowed = false;
      for (size_t i = 0; i < nl; i++) borrowed |= out[k] == p->layer[i];
      if (out[k] && !borrowed) protobuf_c_message_free_unpacked(&out[k]->base, NULL);
    }
  }
done:
  free(out);
  free(off);
  free(consumers);
  free(bot_producer);
  free(split_count_used);
  return st;
}

/* ---- step 4: blobs and layers -------------------------------------------------------- */

typedef struct avail {
  char **names;
  int *blob;
  int n, cap;
} avail;

static int blob_index(const nr_net *n, const char *name) {
  for (int i = 0; i < n->nblobs; i++)
    if (n->blobs[i]->name && strcmp(n->blobs[i]->name, name) == 0) return i;
  return -1;
}

nr_blob *nr_net_blob(const nr_net *n, const char *name) {
  int i = blob_index(n, name);
  return i < 0 ? NULL : n->blobs[i];
}

int nr_net_layer_index(const nr_net *n, const char *name) {
  for (int i = 0; i < n->nlayers; i++)
    if (strcmp(n->layers[i]->name, name) == 0) return i;
  return -1;
}

static nr_status add_blob(nr_net *n, const char *name, int *out, nr_error *err) {
  int cap = n->nblobs + 1;
  nr_blob **nb = realloc(n->blobs, (size_t)cap * sizeof *nb);
  if (!nb) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  n->blobs = nb;
  float *lw = realloc(n->blob_loss_weight, (size_t)cap * sizeof *lw);
  if (!lw) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  n->blob_loss_weight = lw;
  bool *bn = realloc(n->blob_need_backward, (size_t)cap * sizeof *bn);
  if (!bn) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  n->blob_need_backward = bn;
  nr_blob *b = NULL;
  NR_TRY(nr_blob_create(name, n->ctx.alloc, &b, err));
  n->blobs[n->nblobs] = b;
  n->blob_loss_weight[n->nblobs] = 0;
  n->blob_need_backward[n->nblobs] = false;
  *out = n->nblobs++;
  return NR_OK;
}

/* Per-layer wiring kept while building: blob indices of bottoms and tops. */
typedef struct wiring {
  int *bottom_blob;
  int *top_blob;
  bool *bottom_need;
} wiring;

static nr_status set_loss_weights(nr_net *n, nr_layer *l, wiring *w, nr_error *err) {
  const Caffe__LayerParameter *p = l->param;
  if (p->n_loss_weight > 0 && p->n_loss_weight != (size_t)l->ntop)
    return nr_err_set(err, NR_ERR_INPUT,
                      "loss_weight must be given once per top blob or not at all "
                      "(%zu given, %d tops)",
                      p->n_loss_weight, l->ntop);
  for (int t = 0; t < l->ntop; t++) {
    float wgt = 0;
    if (p->n_loss_weight > 0)
      wgt = p->loss_weight[t];
    else if (l->type->is_loss && t == 0)
      wgt = 1;
    n->blob_loss_weight[w->top_blob[t]] = wgt;
    if (wgt != 0) nr_set(l->top[t]->count, wgt, l->top[t]->diff);
  }
  return NR_OK;
}

static nr_status collect_params(nr_net *n, nr_error *err) {
  int total = 0;
  for (int i = 0; i < n->nlayers; i++) total += n->layers[i]->nblobs;
  n->params = calloc((size_t)total + 1, sizeof *n->params);
  n->param_owner = calloc((size_t)total + 1, sizeof *n->param_owner);
  n->param_layer = calloc((size_t)total + 1, sizeof *n->param_layer);
  n->learnable = calloc((size_t)total + 1, sizeof *n->learnable);
  n->lr_mult = calloc((size_t)total + 1, sizeof *n->lr_mult);
  n->decay_mult = calloc((size_t)total + 1, sizeof *n->decay_mult);
  n->has_lr_mult = calloc((size_t)total + 1, sizeof *n->has_lr_mult);
  n->has_decay_mult = calloc((size_t)total + 1, sizeof *n->has_decay_mult);
  const char **pname = calloc((size_t)total + 1, sizeof *pname);
  int *learn_idx = calloc((size_t)total + 1, sizeof *learn_idx);
  nr_status st = NR_OK;
  if (!n->params || !n->param_owner || !n->param_layer || !n->learnable || !n->lr_mult ||
      !n->decay_mult || !n->has_lr_mult || !n->has_decay_mult || !pname || !learn_idx) {
    st = nr_err_set(err, NR_ERR_NOMEM, "out of memory collecting parameters");
    goto out;
  }
  for (int i = 0; i < n->nlayers; i++) {
    nr_layer *l = n->layers[i];
    const Caffe__LayerParameter *p = l->param;
    if (p->n_param > (size_t)l->nblobs) {
      st = nr_err_set(err, NR_ERR_INPUT,
                      "layer %d '%s' (%s): %zu param specs given but the layer has %d "
                      "parameter blob%s",
                      i, l->name, l->type->name, p->n_param, l->nblobs,
                      l->nblobs == 1 ? "" : "s");
      goto out;
    }
    bool is_bn = strcmp(l->type->name, "BatchNorm") == 0;
    for (int j = 0; j < l->nblobs; j++) {
      int id = n->nparams++;
      const Caffe__ParamSpec *ps = (size_t)j < p->n_param ? p->param[j] : NULL;
      n->params[id] = l->blobs[j];
      n->param_layer[id] = i;
      n->param_owner[id] = -1;
      const char *name = ps && ps->name && ps->name[0] ? ps->name : NULL;
      pname[id] = name;
      float lr = ps && ps->has_lr_mult ? ps->lr_mult : 1.0f;
      float dm = ps && ps->has_decay_mult ? ps->decay_mult : 1.0f;
      /* BatchNorm's statistics are never optimized (Caffe masks them the same way). */
      if (is_bn) lr = dm = 0;
      int owner = -1;
      for (int k = 0; name && k < id; k++)
        if (pname[k] && strcmp(pname[k], name) == 0 && n->param_owner[k] < 0) {
          owner = k;
          break;
        }
      if (owner < 0) {
        int li = n->nlearnable++;
        learn_idx[id] = li;
        n->learnable[li] = l->blobs[j];
        n->lr_mult[li] = lr;
        n->decay_mult[li] = dm;
        n->has_lr_mult[li] = ps && ps->has_lr_mult;
        n->has_decay_mult[li] = ps && ps->has_decay_mult;
        continue;
      }
      nr_blob *ob = n->params[owner];
      bool permissive = ps && ps->has_share_mode &&
                        ps->share_mode == CAFFE__PARAM_SPEC__DIM_CHECK_MODE__PERMISSIVE;
      if (permissive ? ob->count != l->blobs[j]->count
                     : !nr_blob_same_shape(ob, l->blobs[j])) {
        char a[256], b2[256];
        st = nr_err_set(err, NR_ERR_INPUT,
                        "layer %d '%s' (%s): shared parameter '%s' has shape %s here but %s "
                        "in layer '%s'",
                        i, l->name, l->type->name, name, nr_blob_shape_str(l->blobs[j], b2, 256),
                        nr_blob_shape_str(ob, a, 256), n->layers[n->param_layer[owner]]->name);
        goto out;
      }
      int li = learn_idx[owner];
      if (ps && ps->has_lr_mult) {
        if (n->has_lr_mult[li] && n->lr_mult[li] != lr) {
          st = nr_err_set(err, NR_ERR_INPUT,
                          "layer %d '%s': shared parameter '%s' has lr_mult %g here but %g "
                          "where it is first used",
                          i, l->name, name, lr, n->lr_mult[li]);
          goto out;
        }
        n->lr_mult[li] = lr;
        n->has_lr_mult[li] = true;
      }
      if (ps && ps->has_decay_mult) {
        if (n->has_decay_mult[li] && n->decay_mult[li] != dm) {
          st = nr_err_set(err, NR_ERR_INPUT,
                          "layer %d '%s': shared parameter '%s' has decay_mult %g here but %g "
                          "where it is first used",
                          i, l->name, name, dm, n->decay_mult[li]);
          goto out;
        }
        n->decay_mult[li] = dm;
        n->has_decay_mult[li] = true;
      }
      n->param_owner[id] = owner;
      nr_blob_share(l->blobs[j], ob);
    }
  }
out:
  free(pname);
  free(learn_idx);
  return st;
}

static bool layer_param_needs_backward(const nr_net *n, int layer) {
  for (int i = 0; i < n->nparams; i++) {
    if (n->param_layer[i] != layer) continue;
    int o = n->param_owner[i] < 0 ? i : n->param_owner[i];
    for (int k = 0; k < n->nlearnable; k++)
      if (n->learnable[k] == n->params[o] && n->lr_mult[k] != 0) return true;
  }
  return false;
}

static bool name_in(char **set, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(set[i], name) == 0) return true;
  return false;
}

/* Caffe's backward-need inference (Net::Init, after all layers are set up). */
static nr_status infer_backward(nr_net *n, wiring *w, nr_error *err) {
  for (int i = 0; i < n->nlayers; i++) {
    nr_layer *l = n->layers[i];
    const Caffe__LayerParameter *p = l->param;
    if (p->n_propagate_down > 0 && p->n_propagate_down != (size_t)l->nbottom)
      return nr_err_set(err, NR_ERR_INPUT,
                        "layer %d '%s': propagate_down must be given once per bottom or not at "
                        "all (%zu given, %d bottoms)",
                        i, l->name, p->n_propagate_down, l->nbottom);
    bool need = false;
    for (int j = 0; j < l->nbottom; j++) {
      bool bn = n->blob_need_backward[w[i].bottom_blob[j]];
      if (p->n_propagate_down > 0) bn = p->propagate_down[j];
      w[i].bottom_need[j] = bn;
      need |= n->blob_need_backward[w[i].bottom_blob[j]];
    }
    need |= layer_param_needs_backward(n, i);
    n->layer_need_backward[i] = need;
    if (need)
      for (int t = 0; t < l->ntop; t++) n->blob_need_backward[w[i].top_blob[t]] = true;
  }
  /* Reverse sweep: only what contributes to a loss gets a gradient. */
  char **under_loss = calloc((size_t)n->nblobs + 1, sizeof *under_loss);
  char **skip = calloc((size_t)n->nblobs * 4 + 64, sizeof *skip);
  int nunder = 0, nskip = 0, skipcap = n->nblobs * 4 + 64;
  if (!under_loss || !skip) {
    free(under_loss);
    free(skip);
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  }
  for (int i = n->nlayers - 1; i >= 0; i--) {
    nr_layer *l = n->layers[i];
    bool contributes = false, skip_all = true;
    for (int t = 0; t < l->ntop; t++) {
      const char *tn = n->blobs[w[i].top_blob[t]]->name;
      if (n->blob_loss_weight[w[i].top_blob[t]] != 0 || name_in(under_loss, nunder, tn))
        contributes = true;
      if (!name_in(skip, nskip, tn)) skip_all = false;
      if (contributes && !skip_all) break;
    }
    if (n->layer_need_backward[i] && skip_all && l->ntop > 0) {
      n->layer_need_backward[i] = false;
      for (int j = 0; j < l->nbottom; j++) w[i].bottom_need[j] = false;
    }
    if (!contributes) n->layer_need_backward[i] = false;
    for (int j = 0; j < l->nbottom; j++) {
      const char *bn = n->blobs[w[i].bottom_blob[j]]->name;
      if (contributes) {
        if (!name_in(under_loss, nunder, bn) && nunder < n->nblobs)
          under_loss[nunder++] = (char *)bn;
      } else {
        w[i].bottom_need[j] = false;
      }
      if (!w[i].bottom_need[j] && nskip < skipcap) skip[nskip++] = (char *)bn;
    }
  }
  free(under_loss);
  free(skip);
  if (n->param->force_backward) {
    for (int i = 0; i < n->nlayers; i++) {
      nr_layer *l = n->layers[i];
      n->layer_need_backward[i] = true;
      for (int j = 0; j < l->nbottom; j++) {
        bool allow = !(l->type->no_force_backward & (1u << j));
        w[i].bottom_need[j] = w[i].bottom_need[j] || allow;
        n->blob_need_backward[w[i].bottom_blob[j]] |= w[i].bottom_need[j];
      }
    }
  }
  for (int i = 0; i < n->nlayers; i++)
    for (int j = 0; j < n->layers[i]->nbottom; j++)
      n->layers[i]->prop_down[j] = w[i].bottom_need[j];
  return NR_OK;
}

static int cmp_blob_names(const void *a, const void *b) {
  return strcmp((*(nr_blob *const *)a)->name, (*(nr_blob *const *)b)->name);
}

static const char *phase_name(int phase) { return phase == NR_TRAIN ? "TRAIN" : "TEST"; }

nr_status nr_net_create(const Caffe__NetParameter *param, const nr_net_opts *opts,
                        nr_net **out, nr_error *err) {
  nr_net_opts defaults = {0};
  if (!opts) opts = &defaults;
  nr_status st = NR_OK;
  wiring *w = NULL;
  int nl = 0;
  avail av = {0};
  nr_net *n = calloc(1, sizeof *n);
  if (!n) return nr_err_set(err, NR_ERR_NOMEM, "out of memory creating net");
  n->param = copy_net_param(param);
  if (!n->param) {
    st = nr_err_set(err, NR_ERR_NOMEM, "out of memory copying the net parameter");
    goto fail;
  }
  n->name = xstrdup(param->name);
  if (!n->name) goto nomem;
  n->phase = opts->phase;
  nr_rng_seed(&n->rng, opts->seed);
  n->ctx.rng = &n->rng;
  n->ctx.alloc = opts->alloc ? opts->alloc : nr_allocator_malloc();
  n->ctx.py = opts->py;
  n->ctx.log = opts->log;
  n->ctx.solver_rank = opts->solver_rank;
  n->ctx.solver_count = opts->solver_count;
  n->interrupt = opts->interrupt;
  /* no iteration while the net is built: an error in a layer's setup is not one of an
   * iteration (set at the end, for the calls the solver makes) */
  n->ctx.iter = NULL;
  n->ctx.net_name = n->name;
  if (opts->source_dir && !(n->source_dir = strdup(opts->source_dir))) goto nomem;
  n->ctx.source_dir = n->source_dir;
  FILE *log = opts->log;

  /* 1. state */
  Caffe__NetState *state = n->param->state;
  if (!state) {
    state = malloc(sizeof *state);
    if (!state) goto nomem;
    caffe__net_state__init(state);
    n->param->state = state;
  }
  state->has_phase = 1;
  state->phase = (Caffe__Phase)opts->phase;
  if (opts->level) {
    state->has_level = 1;
    state->level = opts->level;
  }
  for (int i = 0; i < opts->nstages; i++)
    if (!strv_add(&state->stage, &state->n_stage, opts->stages[i])) goto nomem;

  logf_(log, "Initializing net '%s' (phase %s)", n->name, phase_name(n->phase));
  /* 2, 3 */
  if ((st = filter_layers(n->param, state, err)) != NR_OK) goto fail;
  if ((st = auto_tops(n->param, err)) != NR_OK) goto fail;
  if ((st = insert_splits(n->param, err)) != NR_OK) goto fail;

  /* 4. layers */
  nl = (int)n->param->n_layer;
  n->layers = calloc((size_t)nl + 1, sizeof *n->layers);
  n->layer_need_backward = calloc((size_t)nl + 1, sizeof *n->layer_need_backward);
  n->top_blob = calloc((size_t)nl + 1, sizeof *n->top_blob);
  w = calloc((size_t)nl + 1, sizeof *w);
  if (!n->layers || !n->layer_need_backward || !n->top_blob || !w) goto nomem;
  for (int i = 0; i < nl; i++) {
    Caffe__LayerParameter *lp = n->param->layer[i];
    if (!lp->has_phase) {
      lp->has_phase = 1;
      lp->phase = (Caffe__Phase)n->phase;
    }
    const char *lname = lp->name ? lp->name : "";
    const char *ltype = lp->type ? lp->type : "";
    w[i].bottom_blob = calloc(lp->n_bottom + 1, sizeof(int));
    w[i].top_blob = n->top_blob[i] = calloc(lp->n_top + 1, sizeof(int)); /* the net's */
    w[i].bottom_need = calloc(lp->n_bottom + 1, sizeof(bool));
    nr_blob **bots = calloc(lp->n_bottom + 1, sizeof *bots);
    nr_blob **tops = calloc(lp->n_top + 1, sizeof *tops);
    if (!w[i].bottom_blob || !w[i].top_blob || !w[i].bottom_need || !bots || !tops) {
      free(bots);
      free(tops);
      goto nomem;
    }
    logf_(log, "Creating Layer %s", lname);
    for (size_t j = 0; j < lp->n_bottom; j++) {
      int k = 0;
      while (k < av.n && strcmp(av.names[k], lp->bottom[j]) != 0) k++;
      if (k == av.n) {
        free(bots);
        free(tops);
        st = nr_err_set(err, NR_ERR_INPUT,
                        "layer %d '%s' (%s): unknown bottom blob '%s' (bottom %zu): no earlier "
                        "layer produces it",
                        i, lname, ltype, lp->bottom[j], j);
        goto fail;
      }
      w[i].bottom_blob[j] = av.blob[k];
      bots[j] = n->blobs[av.blob[k]];
      logf_(log, "%s <- %s", lname, lp->bottom[j]);
      /* consumed: no longer a candidate output */
      av.names[k] = av.names[av.n - 1];
      av.blob[k] = av.blob[av.n - 1];
      av.n--;
    }
    for (size_t t = 0; t < lp->n_top; t++) {
      int bi = -1;
      if (t < lp->n_bottom && strcmp(lp->top[t], lp->bottom[t]) == 0) {
        bi = w[i].bottom_blob[t]; /* in place */
      } else {
        if (blob_index(n, lp->top[t]) >= 0) {
          free(bots);
          free(tops);
          st = nr_err_set(err, NR_ERR_INPUT,
                          "layer %d '%s' (%s): top blob '%s' is produced by multiple sources",
                          i, lname, ltype, lp->top[t]);
          goto fail;
        }
        if ((st = add_blob(n, lp->top[t], &bi, err)) != NR_OK) {
          free(bots);
          free(tops);
          goto fail;
        }
      }
      w[i].top_blob[t] = bi;
      tops[t] = n->blobs[bi];
      logf_(log, "%s -> %s", lname, lp->top[t]);
      if (av.n == av.cap) {
        int nc = av.cap ? av.cap * 2 : 16;
        char **nn = realloc(av.names, (size_t)nc * sizeof *nn);
        if (nn) av.names = nn;
        int *nb = realloc(av.blob, (size_t)nc * sizeof *nb);
        if (nb) av.blob = nb;
        if (!nn || !nb) {
          free(bots);
          free(tops);
          goto nomem;
        }
        av.cap = nc;
      }
      av.names[av.n] = lp->top[t];
      av.blob[av.n++] = bi;
    }
    nr_layer *l = NULL;
    st = nr_layer_create(lp, &n->ctx, bots, (int)lp->n_bottom, tops, (int)lp->n_top, &l, err);
    free(bots);
    free(tops);
    if (st != NR_OK) {
      nr_err_prefix(err, "layer %d '%s'", i, lname);
      goto fail;
    }
    l->index = i;
    l->phase = (int)lp->phase;
    n->layers[n->nlayers++] = l;
    if ((st = nr_layer_setup(l, err)) != NR_OK ||
        (st = set_loss_weights(n, l, &w[i], err)) != NR_OK) {
      nr_err_prefix(err, "layer %d '%s' (%s)", i, lname, ltype);
      goto fail;
    }
    for (int t = 0; t < l->ntop; t++) {
      char shp[512];
      logf_(log, "Top shape: %s", nr_blob_shape_str(l->top[t], shp, sizeof shp));
      if (n->blob_loss_weight[w[i].top_blob[t]] != 0)
        logf_(log, "    with loss weight %g", n->blob_loss_weight[w[i].top_blob[t]]);
    }
    if (strcmp(l->type->name, "Input") == 0) {
      nr_blob **ni = realloc(n->inputs, (size_t)(n->ninputs + l->ntop) * sizeof *ni);
      if (!ni) goto nomem;
      n->inputs = ni;
      for (int t = 0; t < l->ntop; t++) n->inputs[n->ninputs++] = l->top[t];
    }
  }
  /* 5, 6 */
  if ((st = collect_params(n, err)) != NR_OK) goto fail;
  if ((st = infer_backward(n, w, err)) != NR_OK) goto fail;
  for (int i = 0; i < n->nlayers; i++)
    logf_(log, "%s %s backward computation.", n->layers[i]->name,
          n->layer_need_backward[i] ? "needs" : "does not need");
  /* outputs: never consumed, alphabetical */
  n->outputs = calloc((size_t)av.n + 1, sizeof *n->outputs);
  if (!n->outputs) goto nomem;
  for (int k = 0; k < av.n; k++) n->outputs[n->noutputs++] = n->blobs[av.blob[k]];
  qsort(n->outputs, (size_t)n->noutputs, sizeof *n->outputs, cmp_blob_names);
  for (int k = 0; k < n->noutputs; k++)
    logf_(log, "This network produces output %s", n->outputs[k]->name);
  logf_(log, "Network initialization done.");
  n->ctx.iter = opts->iter;
  goto done;
nomem:
  st = nr_err_set(err, NR_ERR_NOMEM, "out of memory building the net");
fail:
  nr_err_prefix(err, "net '%s'", param->name ? param->name : "");
  nr_net_destroy(n);
  n = NULL;
done:
  if (w) {
    for (int i = 0; i < nl; i++) {
      free(w[i].bottom_blob);
      free(w[i].bottom_need);
    }
    free(w);
  }
  free(av.names);
  free(av.blob);
  if (n) *out = n;
  return st;
}

void nr_net_destroy(nr_net *n) {
  if (!n) return;
  for (int i = n->nlayers - 1; i >= 0; i--) {
    nr_layer *l = n->layers[i];
    if (n->ctx.py && n->ctx.py->release && strcmp(l->type->name, "Python") == 0)
      n->ctx.py->release(n->ctx.py->ctx, l);
    nr_layer_destroy(l);
  }
  for (int i = 0; i < n->nblobs; i++) nr_blob_destroy(n->blobs[i]);
  free(n->blobs);
  free(n->layers);
  free(n->layer_need_backward);
  free(n->blob_loss_weight);
  for (int i = 0; n->top_blob && n->top_blob[i]; i++) free(n->top_blob[i]);
  free(n->top_blob);
  free(n->blob_need_backward);
  free(n->inputs);
  free(n->outputs);
  free(n->params);
  free(n->param_owner);
  free(n->param_layer);
  free(n->learnable);
  free(n->lr_mult);
  free(n->decay_mult);
  free(n->has_lr_mult);
  free(n->has_decay_mult);
  if (n->param) protobuf_c_message_free_unpacked(&n->param->base, NULL);
  free(n->trained_layer);
  free(n->source_dir);
  free(n->name);
  free(n);
}

/* ---- running --------------------------------------------------------------------------- */

static nr_status layer_fail(nr_net *n, nr_layer *l, const char *what, nr_error *err) {
  (void)n;
  return nr_err_prefix(err, "layer %d '%s' (%s) %s", l->index, l->name, l->type->name, what);
}

/* The stop request is consumed by the error that reports it. */
static nr_status interrupted(const nr_net *n, const nr_layer *l, const char *pass,
                             nr_error *err) {
  *n->interrupt = 0;
  return nr_err_set(err, NR_ERR_INTERRUPT, "interrupted before layer '%s' (%s)", l->name, pass);
}

/* A Python layer of a net sharing trained weights takes their current values. */
static void take_trained(nr_net *n, int i) {
  const nr_layer *sl = n->trained_from->layers[n->trained_layer[i]];
  nr_layer *l = n->layers[i];
  for (int j = 0; j < l->nblobs && j < sl->nblobs; j++)
    if (l->blobs[j]->count == sl->blobs[j]->count && l->blobs[j]->data != sl->blobs[j]->data)
      memcpy(l->blobs[j]->data, sl->blobs[j]->data, (size_t)l->blobs[j]->count * sizeof(float));
}

nr_status nr_net_forward_layer(nr_net *n, int i, float *loss, nr_error *err) {
  nr_layer *l = n->layers[i];
  if (n->interrupt && *n->interrupt) return interrupted(n, l, "forward", err);
  if (n->trained_layer && n->trained_layer[i] >= 0) take_trained(n, i);
  if (l->type->reshape && l->type->reshape(l, err) != NR_OK)
    return layer_fail(n, l, "reshape", err);
  if (l->type->forward(l, err) != NR_OK) return layer_fail(n, l, "forward", err);
  double sum = 0;
  for (int t = 0; t < l->ntop; t++) {
    float wgt = n->blob_loss_weight[n->top_blob[i][t]];
    if (wgt == 0) continue;
    double s = 0;
    const float *d = l->top[t]->data;
    for (int64_t k = 0; k < l->top[t]->count; k++) s += d[k];
    sum += wgt * s;
  }
  if (loss) *loss = (float)sum;
  return NR_OK;
}

/* ---- sample slices ------------------------------------------------------------------------
 *
 * A run of consecutive layers that each compute every sample on its own (layer.h's
 * forward_samples: small convolutions and inner products, pooling, ReLU; the layer's
 * can_slice says when it is worth it) runs as one job of the helper threads
 * (parallel.h) instead of one job per layer: part p takes samples [N·p/S, N·(p+1)/S) through
 * every layer of the run, so each layer reads what the layer before it wrote on the same
 * core. Split inside each layer instead, half of every layer's input comes from the other
 * core's cache, and on this machine's virtual CPUs reading 2 MB the other core wrote costs
 * about three times reading it from the core's own cache (docs/bench.md). Backward is cut
 * the same way for the bottom diffs, with what of the parameter diffs a slice can do on
 * its own samples (params_samples: a convolution's weight-gradient chunks, from the
 * columns its forward slice left); then each layer of the run adds its parameter diffs
 * over the whole batch (backward_params), as its own backward would. So the bits are
 * those of running the layers one by one, whatever the thread count. */

/* The batch size N when layer i can run on sample ranges now (after its reshape), else
 * -1: a layer type with the hooks whose bottoms and tops all have N samples on axis 0 and
 * no top with a loss weight (those take their diff from the net, nr_net_backward_layer). */
static int64_t slice_batch(const nr_net *n, int i) {
  const nr_layer *l = n->layers[i];
  if (l->nbottom < 1 || l->bottom[0]->num_axes < 1) return -1;
  if (l->type->can_slice && !l->type->can_slice(l)) return -1;
  const int64_t N = l->bottom[0]->shape[0];
  for (int k = 0; k < l->nbottom; k++)
    if (l->bottom[k]->num_axes < 1 || l->bottom[k]->shape[0] != N) return -1;
  for (int t = 0; t < l->ntop; t++)
    if (l->top[t]->num_axes < 1 || l->top[t]->shape[0] != N ||
        n->blob_loss_weight[n->top_blob[i][t]] != 0)
      return -1;
  return N;
}

static bool has_slice_hooks(const nr_net *n, int i) {
  const nr_layer_type *t = n->layers[i]->type;
  return t->forward_samples && t->backward_samples &&
         !(n->trained_layer && n->trained_layer[i] >= 0);
}

/* Parts for a batch of N samples on the threads there are: one per thread, and only when
 * the parts are even enough (N a multiple of the threads, or at least 4 samples each);
 * 0: run the layers one by one. */
static int slice_parts(int64_t N) {
  const int threads = nr__parallel_threads();
  if (threads < 2 || N < 2) return 0;
  if (N % threads != 0 && N < 4 * threads) return 0;
  return threads;
}

typedef struct slice_job {
  nr_net *n;
  int a, b;           /* layers [a, b) */
  int64_t N;
  bool backward;
  pthread_mutex_t mu; /* guards the two below */
  int failed_part;    /* lowest part that failed, or the number of parts */
  nr_error *err;
} slice_job;

static bool slice_part(void *ctx, int p, int parts) {
  slice_job *j = ctx;
  const int64_t n0 = j->N * p / parts, n1 = j->N * (p + 1) / parts;
  nr_error e;
  nr_status st = NR_OK;
  int i = j->a;
  if (!j->backward)
    for (; i < j->b && st == NR_OK; i++)
      st = j->n->layers[i]->type->forward_samples(j->n->layers[i], n0, n1, &e);
  else
    for (i = j->b - 1; i >= j->a && st == NR_OK; i--) {
      nr_layer *l = j->n->layers[i];
      if (l->type->params_samples) st = l->type->params_samples(l, n0, n1, &e);
      if (st == NR_OK) st = l->type->backward_samples(l, n0, n1, &e);
    }
  if (st == NR_OK) return true;
  const nr_layer *l = j->n->layers[j->backward ? i + 1 : i - 1];
  pthread_mutex_lock(&j->mu);
  if (p < j->failed_part) {
    j->failed_part = p;
    *j->err = e;
    layer_fail(j->n, (nr_layer *)l, j->backward ? "backward" : "forward", j->err);
  }
  pthread_mutex_unlock(&j->mu);
  return false;
}

static nr_status run_slices(nr_net *n, int a, int b, int64_t N, int parts, bool backward,
                            nr_error *err) {
  slice_job j = {n, a, b, N, backward, PTHREAD_MUTEX_INITIALIZER, parts, err};
  n->slice_runs++;
  const bool ok = nr__parallel_run(slice_part, &j, parts);
  pthread_mutex_destroy(&j.mu);
  return ok ? NR_OK : err->status;
}

/* Layers [i, *end) form a run that can be cut into sample ranges (each reshaped here):
 * its batch size, or -1 when there is none starting at i. A run of one layer is not cut:
 * the cut pays when a layer reads its input from the same core that wrote it, and a lone
 * layer's input was written split otherwise (CaffeNet's ReLUs and pools between its large
 * convolutions). */
static int64_t forward_run(nr_net *n, int i, int *end, nr_error *err, nr_status *st) {
  int64_t N = -1;
  int k = i;
  for (; k < n->nlayers && has_slice_hooks(n, k); k++) {
    nr_layer *l = n->layers[k];
    if (l->type->reshape && (*st = l->type->reshape(l, err)) != NR_OK) {
      layer_fail(n, l, "reshape", err);
      return -1;
    }
    const int64_t nk = slice_batch(n, k);
    if (nk < 0 || (N >= 0 && nk != N)) break;
    N = nk;
  }
  *end = k;
  return k > i + 1 ? N : -1;
}

nr_status nr_net_forward(nr_net *n, float *loss, nr_error *err) {
  double total = 0;
  for (int i = 0; i < n->nlayers;) {
    nr_status s = NR_OK;
    int end = i;
    const int64_t N = forward_run(n, i, &end, err, &s);
    if (s != NR_OK) return nr_err_prefix(err, "net '%s'", n->name);
    const int parts = N > 0 ? slice_parts(N) : 0;
    if (parts > 0) {
      if (n->interrupt && *n->interrupt) s = interrupted(n, n->layers[i], "forward", err);
      else s = run_slices(n, i, end, N, parts, false, err);
      if (s != NR_OK) return nr_err_prefix(err, "net '%s'", n->name);
      i = end;
      continue;
    }
    /* one layer, or the run [i, end) one by one (a batch too small to cut) */
    for (const int stop = N > 0 ? end : i + 1; i < stop; i++) {
      float l = 0;
      if (nr_net_forward_layer(n, i, &l, err) != NR_OK)
        return nr_err_prefix(err, "net '%s'", n->name);
      total += l;
    }
  }
  n->last_forward_loss = total;
  if (loss) *loss = (float)total;
  return NR_OK;
}

nr_status nr_net_backward_layer(nr_net *n, int i, nr_error *err) {
  nr_layer *l = n->layers[i];
  if (!n->layer_need_backward[i] || !l->type->backward) return NR_OK;
  if (n->interrupt && *n->interrupt) return interrupted(n, l, "backward", err);
  for (int t = 0; t < l->ntop; t++) {
    float wgt = n->blob_loss_weight[n->top_blob[i][t]];
    if (wgt != 0) nr_set(l->top[t]->count, wgt, l->top[t]->diff);
  }
  if (l->type->backward(l, err) != NR_OK) return layer_fail(n, l, "backward", err);
  return NR_OK;
}

nr_status nr_net_backward_layer_all(nr_net *n, int i, nr_error *err) {
  nr_layer *l = n->layers[i];
  if (n->layer_need_backward[i] || !l->type->backward || l->nblobs == 0)
    return nr_net_backward_layer(n, i, err);
  if (n->interrupt && *n->interrupt) return interrupted(n, l, "backward", err);
  if (l->type->backward(l, err) != NR_OK) return layer_fail(n, l, "backward", err);
  return NR_OK;
}

/* Layer i can join a backward run of batch N. */
static bool backward_sliceable(const nr_net *n, int i, int64_t N) {
  return n->layer_need_backward[i] && n->layers[i]->type->backward && has_slice_hooks(n, i) &&
         slice_batch(n, i) == N && N > 0;
}

nr_status nr_net_backward(nr_net *n, nr_error *err) {
  for (int i = n->nlayers - 1; i >= 0;) {
    const int64_t N = n->layer_need_backward[i] && has_slice_hooks(n, i) ? slice_batch(n, i) : -1;
    const int parts = N > 0 ? slice_parts(N) : 0;
    int a = i;
    while (parts > 0 && a > 0 && backward_sliceable(n, a - 1, N)) a--;
    if (a == i) { /* nothing to cut, or a lone layer (not cut: forward_run) */
      if (nr_net_backward_layer(n, i, err) != NR_OK)
        return nr_err_prefix(err, "net '%s'", n->name);
      i--;
      continue;
    }
    nr_status s = n->interrupt && *n->interrupt
                      ? interrupted(n, n->layers[i], "backward", err)
                      : run_slices(n, a, i + 1, N, parts, true, err);
    for (int k = i; k >= a && s == NR_OK; k--) {
      nr_layer *l = n->layers[k];
      if (l->type->backward_params && (s = l->type->backward_params(l, err)) != NR_OK)
        layer_fail(n, l, "backward", err);
    }
    if (s != NR_OK) return nr_err_prefix(err, "net '%s'", n->name);
    i = a - 1;
  }
  return NR_OK;
}

nr_status nr_net_reshape(nr_net *n, nr_error *err) {
  for (int i = 0; i < n->nlayers; i++) {
    nr_layer *l = n->layers[i];
    if (l->type->reshape && l->type->reshape(l, err) != NR_OK) {
      layer_fail(n, l, "reshape", err);
      return nr_err_prefix(err, "net '%s'", n->name);
    }
  }
  return NR_OK;
}

static void zero_range(void *ctx, int64_t lo, int64_t hi) {
  memset((float *)ctx + lo, 0, (size_t)(hi - lo) * sizeof(float));
}

/* Each blob in the ranges the SGD step splits it into (NR_PARALLEL_PARAM_GRAIN), so that
 * a thread clears the part of a diff it updates: a 2-thread LeNet iteration spent
 * ~0.1 ms moving ip1's diff (1.6 MB) between the cores when one thread cleared it all. */
void nr_net_clear_param_diffs(nr_net *n) {
  for (int i = 0; i < n->nlearnable; i++)
    nr__parallel_for(n->learnable[i]->count, NR_PARALLEL_PARAM_GRAIN, zero_range,
                     n->learnable[i]->diff);
}

void nr_net_update(nr_net *n) {
  for (int i = 0; i < n->nlearnable; i++) {
    nr_blob *b = n->learnable[i];
    float *d = b->data;
    const float *g = b->diff;
    for (int64_t k = 0; k < b->count; k++) d[k] -= g[k];
  }
}

/* ---- weights ------------------------------------------------------------------------------ */

static nr_status memory_data_layer(const nr_net *n, const char *layer, nr_layer **out,
                                   nr_error *err) {
  int i = layer ? nr_net_layer_index(n, layer) : 0;
  if (!layer && (n->nlayers == 0 || !nr_memory_data_is(n->layers[0])))
    return nr_err_set(err, NR_ERR_INPUT,
                      "net '%s': set_input_arrays may only be called if the first layer is a "
                      "MemoryData layer", n->name);
  if (i < 0 || !nr_memory_data_is(n->layers[i]))
    return nr_err_set(err, NR_ERR_INPUT, "net '%s' has no MemoryData layer '%s'", n->name,
                      layer);
  *out = n->layers[i];
  return NR_OK;
}

nr_status nr_net_set_input_arrays(nr_net *n, const char *layer, const float *data,
                                  const float *labels, int64_t count, nr_error *err) {
  nr_layer *l = NULL;
  NR_TRY(memory_data_layer(n, layer, &l, err));
  return nr_memory_data_reset(l, data, labels, count, err);
}

nr_status nr_net_memory_data_dims(const nr_net *n, const char *layer, int64_t dims[4],
                                  nr_error *err) {
  nr_layer *l = NULL;
  NR_TRY(memory_data_layer(n, layer, &l, err));
  nr_memory_data_dims(l, dims);
  return NR_OK;
}

nr_status nr_net_share_trained(nr_net *dst, const nr_net *src, nr_error *err) {
  if (!dst->trained_layer && dst->nlayers > 0) {
    if (!(dst->trained_layer = malloc((size_t)dst->nlayers * sizeof *dst->trained_layer)))
      return nr_err_set(err, NR_ERR_NOMEM, "out of memory sharing weights");
  }
  for (int i = 0; i < dst->nlayers; i++) dst->trained_layer[i] = -1;
  dst->trained_from = src;
  for (int i = 0; i < dst->nlayers; i++) {
    nr_layer *l = dst->layers[i];
    if (l->nblobs == 0) continue;
    int si = nr_net_layer_index(src, l->name);
    if (si < 0) continue;
    nr_layer *sl = src->layers[si];
    if (sl->nblobs != l->nblobs)
      return nr_err_set(err, NR_ERR_INPUT,
                        "sharing weights: layer '%s' has %d parameter blobs in net '%s' but %d "
                        "in net '%s'",
                        l->name, l->nblobs, dst->name, sl->nblobs, src->name);
    for (int j = 0; j < l->nblobs; j++) {
      if (!nr_blob_same_shape(l->blobs[j], sl->blobs[j])) {
        char a[256], b[256];
        return nr_err_set(err, NR_ERR_INPUT,
                          "sharing weights: layer '%s' blob %d has shape %s in net '%s' but %s "
                          "in net '%s'",
                          l->name, j, nr_blob_shape_str(l->blobs[j], a, 256), dst->name,
                          nr_blob_shape_str(sl->blobs[j], b, 256), src->name);
      }
    }
    if (strcmp(l->type->name, "Python") == 0) {
      dst->trained_layer[i] = si;
      continue;
    }
    for (int j = 0; j < l->nblobs; j++)
      NR_TRY(nr_blob_share_data(l->blobs[j], sl->blobs[j], err));
  }
  return NR_OK;
}

nr_status nr_net_copy_from(nr_net *n, const Caffe__NetParameter *weights, const char *source,
                           FILE *log, nr_error *err) {
  int copied = 0, with_params = 0;
  for (size_t i = 0; i < weights->n_layer; i++) {
    const Caffe__LayerParameter *sl = weights->layer[i];
    if (!sl->name) continue;
    with_params += sl->n_blobs > 0;
    int li = nr_net_layer_index(n, sl->name);
    if (li < 0) {
      if (log) fprintf(log, "Ignoring source layer %s\n", sl->name);
      continue;
    }
    nr_layer *l = n->layers[li];
    if (sl->n_blobs == 0) continue;
    if (sl->n_blobs != (size_t)l->nblobs)
      return nr_err_set(err, NR_ERR_INPUT,
                        "layer '%s': the weights have %zu parameter blobs, the net has %d",
                        l->name, sl->n_blobs, l->nblobs);
    if (log) fprintf(log, "Copying source layer %s\n", sl->name);
    for (int j = 0; j < l->nblobs; j++)
      NR_TRY(nr_weights_blob_from_proto(l->blobs[j], sl->blobs[j], l->name, j, err));
    copied++;
  }
  if (log && source && copied == 0)
    fprintf(log, "Warning: %s copied no weights into net '%s': %s; every layer keeps the "
            "values its fillers gave it\n", source, n->name,
            weights->n_layer == 0 ? "the file holds no layer (is it empty?)"
            : with_params == 0   ? "no layer in the file has parameters"
                                 : "no layer name of the file is a layer of the net with "
                                   "parameters (renamed layers?)");
  return NR_OK;
}

nr_status nr_net_load_weights(nr_net *n, const char *paths, FILE *log, nr_error *err) {
  char *copy = strdup(paths ? paths : "");
  if (!copy) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  nr_status st = NR_OK;
  char *save = NULL;
  for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
    Caffe__NetParameter *w = NULL;
    if ((st = nr_weights_load(p, &w, err)) != NR_OK) break;
    st = nr_net_copy_from(n, w, p, log, err);
    protobuf_c_message_free_unpacked(&w->base, NULL);
    if (st != NR_OK) {
      nr_err_prefix(err, "%s", p);
      break;
    }
  }
  free(copy);
  return st;
}

nr_status nr_net_to_proto(const nr_net *n, bool write_diff, Caffe__NetParameter **out,
                          nr_error *err) {
  /* Shallow views over the net's own parameters and blob memory, packed once and unpacked
   * into an owned message. */
  nr_status st = NR_OK;
  Caffe__NetParameter np = CAFFE__NET_PARAMETER__INIT;
  np.name = n->name;
  np.n_layer = (size_t)n->nlayers;
  Caffe__LayerParameter *lps = calloc((size_t)n->nlayers + 1, sizeof *lps);
  Caffe__LayerParameter **lpp = calloc((size_t)n->nlayers + 1, sizeof *lpp);
  int total = 0;
  for (int i = 0; i < n->nlayers; i++) total += n->layers[i]->nblobs;
  Caffe__BlobProto *bps = calloc((size_t)total + 1, sizeof *bps);
  Caffe__BlobProto **bpp = calloc((size_t)total + 1, sizeof *bpp);
  Caffe__BlobShape *shapes = calloc((size_t)total + 1, sizeof *shapes);
  uint8_t *buf = NULL;
  if (!lps || !lpp || !bps || !bpp || !shapes) {
    st = nr_err_set(err, NR_ERR_NOMEM, "out of memory serializing the net");
    goto out;
  }
  np.layer = lpp;
  int bi = 0;
  for (int i = 0; i < n->nlayers; i++) {
    nr_layer *l = n->layers[i];
    lps[i] = *l->param;
    lps[i].n_blobs = (size_t)l->nblobs;
    lps[i].blobs = bpp + bi;
    for (int j = 0; j < l->nblobs; j++, bi++) {
      nr_blob *b = l->blobs[j];
      caffe__blob_proto__init(&bps[bi]);
      caffe__blob_shape__init(&shapes[bi]);
      shapes[bi].n_dim = (size_t)b->num_axes;
      shapes[bi].dim = (int64_t *)b->shape;
      bps[bi].shape = &shapes[bi];
      bps[bi].n_data = (size_t)b->count;
      bps[bi].data = b->data;
      if (write_diff) {
        bps[bi].n_diff = (size_t)b->count;
        bps[bi].diff = b->diff;
      }
      bpp[bi] = &bps[bi];
    }
    lpp[i] = &lps[i];
  }
  size_t len = protobuf_c_message_get_packed_size(&np.base);
  buf = malloc(len ? len : 1);
  if (!buf) {
    st = nr_err_set(err, NR_ERR_NOMEM, "out of memory serializing the net (%zu bytes)", len);
    goto out;
  }
  protobuf_c_message_pack(&np.base, buf);
  *out = caffe__net_parameter__unpack(NULL, len, buf);
  if (!*out) st = nr_err_set(err, NR_ERR_NOMEM, "out of memory serializing the net");
out:
  free(buf);
  free(lps);
  free(lpp);
  free(bps);
  free(bpp);
  free(shapes);
  return st;
}

/* ---- test scores ------------------------------------------------------------------------ */

nr_status nr_net_scores_add(nr_net_scores *s, const nr_net *n, nr_error *err) {
  if (!s->sum) {
    int64_t total = 0;
    for (int j = 0; j < n->noutputs; j++) total += n->outputs[j]->count;
    s->sum = calloc((size_t)total + 1, sizeof *s->sum);
    s->counts = calloc((size_t)n->noutputs + 1, sizeof *s->counts);
    if (!s->sum || !s->counts) {
      nr_net_scores_free(s);
      return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    }
    for (int j = 0; j < n->noutputs; j++) s->counts[j] = n->outputs[j]->count;
    s->n = total;
  }
  for (int j = 0; j < n->noutputs; j++)
    if (n->outputs[j]->count != s->counts[j])
      return nr_err_set(err, NR_ERR_INPUT,
                        "output '%s' has %lld elements in batch %d but had %lld in batch 0: "
                        "test scores average each output element over the batches, so an "
                        "output must keep its size", n->outputs[j]->name,
                        (long long)n->outputs[j]->count, s->batches,
                        (long long)s->counts[j]);
  int64_t k = 0;
  for (int j = 0; j < n->noutputs; j++) {
    const nr_blob *b = n->outputs[j];
    for (int64_t e = 0; e < b->count; e++) s->sum[k++] += b->data[e];
  }
  s->batches++;
  return NR_OK;
}

void nr_net_scores_free(nr_net_scores *s) {
  free(s->sum);
  free(s->counts);
  *s = (nr_net_scores){0};
}

float nr_net_output_loss_weight(const nr_net *n, int j) {
  for (int k = 0; k < n->nblobs; k++)
    if (n->blobs[k] == n->outputs[j]) return n->blob_loss_weight[k];
  return 0.0f;
}
