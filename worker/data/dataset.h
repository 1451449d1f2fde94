// Image data sets held as bytes: the IDX format of MNIST (gzip or raw), and
// the fixed train/validation/test split of a task. No LibTorch here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace hpo::worker {

struct ImageSet {
  int64_t count = 0;
  int channels = 1, height = 0, width = 0;
  int num_classes = 0;            // max label + 1 over the whole data set
  std::vector<uint8_t> pixels;    // count * channels * height * width, NCHW
  std::vector<uint8_t> labels;    // count

  int64_t image_size() const { return static_cast<int64_t>(channels) * height * width; }
};

// Reads an IDX image file and its label file (each either raw or gzip, found
// by trying PATH then PATH.gz). kNotFound when missing, kDataLoss when
// malformed (bad magic, truncated, counts that disagree, images under 8x8).
[[nodiscard]] absl::StatusOr<ImageSet> ReadIdx(const std::string& images_path,
                                               const std::string& labels_path);

// Reads the CIFAR-10 binary format: DIR/data_batch_{1..5}.bin (training) or
// DIR/test_batch.bin, records of 1 label byte + 3x32x32 pixel bytes (CHW).
[[nodiscard]] absl::StatusOr<ImageSet> ReadCifar(const std::vector<std::string>& files);

struct DataSplit {
  ImageSet train, val, test;  // test.count 0: the data set has no test split
  std::string format;         // "image_folder", "idx" or "cifar10"
  std::vector<std::string> class_names;  // by label
  int64_t skipped_files = 0;  // image folders: files that are not usable images
  std::vector<std::string> skipped_examples;  // the first few, "path: why"
  bool from_cache = false;    // image folders: mapped from the decoded-image cache
};

struct SplitOptions {
  int train_examples = 0;   // 0: all that remain after validation
  int val_examples = 0;     // 0: all of an image folder's val/; else 10,000 (IDX, CIFAR) or 20% (image folders)
  int test_examples = 0;    // 0: all
  uint64_t seed = 0;
  // Make the training split imbalanced on purpose: keep only this fraction of
  // these classes' training images (validation and test stay representative).
  std::vector<int> imbalance_classes;
  double imbalance_keep = 1.0;
  // Image folders only: size, channels and fitting (0: from the data), decoding threads, cache.
  int image_height = 0, image_width = 0, channels = 0;
  std::string resize;       // "stretch" (default), "pad", "crop"
  int threads = 1;
  std::string cache_dir;    // "": no decoded-image cache
};

// Loads DATA_ROOT/NAME/ in the IDX format ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]),
// or, when DATA_ROOT/NAME/data_batch_1.bin exists, the CIFAR-10 binary format, or else as an
// image folder (image_folder.h). Without a val/ folder, the training images are split with a
// permutation fixed by `seed`: the last `val_examples` images of the permutation are
// validation, the first `train_examples` (0: all the rest) are training. With val/, validation
// is val/ as it stands (or `val_examples` of it drawn by `seed`). `test_examples` (0: all) are
// taken from the start of the test files (image folders: drawn from test/ by `seed`); they are
// never used to choose anything. A NAME that leaves DATA_ROOT (absolute, "..", or a symbolic
// link out of it) is refused with kInvalidArgument.
[[nodiscard]] absl::StatusOr<std::shared_ptr<const DataSplit>> LoadSplit(const std::string& data_root,
                                                                         const std::string& name,
                                                                         const SplitOptions& options);

// Class names of an IDX or CIFAR-10 data set (`format` "idx" or "cifar10") in DIR, by label:
// DIR/classes.txt (one name a line) when present, else the names shipped for Fashion-MNIST (a
// folder whose name contains "fashion") and CIFAR-10 (format "cifar10" with 10 classes), else
// "0".."n-1". kInvalidArgument when classes.txt does not have `num_classes` non-empty lines.
[[nodiscard]] absl::StatusOr<std::vector<std::string>> ClassNamesFor(const std::string& dir,
                                                                     const std::string& format,
                                                                     int num_classes);
// Fashion-MNIST's class names, by label (what ClassNamesFor gives a Fashion-MNIST folder).
const std::vector<std::string>& FashionMnistClassNames();

// Copies the images at `indices` of `src` into a new set.
ImageSet Subset(const ImageSet& src, const std::vector<int64_t>& indices);

// Per-channel mean and standard deviation of a set's pixels, on the [0, 1] scale.
struct ChannelStats {
  std::vector<double> mean, std;
};
ChannelStats ComputeChannelStats(const ImageSet& s);

}  // namespace hpo::worker
