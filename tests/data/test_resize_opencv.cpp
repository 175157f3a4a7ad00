/* test_resize_opencv: nr_image_resize against OpenCV's own cv::resize(INTER_LINEAR) on
 * random 8-bit images, gray and color, of random sizes up and down, exactly half, from and
 * to one pixel, and CaffeNet's 256 -> 227: not one byte may differ (core/image_io.h
 * promises OpenCV's values bit for bit, which is what Caffe's ReadImageToCVMat gives).
 * Built only where OpenCV's imgproc headers are installed (Debian's libopencv-imgproc-dev,
 * in scripts/setup.sh); the netrun library itself never links OpenCV. */
#include <opencv2/imgproc.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

extern "C" {
#include "image_io.h"
}

int main() {
  cv::setNumThreads(1);
  cv::RNG rng(12345);
  long differ = 0, total = 0;
  int failed_cases = 0;
  for (int t = 0; t < 600; t++) {
    int h = 1 + rng.uniform(0, 64), w = 1 + rng.uniform(0, 64);
    int nh = 1 + rng.uniform(0, 96), nw = 1 + rng.uniform(0, 96);
    const int c = t % 2 ? 3 : 1;
    if (t % 5 == 1) { /* exactly half: OpenCV switches to its area code there */
      nh = 1 + rng.uniform(0, 40), nw = 1 + rng.uniform(0, 40);
      h = 2 * nh, w = 2 * nw;
    }
    if (t % 11 == 2) h = 1;
    if (t % 13 == 3) nw = 1;
    if (t % 50 == 0) h = 256, w = 256, nh = 227, nw = 227;
    if (h == nh && w == nw) nw++;
    cv::Mat src(h, w, c == 3 ? CV_8UC3 : CV_8UC1), ref;
    rng.fill(src, cv::RNG::UNIFORM, 0, 256);
    cv::resize(src, ref, cv::Size(nw, nh), 0, 0, cv::INTER_LINEAR);
    std::vector<uint8_t> out((size_t)nh * nw * c);
    nr_image_resize(src.data, h, w, c, out.data(), nh, nw);
    long d = 0;
    for (size_t i = 0; i < out.size(); i++) d += out[i] != ref.data[i];
    if (d && failed_cases++ < 5)
      std::fprintf(stderr, "case %d: %dx%dx%d -> %dx%d: %ld of %zu bytes differ\n", t, h, w, c,
                   nh, nw, d, out.size());
    differ += d;
    total += (long)out.size();
  }
  std::fprintf(stderr, "%s: %ld of %ld bytes differ from cv::resize (OpenCV %s)\n",
               differ ? "FAIL" : "ok  ", differ, total, CV_VERSION);
  return differ ? 1 : 0;
}
