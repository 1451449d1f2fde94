// What a data set folder holds, without decoding its images: the format,
// classes, images per class and split, typical image size and colour. Used by
// `hpoctl init` to draft a study spec; no LibTorch here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace hpo::worker {

struct SplitCounts {
  bool present = false;          // the data set has this split (image folders: val/ or test/ exists)
  std::vector<int64_t> per_class;  // usable images per class label (size = number of classes)
  int64_t total() const;
};

struct DataSetSummary {
  std::string format;                   // "image_folder", "idx" or "cifar10"
  std::vector<std::string> class_names; // by label
  SplitCounts train, val, test;         // image folders: val/test present only with val/ and test/ folders;
                                        // IDX/CIFAR: train = training files, test = test files
  int median_height = 0, median_width = 0;  // of the training images
  int min_side = 0, max_side = 0;           // smallest and largest side over the training images
  bool colour = false;                  // any training image is stored in colour
  int64_t skipped_files = 0;            // files that are not usable JPEG/PNG images
  std::vector<std::string> skipped_examples;  // the first few, "path: why"
};

// Inspects DIR (a data set folder, as the worker's DATA_ROOT/NAME). Image
// folders: reads each file's header only. kNotFound when DIR is missing,
// kInvalidArgument when it is no data set hpo can read (with what was expected).
[[nodiscard]] absl::StatusOr<DataSetSummary> InspectDataSet(const std::string& dir);

}  // namespace hpo::worker
