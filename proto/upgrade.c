/* upgrade.c: Caffe's legacy-format upgrades over protobuf-c structs.
 *
 * Moving between generated structs: a pointer that changes owner is set to NULL (or its
 * count to 0) in the old owner before the old owner is freed, so every allocation has
 * exactly one owner at every step and the error path can free the whole net. The V1 ->
 * current step moves the typed `*_param` sub-messages generically: for every message
 * field of V1LayerParameter there is a LayerParameter field of the same name and type,
 * found through the descriptors. */
#include "upgrade.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "binary.h"

#define NOMEM(err) nr_err_set((err), NR_ERR_NOMEM, "out of memory upgrading")

static void *new_msg(const ProtobufCMessageDescriptor *d) {
  ProtobufCMessage *m = malloc(d->sizeof_message);
  if (m) protobuf_c_message_init(d, m);
  return m;
}

static char *dupstr(const char *s) {
  size_t n = strlen(s) + 1;
  char *r = malloc(n);
  if (r) memcpy(r, s, n);
  return r;
}

/* Appends one pointer to a generated repeated pointer field. */
static int push_ptr(size_t *n, void ***arr, void *p) {
  void **na = realloc(*arr, (*n + 1) * sizeof *na);
  if (!na) return -1;
  na[*n] = p;
  *arr = na;
  (*n)++;
  return 0;
}

static int str_present(const char *s, const void *def) { return s && s != def; }

/* ------------------------------------------------------------------------------------ */
/* V1 type names                                                                         */

static const struct { int v1; const char *name; } nr__v1_types[] = {
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__NONE, ""},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__ABSVAL, "AbsVal"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__ACCURACY, "Accuracy"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__ARGMAX, "ArgMax"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__BNLL, "BNLL"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONCAT, "Concat"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONTRASTIVE_LOSS, "ContrastiveLoss"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONVOLUTION, "Convolution"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DECONVOLUTION, "Deconvolution"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DATA, "Data"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DROPOUT, "Dropout"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DUMMY_DATA, "DummyData"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__EUCLIDEAN_LOSS, "EuclideanLoss"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__ELTWISE, "Eltwise"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__EXP, "Exp"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__FLATTEN, "Flatten"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__HDF5_DATA, "HDF5Data"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__HDF5_OUTPUT, "HDF5Output"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__HINGE_LOSS, "HingeLoss"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__IM2COL, "Im2col"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__IMAGE_DATA, "ImageData"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__INFOGAIN_LOSS, "InfogainLoss"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__INNER_PRODUCT, "InnerProduct"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__LRN, "LRN"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__MEMORY_DATA, "MemoryData"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__MULTINOMIAL_LOGISTIC_LOSS, "MultinomialLogisticLoss"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__MVN, "MVN"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__POOLING, "Pooling"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__POWER, "Power"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__RELU, "ReLU"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SIGMOID, "Sigmoid"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SIGMOID_CROSS_ENTROPY_LOSS, "SigmoidCrossEntropyLoss"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SILENCE, "Silence"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SOFTMAX, "Softmax"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SOFTMAX_LOSS, "SoftmaxWithLoss"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SPLIT, "Split"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SLICE, "Slice"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__TANH, "TanH"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__WINDOW_DATA, "WindowData"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__THRESHOLD, "Threshold"},
};

