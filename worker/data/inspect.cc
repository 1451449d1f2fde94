#include "worker/data/inspect.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <numeric>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "proto/common/status_macros.h"
#include "worker/data/dataset.h"
#include "worker/data/image_decode.h"
#include "worker/data/image_folder.h"

namespace hpo::worker {
namespace {

namespace fs = std::filesystem;

bool Exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

// A file of an IDX/CIFAR set that is missing or unreadable inside an existing
// folder means the folder is not a usable data set, not that DIR is missing.
absl::Status NotUsable(const std::string& dir, const std::string& format, const absl::Status& s) {
  return absl::InvalidArgumentError(absl::StrCat(DisplayName(dir), " looks like a ", format,
                                                 " data set but cannot be read: ", s.message()));
}

std::vector<int64_t> CountLabels(const ImageSet& set, int num_classes) {
  std::vector<int64_t> counts(num_classes, 0);
  for (uint8_t label : set.labels) ++counts[label];
  return counts;
}

// IDX and CIFAR-10: every image has the file's size, so only the labels need counting.
absl::StatusOr<DataSetSummary> InspectFixedSize(const std::string& dir, const std::string& format) {
  ImageSet train, test;
  if (format == "cifar10") {
    std::vector<std::string> batches;
    for (int b = 1; b <= 5; ++b) batches.push_back(absl::StrCat(dir, "/data_batch_", b, ".bin"));
    auto tr = ReadCifar(batches);
    if (!tr.ok()) return NotUsable(dir, "CIFAR-10", tr.status());
    auto te = ReadCifar({dir + "/test_batch.bin"});
    if (!te.ok()) return NotUsable(dir, "CIFAR-10", te.status());
    train = *std::move(tr);
    test = *std::move(te);
  } else {
    auto tr = ReadIdx(dir + "/train-images-idx3-ubyte", dir + "/train-labels-idx1-ubyte");
    if (!tr.ok()) return NotUsable(dir, "IDX (MNIST-format)", tr.status());
    auto te = ReadIdx(dir + "/t10k-images-idx3-ubyte", dir + "/t10k-labels-idx1-ubyte");
    if (!te.ok()) return NotUsable(dir, "IDX (MNIST-format)", te.status());
    train = *std::move(tr);
    test = *std::move(te);
  }
  if (train.height != test.height || train.width != test.width) {
    // The worker refuses this too (LoadSplit); say so now rather than in every trial.
    return absl::InvalidArgumentError(absl::StrCat(DisplayName(dir), ": training images are ", train.height,
                                                   "x", train.width, " but test images are ", test.height,
                                                   "x", test.width));
  }
  const int num_classes = std::max(train.num_classes, test.num_classes);
  DataSetSummary s;
  s.format = format;
  ASSIGN_OR_RETURN(s.class_names, ClassNamesFor(dir, format, num_classes));
  s.train = {true, CountLabels(train, num_classes)};
  s.val = {false, std::vector<int64_t>(num_classes, 0)};
  s.test = {true, CountLabels(test, num_classes)};
  s.median_height = train.height;
  s.median_width = train.width;
  s.min_side = std::min(train.height, train.width);
  s.max_side = std::max(train.height, train.width);
  s.colour = train.channels == 3;
  return s;
}

// The header of one candidate image file, or why it is not usable.
absl::StatusOr<ImageHeader> HeaderOf(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadWholeFile(path));
  return ReadImageHeader(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

// Reads the headers of `files` on a few threads: a folder of tens of thousands
// of small files is bound by opening and reading them, not by parsing.
std::vector<absl::StatusOr<ImageHeader>> ReadHeaders(const std::vector<const ImageFile*>& files) {
  std::vector<absl::StatusOr<ImageHeader>> out(files.size(), absl::UnknownError("not read"));
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < files.size(); i = next++) out[i] = HeaderOf(files[i]->path);
  };
  const size_t threads =
      std::min<size_t>(files.size(), std::clamp(std::thread::hardware_concurrency(), 2u, 8u));
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  return out;
}

int Median(std::vector<int> v) {
  if (v.empty()) return 0;
  auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
}

// Listed as the loader lists them: the path relative to the data set folder, then why.
void AddSkipped(DataSetSummary* s, const std::string& root, const std::string& path,
                const absl::Status& why) {
  ++s->skipped_files;
  if (static_cast<int>(s->skipped_examples.size()) >= kSkippedExamples) return;
  s->skipped_examples.push_back(
      absl::StrCat(DisplayName(fs::path(path).lexically_relative(root).string()), ": ", why.message()));
}

absl::StatusOr<DataSetSummary> InspectImageFolder(const std::string& dir) {
  ASSIGN_OR_RETURN(FolderLayout layout, ScanImageFolder(dir));
  DataSetSummary s;
  s.format = "image_folder";
  for (const std::string& name : layout.class_names) s.class_names.push_back(DisplayName(name));
  s.skipped_files = layout.skipped;
  s.skipped_examples = layout.skipped_examples;
  const size_t n = layout.class_names.size();
  s.train = {true, std::vector<int64_t>(n, 0)};
  s.val = {layout.has_val, std::vector<int64_t>(n, 0)};
  s.test = {layout.has_test, std::vector<int64_t>(n, 0)};

  std::vector<const ImageFile*> files;
  std::vector<SplitCounts*> split_of;
  for (auto [list, counts] : {std::pair{&layout.train, &s.train}, std::pair{&layout.val, &s.val},
                              std::pair{&layout.test, &s.test}}) {
    for (const ImageFile& f : *list) {
      files.push_back(&f);
      split_of.push_back(counts);
    }
  }
  const std::vector<absl::StatusOr<ImageHeader>> headers = ReadHeaders(files);

  std::vector<int> heights, widths;
  for (size_t i = 0; i < files.size(); ++i) {
    if (!headers[i].ok()) {
      AddSkipped(&s, dir, files[i]->path, headers[i].status());
      continue;
    }
    ++split_of[i]->per_class[files[i]->label];
    if (split_of[i] != &s.train) continue;  // sizes and colour describe what is trained on
    const ImageHeader& h = *headers[i];
    heights.push_back(h.height);
    widths.push_back(h.width);
    s.min_side = s.min_side == 0 ? std::min(h.width, h.height) : std::min({s.min_side, h.width, h.height});
    s.max_side = std::max({s.max_side, h.width, h.height});
    s.colour = s.colour || h.colour;
  }
  if (heights.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(DisplayName(dir), " has no usable training image (JPEG or PNG) in its class folders; ",
                     s.skipped_files, " files skipped",
                     s.skipped_examples.empty() ? "" : absl::StrCat(", e.g. ", s.skipped_examples[0])));
  }
  s.median_height = Median(std::move(heights));
  s.median_width = Median(std::move(widths));
  return s;
}

}  // namespace

