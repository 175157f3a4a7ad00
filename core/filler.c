#include "filler.h"

#include <math.h>
#include <string.h>

#define NR_FILLER_KNOWN "constant, gaussian, uniform, xavier, msra, positive_unitball, bilinear"

static nr_status need_rng(const nr_rng *rng, const char *type, nr_error *err) {
  if (!rng)
    return nr_err_set(err, NR_ERR_INTERNAL, "filler '%s' needs a random number generator",
                      type);
  return NR_OK;
}

static nr_status no_sparse(const Caffe__FillerParameter *fp, const char *type,
                           nr_error *err) {
  if (fp->sparse != -1)
    return nr_err_set(err, NR_ERR_INPUT,
                      "filler '%s' does not support sparse (got sparse: %d; only "
                      "'gaussian' does)",
                      type, (int)fp->sparse);
  return NR_OK;
}

static void fill_uniform(float *restrict x, int64_t n, float lo, float hi, nr_rng *rng) {
  for (int64_t i = 0; i < n; i++) x[i] = nr_rng_uniform_range(rng, lo, hi);
}

static void fill_gaussian(float *restrict x, int64_t n, float mean, float std, nr_rng *rng) {
  nr_rng_gaussian_fill(rng, n, mean, std, x);
}

/* Caffe's fan-in/fan-out: a blob (num, channels, ...) has fan_in = count / num and
 * fan_out = count / channels (count when there is no second axis). */
static nr_status variance_n(const nr_blob *b, const Caffe__FillerParameter *fp,
                            const char *type, double *n, nr_error *err) {
  if (b->num_axes < 1 || b->shape[0] == 0)
    return nr_err_set(err, NR_ERR_INPUT, "filler '%s' needs a blob with at least 1 axis",
                      type);
  double fan_in = (double)(b->count / b->shape[0]);
  double fan_out =
      b->num_axes > 1 && b->shape[1] > 0 ? (double)(b->count / b->shape[1]) : (double)b->count;
  switch (fp->variance_norm) {
  case CAFFE__FILLER_PARAMETER__VARIANCE_NORM__FAN_OUT: *n = fan_out; break;
  case CAFFE__FILLER_PARAMETER__VARIANCE_NORM__AVERAGE: *n = (fan_in + fan_out) / 2; break;
  default: *n = fan_in; break;
  }
  if (!(*n > 0))
    return nr_err_set(err, NR_ERR_INPUT, "filler '%s': fan is 0 for this blob shape", type);
  return NR_OK;
}

nr_status nr_fill(nr_blob *b, const Caffe__FillerParameter *fp, nr_rng *rng, nr_error *err) {
  static const Caffe__FillerParameter default_fp = CAFFE__FILLER_PARAMETER__INIT;
  if (!fp) fp = &default_fp;
  const char *type = fp->type ? fp->type : "constant";
  if (!b->shaped)
    return nr_err_set(err, NR_ERR_INTERNAL, "filler '%s' given an unshaped blob", type);
  float *restrict x = b->data;
  const int64_t n = b->count;

  if (strcmp(type, "constant") == 0) {
    NR_TRY(no_sparse(fp, type, err));
    const float v = fp->value;
    for (int64_t i = 0; i < n; i++) x[i] = v;
    return NR_OK;
  }
  if (strcmp(type, "uniform") == 0) {
    NR_TRY(no_sparse(fp, type, err));
    NR_TRY(need_rng(rng, type, err));
    fill_uniform(x, n, fp->min, fp->max, rng);
    return NR_OK;
  }
  if (strcmp(type, "gaussian") == 0) {
    NR_TRY(need_rng(rng, type, err));
    fill_gaussian(x, n, fp->mean, fp->std, rng);
    if (fp->sparse >= 0 && n) {
      if (b->num_axes < 1)
        return nr_err_set(err, NR_ERR_INPUT, "sparse gaussian filler needs a blob with axes");
      /* Each output (row) keeps `sparse` inputs on average. */
      const double p = (double)fp->sparse / (double)b->shape[0];
      if (p > 1)
        return nr_err_set(err, NR_ERR_INPUT,
                          "sparse gaussian filler: sparse %d exceeds the number of outputs "
                          "%lld",
                          (int)fp->sparse, (long long)b->shape[0]);
      for (int64_t i = 0; i < n; i++)
        if (!nr_rng_bernoulli(rng, p)) x[i] = 0.0f;
    }
    return NR_OK;
  }
  if (strcmp(type, "positive_unitball") == 0) {
    NR_TRY(no_sparse(fp, type, err));
    NR_TRY(need_rng(rng, type, err));
    if (!n) return NR_OK;
    fill_uniform(x, n, 0.0f, 1.0f, rng);
    const int64_t rows = b->num_axes >= 1 ? b->shape[0] : 1;
    const int64_t dim = n / rows;
    for (int64_t r = 0; r < rows; r++) {
      float *restrict row = x + r * dim;
      double s = 0;
      for (int64_t j = 0; j < dim; j++) s += row[j];
      const float inv = (float)(1.0 / s);
      for (int64_t j = 0; j < dim; j++) row[j] *= inv;
    }
    return NR_OK;
  }
  if (strcmp(type, "xavier") == 0 || strcmp(type, "msra") == 0) {
    NR_TRY(no_sparse(fp, type, err));
    NR_TRY(need_rng(rng, type, err));
    if (!n) return NR_OK;
    double fan = 0;
    NR_TRY(variance_n(b, fp, type, &fan, err));
    if (type[0] == 'x') {
      const float s = (float)sqrt(3.0 / fan);
      fill_uniform(x, n, -s, s, rng);
    } else {
      fill_gaussian(x, n, 0.0f, (float)sqrt(2.0 / fan), rng);
    }
    return NR_OK;
  }
  if (strcmp(type, "bilinear") == 0) {
    NR_TRY(no_sparse(fp, type, err));
    if (b->num_axes != 4)
      return nr_err_set(err, NR_ERR_INPUT,
                        "bilinear filler needs a 4-D blob, got %d axes", b->num_axes);
    const int64_t w = b->shape[3], h = b->shape[2];
    if (w != h)
      return nr_err_set(err, NR_ERR_INPUT,
                        "bilinear filler needs a square kernel, got %lld x %lld",
                        (long long)h, (long long)w);
    if (!n) return NR_OK;
    const int64_t f = (w + 1) / 2; /* ceil(w / 2) */
    const double c = (double)(w - 1) / (2.0 * (double)f);
    for (int64_t i = 0; i < n; i++) {
      const double xx = (double)(i % w), yy = (double)((i / w) % h);
      x[i] = (float)((1 - fabs(xx / (double)f - c)) * (1 - fabs(yy / (double)f - c)));
    }
    return NR_OK;
  }
  return nr_err_set(err, NR_ERR_INPUT, "unknown filler type '%s' (known: " NR_FILLER_KNOWN ")",
                    type);
}