const char *nr_v1_layer_type_name(int v1_type) {
  for (size_t i = 0; i < sizeof nr__v1_types / sizeof nr__v1_types[0]; i++)
    if (nr__v1_types[i].v1 == v1_type) return nr__v1_types[i].name;
  return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* Step 1: V0 -> V1                                                                      */

/* V0 string types and their V1 enum (Caffe's UpgradeV0LayerType). */
static const struct { const char *v0; int v1; } nr__v0_types[] = {
    {"accuracy", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__ACCURACY},
    {"bnll", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__BNLL},
    {"concat", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONCAT},
    {"conv", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONVOLUTION},
    {"data", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DATA},
    {"dropout", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DROPOUT},
    {"euclidean_loss", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__EUCLIDEAN_LOSS},
    {"flatten", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__FLATTEN},
    {"hdf5_data", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__HDF5_DATA},
    {"hdf5_output", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__HDF5_OUTPUT},
    {"im2col", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__IM2COL},
    {"images", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__IMAGE_DATA},
    {"infogain_loss", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__INFOGAIN_LOSS},
    {"innerproduct", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__INNER_PRODUCT},
    {"lrn", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__LRN},
    {"multinomial_logistic_loss", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__MULTINOMIAL_LOGISTIC_LOSS},
    {"pool", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__POOLING},
    {"relu", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__RELU},
    {"sigmoid", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SIGMOID},
    {"softmax", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SOFTMAX},
    {"softmax_loss", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SOFTMAX_LOSS},
    {"split", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SPLIT},
    {"tanh", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__TANH},
    {"window_data", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__WINDOW_DATA},
};

static const char *v0_type(const Caffe__V1LayerParameter *l) {
  return l->layer && l->layer->type ? l->layer->type : "";
}

/* Caffe's UpgradeV0PaddingLayers: a `padding` layer feeding a convolution becomes that
 * convolution's `pad`; the padding layer disappears. */
static nr_status v0_fold_padding(Caffe__NetParameter *net, nr_error *err) {
  size_t out = 0;
  for (size_t i = 0; i < net->n_layers; i++) {
    Caffe__V1LayerParameter *l = net->layers[i];
    if (strcmp(v0_type(l), "padding") == 0) {
      net->layers[out++] = l; /* kept for now; dropped below */
      continue;
    }
    for (size_t b = 0; b < l->n_bottom; b++) {
      /* Find the latest earlier padding layer producing this bottom. */
      for (size_t k = out; k-- > 0;) {
        Caffe__V1LayerParameter *p = net->layers[k];
        int produces = 0;
        for (size_t t = 0; t < p->n_top; t++) produces |= strcmp(p->top[t], l->bottom[b]) == 0;
        if (!produces) continue;
        if (strcmp(v0_type(p), "padding") != 0) break;
        if (strcmp(v0_type(l), "conv") != 0)
          return nr_err_set(
              err, NR_ERR_INPUT,
              "V0 padding layer '%s' feeds layer '%s' of type '%s'; only conv can take padding",
              p->layer->name ? p->layer->name : "",
              l->layer && l->layer->name ? l->layer->name : "", v0_type(l));
        if (p->n_bottom != 1 || p->n_top != 1)
          return nr_err_set(err, NR_ERR_INPUT, "V0 padding layer needs one bottom and one top");
        char *nb = dupstr(p->bottom[0]);
        if (!nb) return NOMEM(err);
        free(l->bottom[b]);
        l->bottom[b] = nb;
        l->layer->has_pad = 1;
        l->layer->pad = p->layer->pad;
        break;
      }
    }
    net->layers[out++] = l;
  }
  net->n_layers = out;
  size_t w = 0;
  for (size_t i = 0; i < net->n_layers; i++) {
    if (strcmp(v0_type(net->layers[i]), "padding") == 0) {
      caffe__v1_layer_parameter__free_unpacked(net->layers[i], NULL);
    } else {
      net->layers[w++] = net->layers[i];
    }
  }
  net->n_layers = w;
  return NR_OK;
}

#define ENSURE(ptr, T, lower)                                             \
  do {                                                                    \
    if (!(ptr)) {                                                         \
      (ptr) = new_msg(&caffe__##lower##__descriptor);                     \
      if (!(ptr)) return NOMEM(err);                                      \
    }                                                                     \
  } while (0)

static nr_status v0_bad_param(const Caffe__V0LayerParameter *v0, const char *param, nr_error *err) {
  return nr_err_set(err, NR_ERR_INPUT,
                    "V0 layer '%s' of type '%s' has parameter '%s', which does not apply to it",
                    v0->name ? v0->name : "", v0->type ? v0->type : "", param);
}

static nr_status push_u32(size_t *n, uint32_t **arr, uint32_t v, nr_error *err) {
  uint32_t *na = realloc(*arr, (*n + 1) * sizeof *na);
  if (!na) return NOMEM(err);
  na[(*n)++] = v;
  *arr = na;
  return NR_OK;
}

/* Caffe's UpgradeV0LayerParameter: moves the flat V0 fields into the V1 typed params. */
static nr_status v0_to_v1(Caffe__V1LayerParameter *l, nr_error *err) {
  Caffe__V0LayerParameter *v0 = l->layer;
  const char *t = v0->type ? v0->type : "";
  int v1 = -1;
  for (size_t i = 0; i < sizeof nr__v0_types / sizeof nr__v0_types[0]; i++)
    if (strcmp(nr__v0_types[i].v0, t) == 0) v1 = nr__v0_types[i].v1;
  if (v1 < 0)
    return nr_err_set(err, NR_ERR_INPUT, "V0 layer '%s' has unknown type '%s'",
                      v0->name ? v0->name : "", t);
  int conv = strcmp(t, "conv") == 0, ip = strcmp(t, "innerproduct") == 0,
      pool = strcmp(t, "pool") == 0;
  int data = strcmp(t, "data") == 0, images = strcmp(t, "images") == 0,
      window = strcmp(t, "window_data") == 0;
  int hdf5 = strcmp(t, "hdf5_data") == 0;
  l->has_type = 1;
  l->type = (Caffe__V1LayerParameter__LayerType)v1;
  if (str_present(v0->name, NULL)) {
    free(l->name);
    l->name = v0->name;
    v0->name = NULL;
  }
  if (v0->has_num_output || v0->has_biasterm || v0->weight_filler || v0->bias_filler) {
    if (conv) {
      ENSURE(l->convolution_param, ConvolutionParameter, convolution_parameter);
      Caffe__ConvolutionParameter *c = l->convolution_param;
      if (v0->has_num_output) c->has_num_output = 1, c->num_output = v0->num_output;
      if (v0->has_biasterm) c->has_bias_term = 1, c->bias_term = v0->biasterm;
      if (v0->weight_filler) c->weight_filler = v0->weight_filler, v0->weight_filler = NULL;
      if (v0->bias_filler) c->bias_filler = v0->bias_filler, v0->bias_filler = NULL;
    } else if (ip) {
      ENSURE(l->inner_product_param, InnerProductParameter, inner_product_parameter);
      Caffe__InnerProductParameter *c = l->inner_product_param;
      if (v0->has_num_output) c->has_num_output = 1, c->num_output = v0->num_output;
      if (v0->has_biasterm) c->has_bias_term = 1, c->bias_term = v0->biasterm;
      if (v0->weight_filler) c->weight_filler = v0->weight_filler, v0->weight_filler = NULL;
      if (v0->bias_filler) c->bias_filler = v0->bias_filler, v0->bias_filler = NULL;
    } else {
      return v0_bad_param(v0, "num_output/biasterm/weight_filler/bias_filler", err);
    }
  }
  if (v0->has_pad) {
    if (!conv) return v0_bad_param(v0, "pad", err);
    ENSURE(l->convolution_param, ConvolutionParameter, convolution_parameter);
    NR_TRY(push_u32(&l->convolution_param->n_pad, &l->convolution_param->pad, v0->pad, err));
  }
  if (v0->has_kernelsize || v0->has_stride) {
    if (conv) {
      ENSURE(l->convolution_param, ConvolutionParameter, convolution_parameter);
      Caffe__ConvolutionParameter *c = l->convolution_param;
      if (v0->has_kernelsize)
        NR_TRY(push_u32(&c->n_kernel_size, &c->kernel_size, v0->kernelsize, err));
      if (v0->has_stride) NR_TRY(push_u32(&c->n_stride, &c->stride, v0->stride, err));
    } else if (pool) {
      ENSURE(l->pooling_param, PoolingParameter, pooling_parameter);
      if (v0->has_kernelsize)
        l->pooling_param->has_kernel_size = 1, l->pooling_param->kernel_size = v0->kernelsize;
      if (v0->has_stride) l->pooling_param->has_stride = 1, l->pooling_param->stride = v0->stride;
    } else {
      return v0_bad_param(v0, "kernelsize/stride", err);
    }
  }
  if (v0->has_group) {
    if (!conv) return v0_bad_param(v0, "group", err);
    ENSURE(l->convolution_param, ConvolutionParameter, convolution_parameter);
    l->convolution_param->has_group = 1;
    l->convolution_param->group = v0->group;
  }
  if (v0->has_pool) {
    if (!pool) return v0_bad_param(v0, "pool", err);
    ENSURE(l->pooling_param, PoolingParameter, pooling_parameter);
    l->pooling_param->has_pool = 1;
    l->pooling_param->pool = (Caffe__PoolingParameter__PoolMethod)v0->pool;
  }
  if (v0->has_dropout_ratio) {
    if (strcmp(t, "dropout") != 0) return v0_bad_param(v0, "dropout_ratio", err);
    ENSURE(l->dropout_param, DropoutParameter, dropout_parameter);
    l->dropout_param->has_dropout_ratio = 1;
    l->dropout_param->dropout_ratio = v0->dropout_ratio;
  }
  if (v0->has_local_size || v0->has_alpha || v0->has_beta || v0->has_k) {
    if (strcmp(t, "lrn") != 0) return v0_bad_param(v0, "local_size/alpha/beta/k", err);
    ENSURE(l->lrn_param, LRNParameter, lrnparameter);
    Caffe__LRNParameter *c = l->lrn_param;
    if (v0->has_local_size) c->has_local_size = 1, c->local_size = v0->local_size;
    if (v0->has_alpha) c->has_alpha = 1, c->alpha = v0->alpha;
    if (v0->has_beta) c->has_beta = 1, c->beta = v0->beta;
    if (v0->has_k) c->has_k = 1, c->k = v0->k;
  }
  /* Data-ish fields. V0 data layers keep scale/meanfile/cropsize/mirror in their data
   * params here; step 2 moves them to transform_param. */
  int dataish = v0->source || v0->has_scale || v0->meanfile || v0->has_batchsize ||
                v0->has_cropsize || v0->has_mirror || v0->has_rand_skip;
  if (dataish) {
    if (data) {
      ENSURE(l->data_param, DataParameter, data_parameter);
      Caffe__DataParameter *c = l->data_param;
      if (v0->source) c->source = v0->source, v0->source = NULL;
      if (v0->has_scale) c->has_scale = 1, c->scale = v0->scale;
      if (v0->meanfile) c->mean_file = v0->meanfile, v0->meanfile = NULL;
      if (v0->has_batchsize) c->has_batch_size = 1, c->batch_size = v0->batchsize;
      if (v0->has_cropsize) c->has_crop_size = 1, c->crop_size = v0->cropsize;
      if (v0->has_mirror) c->has_mirror = 1, c->mirror = v0->mirror;
      if (v0->has_rand_skip) c->has_rand_skip = 1, c->rand_skip = v0->rand_skip;
    } else if (images) {
      ENSURE(l->image_data_param, ImageDataParameter, image_data_parameter);
      Caffe__ImageDataParameter *c = l->image_data_param;
      if (v0->source) c->source = v0->source, v0->source = NULL;
      if (v0->has_scale) c->has_scale = 1, c->scale = v0->scale;
      if (v0->meanfile) c->mean_file = v0->meanfile, v0->meanfile = NULL;
      if (v0->has_batchsize) c->has_batch_size = 1, c->batch_size = v0->batchsize;
      if (v0->has_cropsize) c->has_crop_size = 1, c->crop_size = v0->cropsize;
      if (v0->has_mirror) c->has_mirror = 1, c->mirror = v0->mirror;
      if (v0->has_rand_skip) c->has_rand_skip = 1, c->rand_skip = v0->rand_skip;
    } else if (window) {
      if (v0->has_rand_skip) return v0_bad_param(v0, "rand_skip", err);
      ENSURE(l->window_data_param, WindowDataParameter, window_data_parameter);
      Caffe__WindowDataParameter *c = l->window_data_param;
      if (v0->source) c->source = v0->source, v0->source = NULL;
      if (v0->has_scale) c->has_scale = 1, c->scale = v0->scale;
      if (v0->meanfile) c->mean_file = v0->meanfile, v0->meanfile = NULL;
      if (v0->has_batchsize) c->has_batch_size = 1, c->batch_size = v0->batchsize;
      if (v0->has_cropsize) c->has_crop_size = 1, c->crop_size = v0->cropsize;
      if (v0->has_mirror) c->has_mirror = 1, c->mirror = v0->mirror;
    } else if (hdf5 && !v0->has_scale && !v0->meanfile && !v0->has_cropsize && !v0->has_mirror &&
               !v0->has_rand_skip) {
      ENSURE(l->hdf5_data_param, HDF5DataParameter, hdf5_data_parameter);
      if (v0->source) l->hdf5_data_param->source = v0->source, v0->source = NULL;
      if (v0->has_batchsize)
        l->hdf5_data_param->has_batch_size = 1, l->hdf5_data_param->batch_size = v0->batchsize;
    } else if (strcmp(t, "infogain_loss") == 0 && v0->source && !v0->has_batchsize &&
               !v0->has_scale) {
      ENSURE(l->infogain_loss_param, InfogainLossParameter, infogain_loss_parameter);
      l->infogain_loss_param->source = v0->source;
      v0->source = NULL;
    } else {
      return v0_bad_param(v0, "source/scale/meanfile/batchsize/cropsize/mirror/rand_skip", err);
    }
  }
  if (v0->has_shuffle_images || v0->has_new_height || v0->has_new_width) {
    if (!images) return v0_bad_param(v0, "shuffle_images/new_height/new_width", err);
    ENSURE(l->image_data_param, ImageDataParameter, image_data_parameter);
    Caffe__ImageDataParameter *c = l->image_data_param;
    if (v0->has_shuffle_images) c->has_shuffle = 1, c->shuffle = v0->shuffle_images;
    if (v0->has_new_height) c->has_new_height = 1, c->new_height = (uint32_t)v0->new_height;
    if (v0->has_new_width) c->has_new_width = 1, c->new_width = (uint32_t)v0->new_width;
  }
  if (v0->has_concat_dim) {
    if (strcmp(t, "concat") != 0) return v0_bad_param(v0, "concat_dim", err);
    ENSURE(l->concat_param, ConcatParameter, concat_parameter);
    l->concat_param->has_concat_dim = 1;
    l->concat_param->concat_dim = v0->concat_dim;
  }
  if (v0->has_det_fg_threshold || v0->has_det_bg_threshold || v0->has_det_fg_fraction ||
      v0->has_det_context_pad ||
      str_present(v0->det_crop_mode, caffe__v0_layer_parameter__det_crop_mode__default_value)) {
    if (!window) return v0_bad_param(v0, "det_*", err);
    ENSURE(l->window_data_param, WindowDataParameter, window_data_parameter);
    Caffe__WindowDataParameter *c = l->window_data_param;
    if (v0->has_det_fg_threshold) c->has_fg_threshold = 1, c->fg_threshold = v0->det_fg_threshold;
    if (v0->has_det_bg_threshold) c->has_bg_threshold = 1, c->bg_threshold = v0->det_bg_threshold;
    if (v0->has_det_fg_fraction) c->has_fg_fraction = 1, c->fg_fraction = v0->det_fg_fraction;
    if (v0->has_det_context_pad) c->has_context_pad = 1, c->context_pad = v0->det_context_pad;
    if (str_present(v0->det_crop_mode, caffe__v0_layer_parameter__det_crop_mode__default_value)) {
      c->crop_mode = v0->det_crop_mode;
      v0->det_crop_mode = NULL;
    }
  }
  if (v0->hdf5_output_param) {
    if (strcmp(t, "hdf5_output") != 0) return v0_bad_param(v0, "hdf5_output_param", err);
    if (l->hdf5_output_param)
      caffe__hdf5_output_parameter__free_unpacked(l->hdf5_output_param, NULL);
    l->hdf5_output_param = v0->hdf5_output_param;
    v0->hdf5_output_param = NULL;
  }
  /* Learned blobs and their rates move as they are. */
  if (v0->n_blobs) {
    for (size_t i = 0; i < l->n_blobs; i++) caffe__blob_proto__free_unpacked(l->blobs[i], NULL);
    free(l->blobs);
    l->blobs = v0->blobs, l->n_blobs = v0->n_blobs;
    v0->blobs = NULL, v0->n_blobs = 0;
  }
  if (v0->n_blobs_lr) {
    free(l->blobs_lr);
    l->blobs_lr = v0->blobs_lr, l->n_blobs_lr = v0->n_blobs_lr;
    v0->blobs_lr = NULL, v0->n_blobs_lr = 0;
  }
  if (v0->n_weight_decay) {
    free(l->weight_decay);
    l->weight_decay = v0->weight_decay, l->n_weight_decay = v0->n_weight_decay;
    v0->weight_decay = NULL, v0->n_weight_decay = 0;
  }
  caffe__v0_layer_parameter__free_unpacked(l->layer, NULL);
  l->layer = NULL;
  return NR_OK;
}

static nr_status upgrade_v0(Caffe__NetParameter *net, int *changed, nr_error *err) {
  int any = 0;
  for (size_t i = 0; i < net->n_layers; i++) any |= net->layers[i]->layer != NULL;
  if (!any) return NR_OK;
  *changed = 1;
  NR_TRY(v0_fold_padding(net, err));
  for (size_t i = 0; i < net->n_layers; i++) {
    if (!net->layers[i]->layer) continue;
    nr_status s = v0_to_v1(net->layers[i], err);
    if (s != NR_OK) return nr_err_prefix(err, "layer %zu", i);
  }
  return NR_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Step 2: data transformation params                                                    */

/* Caffe's UpgradeNetDataTransformation: the four transform settings once lived in each
 * data layer's own params; they now live in transform_param. Only V1 layers are
 * touched, as in Caffe. */
#define MOVE_TRANSFORM(P, DEFAULT_MEAN)                                                   \
  do {                                                                                    \
    if ((P) && ((P)->has_scale || str_present((P)->mean_file, DEFAULT_MEAN) ||            \
                (P)->has_crop_size || (P)->has_mirror)) {                                 \
      ENSURE(l->transform_param, TransformationParameter, transformation_parameter);      \
      Caffe__TransformationParameter *tp = l->transform_param;                            \
      if ((P)->has_scale) tp->has_scale = 1, tp->scale = (P)->scale, (P)->has_scale = 0;  \
      if (str_present((P)->mean_file, DEFAULT_MEAN)) {                                    \
        free(tp->mean_file);                                                              \
        tp->mean_file = (P)->mean_file;                                                   \
        (P)->mean_file = NULL;                                                            \
      }                                                                                   \
      if ((P)->has_crop_size)                                                             \
        tp->has_crop_size = 1, tp->crop_size = (P)->crop_size, (P)->has_crop_size = 0;    \
      if ((P)->has_mirror) tp->has_mirror = 1, tp->mirror = (P)->mirror, (P)->has_mirror = 0; \
      *changed = 1;                                                                       \
    }                                                                                     \
  } while (0)

static nr_status upgrade_data_transform(Caffe__NetParameter *net, int *changed, nr_error *err) {
  for (size_t i = 0; i < net->n_layers; i++) {
    Caffe__V1LayerParameter *l = net->layers[i];
    if (l->type == CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DATA) MOVE_TRANSFORM(l->data_param, NULL);
    if (l->type == CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__IMAGE_DATA)
      MOVE_TRANSFORM(l->image_data_param, NULL);
    if (l->type == CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__WINDOW_DATA)
      MOVE_TRANSFORM(l->window_data_param, NULL);
  }
  return NR_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Step 3: V1 -> current                                                                 */

static nr_status v1_to_layer(Caffe__V1LayerParameter *v1, Caffe__LayerParameter **out,
                             nr_error *err) {
  Caffe__LayerParameter *l = new_msg(&caffe__layer_parameter__descriptor);
  if (!l) return NOMEM(err);
  nr_status s = NR_OK;
  const char *tn = nr_v1_layer_type_name(v1->type);
  if (!tn) {
    s = nr_err_set(err, NR_ERR_INPUT, "V1 layer '%s' has unknown type %d", v1->name ? v1->name : "",
                   (int)v1->type);
    goto fail;
  }
  if (!(l->type = dupstr(tn))) goto nomem;
  l->name = v1->name, v1->name = NULL;
  l->n_bottom = v1->n_bottom, l->bottom = v1->bottom, v1->n_bottom = 0, v1->bottom = NULL;
  l->n_top = v1->n_top, l->top = v1->top, v1->n_top = 0, v1->top = NULL;
  l->n_blobs = v1->n_blobs, l->blobs = v1->blobs, v1->n_blobs = 0, v1->blobs = NULL;
  l->n_include = v1->n_include, l->include = v1->include, v1->n_include = 0, v1->include = NULL;
  l->n_exclude = v1->n_exclude, l->exclude = v1->exclude, v1->n_exclude = 0, v1->exclude = NULL;
  l->n_loss_weight = v1->n_loss_weight, l->loss_weight = v1->loss_weight;
  v1->n_loss_weight = 0, v1->loss_weight = NULL;
  /* param names, share modes, rates and decays -> one ParamSpec per index. */
  size_t np = v1->n_param;
  if (v1->n_blob_share_mode > np) np = v1->n_blob_share_mode;
  if (v1->n_blobs_lr > np) np = v1->n_blobs_lr;
  if (v1->n_weight_decay > np) np = v1->n_weight_decay;
  for (size_t i = 0; i < np; i++) {
    Caffe__ParamSpec *ps = new_msg(&caffe__param_spec__descriptor);
    if (!ps) goto nomem;
    if (push_ptr(&l->n_param, (void ***)&l->param, ps)) {
      caffe__param_spec__free_unpacked(ps, NULL);
      goto nomem;
    }
    if (i < v1->n_param) ps->name = v1->param[i], v1->param[i] = NULL;
    if (i < v1->n_blob_share_mode)
      ps->has_share_mode = 1,
      ps->share_mode = (Caffe__ParamSpec__DimCheckMode)v1->blob_share_mode[i];
    if (i < v1->n_blobs_lr) ps->has_lr_mult = 1, ps->lr_mult = v1->blobs_lr[i];
    if (i < v1->n_weight_decay) ps->has_decay_mult = 1, ps->decay_mult = v1->weight_decay[i];
  }
  /* Every typed *_param message field moves to the same-named LayerParameter field. */
  const ProtobufCMessageDescriptor *vd = &caffe__v1_layer_parameter__descriptor;
  const ProtobufCMessageDescriptor *ld = &caffe__layer_parameter__descriptor;
  for (unsigned i = 0; i < vd->n_fields; i++) {
    const ProtobufCFieldDescriptor *vf = &vd->fields[i];
    if (vf->type != PROTOBUF_C_TYPE_MESSAGE || vf->label != PROTOBUF_C_LABEL_OPTIONAL) continue;
    if (strcmp(vf->name, "layer") == 0) continue;
    ProtobufCMessage **src = (ProtobufCMessage **)((char *)v1 + vf->offset);
    if (!*src) continue;
    const ProtobufCFieldDescriptor *lf =
        protobuf_c_message_descriptor_get_field_by_name(ld, vf->name);
    if (!lf || lf->descriptor != vf->descriptor) {
      s = nr_err_set(err, NR_ERR_INTERNAL, "no LayerParameter field for V1 field '%s'", vf->name);
      goto fail;
    }
    *(ProtobufCMessage **)((char *)l + lf->offset) = *src;
    *src = NULL;
  }
  *out = l;
  return NR_OK;
nomem:
  s = NOMEM(err);
fail:
  caffe__layer_parameter__free_unpacked(l, NULL);
  return s;
}

static nr_status upgrade_v1(Caffe__NetParameter *net, int *changed, nr_error *err) {
  if (net->n_layers == 0) return NR_OK;
  if (net->n_layer > 0)
    return nr_err_set(
        err, NR_ERR_INPUT,
        "net has both 'layer' (current) and 'layers' (V1) fields; use one format only");
  *changed = 1;
  Caffe__LayerParameter **arr = calloc(net->n_layers, sizeof *arr);
  if (!arr) return NOMEM(err);
  for (size_t i = 0; i < net->n_layers; i++) {
    nr_status s = v1_to_layer(net->layers[i], &arr[i], err);
    if (s != NR_OK) {
      for (size_t k = 0; k < i; k++) caffe__layer_parameter__free_unpacked(arr[k], NULL);
      free(arr);
      return nr_err_prefix(err, "layer %zu", i);
    }
  }
  for (size_t i = 0; i < net->n_layers; i++)
    caffe__v1_layer_parameter__free_unpacked(net->layers[i], NULL);
  free(net->layers);
  net->layers = NULL;
  net->layer = arr;
  net->n_layer = net->n_layers;
  net->n_layers = 0;
  return NR_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Step 4: net inputs -> Input layer                                                     */

static nr_status upgrade_input(Caffe__NetParameter *net, int *changed, nr_error *err) {
  if (net->n_input == 0) {
    if (net->n_input_dim || net->n_input_shape)
      return nr_err_set(err, NR_ERR_INPUT, "net has input_dim/input_shape but no 'input' names");
    return NR_OK;
  }
  *changed = 1;
  int has_shape = net->n_input_shape > 0;
  if (has_shape || net->n_input_dim > 0) {
    if (has_shape && net->n_input_dim)
      return nr_err_set(err, NR_ERR_INPUT, "net gives both input_shape and input_dim; use one");
    if (has_shape && net->n_input_shape != net->n_input)
      return nr_err_set(err, NR_ERR_INPUT, "net has %zu inputs but %zu input_shape entries",
                        net->n_input, net->n_input_shape);
    if (!has_shape && net->n_input_dim != 4 * net->n_input)
      return nr_err_set(err, NR_ERR_INPUT,
                        "net has %zu inputs but %zu input_dim values (need 4 per input)",
                        net->n_input, net->n_input_dim);
    Caffe__LayerParameter *l = new_msg(&caffe__layer_parameter__descriptor);
    if (!l) return NOMEM(err);
    Caffe__LayerParameter **arr = realloc(net->layer, (net->n_layer + 1) * sizeof *arr);
    if (!arr) {
      caffe__layer_parameter__free_unpacked(l, NULL);
      return NOMEM(err);
    }
    memmove(arr + 1, arr, net->n_layer * sizeof *arr);
    arr[0] = l;
    net->layer = arr;
    net->n_layer++;
    if (!(l->name = dupstr("input")) || !(l->type = dupstr("Input"))) return NOMEM(err);
    l->input_param = new_msg(&caffe__input_parameter__descriptor);
    if (!l->input_param) return NOMEM(err);
    l->input_param->shape = calloc(net->n_input, sizeof *l->input_param->shape);
    if (!l->input_param->shape) return NOMEM(err);
    /* tops take the input names; shapes move or are built from 4 dims each */
    l->top = net->input, l->n_top = net->n_input;
    net->input = NULL, net->n_input = 0;
    for (size_t i = 0; i < l->n_top; i++) {
      Caffe__BlobShape *bs;
      if (has_shape) {
        bs = net->input_shape[i];
        net->input_shape[i] = NULL;
      } else {
        bs = new_msg(&caffe__blob_shape__descriptor);
        if (!bs || !(bs->dim = malloc(4 * sizeof *bs->dim))) {
          free(bs);
          return NOMEM(err);
        }
        bs->n_dim = 4;
        for (int j = 0; j < 4; j++) bs->dim[j] = net->input_dim[4 * i + (size_t)j];
      }
      l->input_param->shape[l->input_param->n_shape++] = bs;
    }
  }
  for (size_t i = 0; i < net->n_input; i++) free(net->input[i]);
  free(net->input);
  net->input = NULL, net->n_input = 0;
  for (size_t i = 0; i < net->n_input_shape; i++)
    if (net->input_shape[i]) caffe__blob_shape__free_unpacked(net->input_shape[i], NULL);
  free(net->input_shape);
  net->input_shape = NULL, net->n_input_shape = 0;
  free(net->input_dim);
  net->input_dim = NULL, net->n_input_dim = 0;
  return NR_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Steps 5 and 6                                                                         */

static void upgrade_batchnorm(Caffe__NetParameter *net, int *changed) {
  for (size_t i = 0; i < net->n_layer; i++) {
    Caffe__LayerParameter *l = net->layer[i];
    if (!l->type || strcmp(l->type, "BatchNorm") != 0 || l->n_param != 3) continue;
    for (size_t k = 0; k < 3; k++) {
      Caffe__ParamSpec *p = l->param[k];
      if (!p->has_lr_mult || p->lr_mult != 0.f || !p->has_decay_mult || p->decay_mult != 0.f)
        *changed = 1;
      p->has_lr_mult = 1, p->lr_mult = 0.f;
      p->has_decay_mult = 1, p->decay_mult = 0.f;
    }
  }
}

/* netrun: legacy 4-D blob dims become a 4-axis BlobShape, so later code sees one form. */
static nr_status upgrade_blob_shapes(Caffe__NetParameter *net, int *changed, nr_error *err) {
  for (size_t i = 0; i < net->n_layer; i++) {
    Caffe__LayerParameter *l = net->layer[i];
    for (size_t k = 0; k < l->n_blobs; k++) {
      Caffe__BlobProto *b = l->blobs[k];
      if (!(b->has_num || b->has_channels || b->has_height || b->has_width)) continue;
      int64_t dims[NR_BLOB_MAX_AXES];
      int n = 0;
      nr_status s = nr_blobproto_shape(b, dims, &n, err);
      if (s != NR_OK) return nr_err_prefix(err, "layer '%s' blob %zu", l->name ? l->name : "", k);
      Caffe__BlobShape *bs = new_msg(&caffe__blob_shape__descriptor);
      if (!bs || !(bs->dim = malloc(4 * sizeof *bs->dim))) {
        free(bs);
        return NOMEM(err);
      }
      bs->n_dim = 4;
      memcpy(bs->dim, dims, 4 * sizeof *dims);
      if (b->shape) caffe__blob_shape__free_unpacked(b->shape, NULL);
      b->shape = bs;
      b->has_num = b->has_channels = b->has_height = b->has_width = 0;
      b->num = b->channels = b->height = b->width = 0;
      *changed = 1;
    }
  }
  return NR_OK;
}

nr_status nr_upgrade_net(Caffe__NetParameter *net, int *changed, nr_error *err) {
  int ch = 0;
  NR_TRY(upgrade_v0(net, &ch, err));
  NR_TRY(upgrade_data_transform(net, &ch, err));
  NR_TRY(upgrade_v1(net, &ch, err));
  NR_TRY(upgrade_input(net, &ch, err));
  upgrade_batchnorm(net, &ch);
  NR_TRY(upgrade_blob_shapes(net, &ch, err));
  if (changed) *changed = ch;
  return NR_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Solver                                                                                */

nr_status nr_upgrade_solver(Caffe__SolverParameter *sp, int *changed, nr_error *err) {
  static const char *names[] = {"SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"};
  int ch = 0, c = 0;
  if (sp->has_solver_type) {
    if (str_present(sp->type, caffe__solver_parameter__type__default_value))
      return nr_err_set(err, NR_ERR_INPUT,
                        "solver gives both the old 'solver_type' (enum) and the new 'type' "
                        "(string); keep only 'type'");
    if (sp->solver_type < 0 || (size_t)sp->solver_type >= sizeof names / sizeof names[0])
      return nr_err_set(err, NR_ERR_INPUT, "unknown solver_type %d", (int)sp->solver_type);
    char *t = dupstr(names[sp->solver_type]);
    if (!t) return NOMEM(err);
    sp->type = t;
    sp->has_solver_type = 0;
    sp->solver_type = CAFFE__SOLVER_PARAMETER__SOLVER_TYPE__SGD;
    ch = 1;
  }
  if (sp->net_param) {
    NR_TRY(nr_upgrade_net(sp->net_param, &c, err));
    ch |= c;
  }
  if (sp->train_net_param) {
    NR_TRY(nr_upgrade_net(sp->train_net_param, &c, err));
    ch |= c;
  }
  for (size_t i = 0; i < sp->n_test_net_param; i++) {
    NR_TRY(nr_upgrade_net(sp->test_net_param[i], &c, err));
    ch |= c;
  }
  if (changed) *changed = ch;
  return NR_OK;
}

nr_status nr_solver_default_snapshot_prefix(Caffe__SolverParameter *sp, const char *solver_path,
                                            nr_error *err) {
  const char *slash = strrchr(solver_path, '/');
  const char *base = slash ? slash + 1 : solver_path;
  const char *dot = strrchr(base, '.');
  size_t stem_len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
  char *np = NULL;
  if (!sp->snapshot_prefix) {
    size_t n = (size_t)(base - solver_path) + stem_len;
    if (!(np = malloc(n + 1))) return NOMEM(err);
    memcpy(np, solver_path, n);
    np[n] = 0;
  } else {
    struct stat st;
    if (stat(sp->snapshot_prefix, &st) != 0 || !S_ISDIR(st.st_mode)) return NR_OK;
    size_t pl = strlen(sp->snapshot_prefix);
    int need_slash = pl > 0 && sp->snapshot_prefix[pl - 1] != '/';
    if (!(np = malloc(pl + 1 + stem_len + 1))) return NOMEM(err);
    memcpy(np, sp->snapshot_prefix, pl);
    if (need_slash) np[pl++] = '/';
    memcpy(np + pl, base, stem_len);
    np[pl + stem_len] = 0;
    free(sp->snapshot_prefix);
  }
  sp->snapshot_prefix = np;
  return NR_OK;
}