int64_t SplitCounts::total() const { return std::accumulate(per_class.begin(), per_class.end(), int64_t{0}); }

absl::StatusOr<DataSetSummary> InspectDataSet(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec))
    return absl::NotFoundError(absl::StrCat("data set folder ", DisplayName(dir), " does not exist"));
  if (!fs::is_directory(dir, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat(DisplayName(dir), " is not a folder; give the data set's folder"));
  }
  // The same order as the worker's loader: CIFAR-10 batches win over IDX files, which win over folders.
  if (Exists(dir + "/data_batch_1.bin")) {
    return InspectFixedSize(dir, "cifar10");
  }
  if (Exists(dir + "/train-images-idx3-ubyte") || Exists(dir + "/train-images-idx3-ubyte.gz")) {
    return InspectFixedSize(dir, "idx");
  }
  if (IsImageFolder(dir)) return InspectImageFolder(dir);
  return absl::InvalidArgumentError(absl::StrCat(
      DisplayName(dir),
      " is not a data set hpo can read; expected one of: image folders (train/<class>/*.jpg|png, "
      "optionally val/<class>/ and test/<class>/, or just <class>/*.jpg|png), MNIST's IDX files "
      "(train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-...) or CIFAR-10's binary "
      "batches (data_batch_1.bin ... data_batch_5.bin, test_batch.bin)"));
}

}  // namespace hpo::worker
