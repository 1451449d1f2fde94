#include "worker/data/dataset.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "worker/data/image_folder.h"
#include "proto/common/status_macros.h"

namespace hpo::worker {
namespace {

// Reads a whole raw or gzip file (zlib's gzread passes raw files through).
absl::StatusOr<std::vector<uint8_t>> ReadFile(const std::string& path, std::string* used) {
  std::string p = path;
  if (!std::filesystem::exists(p)) p = path + ".gz";
  if (!std::filesystem::exists(p)) {
    return absl::NotFoundError(absl::StrCat("data file ", path, " (or ", path, ".gz) does not exist"));
  }
  *used = p;
  gzFile f = gzopen(p.c_str(), "rb");
  if (f == nullptr) return absl::NotFoundError(absl::StrCat("cannot open ", p));
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  for (;;) {
    int n = gzread(f, buf, sizeof(buf));
    if (n < 0) {
      int err = 0;
      std::string msg = gzerror(f, &err);
      gzclose(f);
      return absl::DataLossError(absl::StrCat(p, " is corrupt: ", msg));
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  gzclose(f);
  return out;
}

uint32_t BigEndian(const std::vector<uint8_t>& b, size_t off) {
  return (uint32_t{b[off]} << 24) | (uint32_t{b[off + 1]} << 16) | (uint32_t{b[off + 2]} << 8) | b[off + 3];
}

}  // namespace

absl::StatusOr<ImageSet> ReadIdx(const std::string& images_path, const std::string& labels_path) {
  std::string ip, lp;
  ASSIGN_OR_RETURN(std::vector<uint8_t> img, ReadFile(images_path, &ip));
  ASSIGN_OR_RETURN(std::vector<uint8_t> lab, ReadFile(labels_path, &lp));
  if (img.size() < 16 || BigEndian(img, 0) != 0x00000803) {
    return absl::DataLossError(absl::StrCat(ip, " is not an IDX image file (expected magic 0x00000803: "
                                            "unsigned bytes, 3 dimensions)"));
  }
  if (lab.size() < 8 || BigEndian(lab, 0) != 0x00000801) {
    return absl::DataLossError(absl::StrCat(lp, " is not an IDX label file (expected magic 0x00000801)"));
  }
  ImageSet s;
  s.count = BigEndian(img, 4);
  s.height = static_cast<int>(BigEndian(img, 8));
  s.width = static_cast<int>(BigEndian(img, 12));
  const int64_t labels = BigEndian(lab, 4);
  if (s.height < 8 || s.width < 8 || s.height > 4096 || s.width > 4096) {
    return absl::DataLossError(absl::StrCat(ip, ": images are ", s.height, "x", s.width,
                                            "; hpo needs at least 8x8 (and at most 4096x4096)"));
  }
  if (s.count < 1 || labels != s.count) {
    return absl::DataLossError(absl::StrCat(ip, " holds ", s.count, " images but ", lp, " holds ",
                                            labels, " labels"));
  }
  const uint64_t expect_img = 16 + static_cast<uint64_t>(s.count) * s.height * s.width;
  if (img.size() != expect_img) {
    return absl::DataLossError(absl::StrCat(ip, " is ", img.size(), " bytes but its header promises ",
                                            expect_img, ": the file is truncated or corrupt"));
  }
  if (lab.size() != 8 + static_cast<uint64_t>(s.count)) {
    return absl::DataLossError(absl::StrCat(lp, " is ", lab.size(), " bytes but its header promises ",
                                            8 + s.count, ": the file is truncated or corrupt"));
  }
  img.erase(img.begin(), img.begin() + 16);  // in place: no second copy of the images
  s.pixels = std::move(img);
  s.labels.assign(lab.begin() + 8, lab.end());
  s.num_classes = 1 + *std::max_element(s.labels.begin(), s.labels.end());
  return s;
}

ImageSet Subset(const ImageSet& src, const std::vector<int64_t>& indices) {
  ImageSet out;
  out.count = static_cast<int64_t>(indices.size());
  out.channels = src.channels;
  out.height = src.height;
  out.width = src.width;
  out.num_classes = src.num_classes;
  const int64_t sz = src.image_size();
  out.pixels.resize(out.count * sz);
  out.labels.resize(out.count);
  for (size_t i = 0; i < indices.size(); ++i) {
    std::copy_n(src.pixels.begin() + indices[i] * sz, sz, out.pixels.begin() + i * sz);
    out.labels[i] = src.labels[indices[i]];
  }
  return out;
}

absl::StatusOr<ImageSet> ReadCifar(const std::vector<std::string>& files) {
  constexpr int kRecord = 1 + 3 * 32 * 32;
  ImageSet s;
  s.channels = 3;
  s.height = s.width = 32;
  for (const std::string& path : files) {
    std::string used;
    ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadFile(path, &used));
    if (bytes.empty() || bytes.size() % kRecord != 0) {
      return absl::DataLossError(absl::StrCat(used, " is ", bytes.size(), " bytes, not a whole number of CIFAR-10 "
                                              "records (", kRecord, " bytes each): truncated or corrupt"));
    }
    for (size_t off = 0; off < bytes.size(); off += kRecord) {
      s.labels.push_back(bytes[off]);
      s.pixels.insert(s.pixels.end(), bytes.begin() + off + 1, bytes.begin() + off + kRecord);
    }
  }
  s.count = static_cast<int64_t>(s.labels.size());
  s.num_classes = 1 + *std::max_element(s.labels.begin(), s.labels.end());
  return s;
}

namespace {

// The whole data set before splitting.
struct RawData {
  ImageSet train, val, test;
  bool has_val = false;
  std::string format;
  std::vector<std::string> class_names;
  int64_t skipped_files = 0;
  std::vector<std::string> skipped_examples;
  bool from_cache = false;
};

// Fisher-Yates with our own draws: the same permutation on every machine.
std::vector<int64_t> Permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  std::mt19937_64 rng(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

// DATA_ROOT/NAME, refused when NAME leaves DATA_ROOT (by its spelling or through a symbolic link).
absl::StatusOr<std::string> DataSetDir(const std::string& data_root, const std::string& name) {
  const std::filesystem::path n(name);
  bool climbs = n.empty() || n.is_absolute();
  for (const auto& part : n) climbs = climbs || part == "..";
  if (climbs) {
    return absl::InvalidArgumentError(absl::StrCat("data set \"", name, "\" must be a folder name under --data_root (",
                                                   data_root, "), not an absolute path or one with \"..\""));
  }
  const std::filesystem::path dir = std::filesystem::path(data_root) / n;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("data set \"", name, "\" not found: ", dir.string(),
                                            " is not a directory (check --data_root)"));
  }
  const auto root = std::filesystem::canonical(data_root, ec);
  const auto real = ec ? std::filesystem::path() : std::filesystem::canonical(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot resolve ", dir.string(), ": ", ec.message()));
  auto r = root.begin(), d = real.begin();
  for (; r != root.end(); ++r, ++d) {
    if (d == real.end() || *r != *d) {
      return absl::InvalidArgumentError(absl::StrCat("data set \"", name, "\" leaves --data_root: ", dir.string(),
                                                     " resolves to ", real.string(), ", outside ", root.string()));
    }
  }
  return dir.string();
}

absl::StatusOr<std::shared_ptr<const RawData>> ReadBinaryDataSet(const std::string& dir, const std::string& name) {
  // The raw files of the last data set read are kept: every trial of a study reads the same one.
  static std::mutex mu;
  static std::string cached_dir;
  static std::shared_ptr<const RawData> cached;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (cached_dir == dir) return cached;
  }
  auto raw = std::make_shared<RawData>();
  if (std::filesystem::exists(dir + "/data_batch_1.bin")) {
    std::vector<std::string> batches;
    for (int b = 1; b <= 5; ++b) batches.push_back(absl::StrCat(dir, "/data_batch_", b, ".bin"));
    ASSIGN_OR_RETURN(raw->train, ReadCifar(batches));
    ASSIGN_OR_RETURN(raw->test, ReadCifar({dir + "/test_batch.bin"}));
    raw->format = "cifar10";
  } else {
    ASSIGN_OR_RETURN(raw->train, ReadIdx(dir + "/train-images-idx3-ubyte", dir + "/train-labels-idx1-ubyte"));
    ASSIGN_OR_RETURN(raw->test, ReadIdx(dir + "/t10k-images-idx3-ubyte", dir + "/t10k-labels-idx1-ubyte"));
    raw->format = "idx";
  }
  if (raw->train.height != raw->test.height || raw->train.width != raw->test.width) {
    return absl::DataLossError(absl::StrCat("data set \"", name, "\": training images are ", raw->train.height, "x",
                                            raw->train.width, " but test images are ", raw->test.height, "x",
                                            raw->test.width));
  }
  raw->train.num_classes = raw->test.num_classes = std::max(raw->train.num_classes, raw->test.num_classes);
  ASSIGN_OR_RETURN(raw->class_names, ClassNamesFor(dir, raw->format, raw->train.num_classes));
  raw->val.channels = raw->train.channels, raw->val.height = raw->train.height, raw->val.width = raw->train.width;
  std::shared_ptr<const RawData> out = std::move(raw);
  std::lock_guard<std::mutex> lock(mu);
  cached_dir = dir;
  cached = out;
  return out;
}

absl::StatusOr<std::shared_ptr<const RawData>> ReadImageFolderDataSet(const std::string& dir,
                                                                      const SplitOptions& o) {
  ImageFolderOptions io;
  io.height = o.image_height, io.width = o.image_width, io.channels = o.channels;
  if (!o.resize.empty()) {
    auto mode = ParseResizeMode(o.resize);
    if (!mode) return absl::InvalidArgumentError(absl::StrCat("task.resize \"", o.resize, "\" must be stretch, pad or crop"));
    io.resize = *mode;
  }
  io.threads = o.threads;
  io.cache_dir = o.cache_dir;
  ASSIGN_OR_RETURN(ImageFolderData d, LoadImageFolder(dir, io));
  auto raw = std::make_shared<RawData>();
  raw->train = std::move(d.train);
  raw->val = std::move(d.val);
  raw->test = std::move(d.test);
  raw->has_val = d.has_val;
  raw->format = "image_folder";
  raw->class_names = std::move(d.class_names);
  raw->skipped_files = d.skipped_files;
  raw->skipped_examples = std::move(d.skipped_examples);
  raw->from_cache = d.from_cache;
  return std::shared_ptr<const RawData>(std::move(raw));
}

}  // namespace

absl::StatusOr<std::shared_ptr<const DataSplit>> LoadSplit(const std::string& data_root,
                                                           const std::string& name,
                                                           const SplitOptions& options) {
  const int train_examples = options.train_examples;
  const int test_examples = options.test_examples;
  const uint64_t seed = options.seed;
  ASSIGN_OR_RETURN(const std::string dir, DataSetDir(data_root, name));
  std::shared_ptr<const RawData> raw;
  if (IsImageFolder(dir)) {
    ASSIGN_OR_RETURN(raw, ReadImageFolderDataSet(dir, options));
  } else {
    ASSIGN_OR_RETURN(raw, ReadBinaryDataSet(dir, name));
  }
  const ImageSet& train = raw->train;
  const ImageSet& test = raw->test;
  auto split = std::make_shared<DataSplit>();
  split->format = raw->format;
  split->class_names = raw->class_names;
  split->skipped_files = raw->skipped_files;
  split->skipped_examples = raw->skipped_examples;
  split->from_cache = raw->from_cache;
  // Validation: the val/ folder as it stands (or val_examples of it), or carved from training.
  const int64_t carved = raw->has_val ? 0
                         : options.val_examples > 0 ? options.val_examples
                         : raw->format == "image_folder" ? std::max<int64_t>(1, train.count / 5)
                                                         : 10000;
  if (carved >= train.count) {
    return absl::InvalidArgumentError(absl::StrCat("task.val_examples (", carved, ") must be below the ",
                                                   train.count, " training images of data set \"", name, "\""));
  }
  const int64_t available = train.count - carved;
  if (train_examples > available) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task.train_examples (", train_examples, ") + val_examples (", carved, ") exceed the ",
        train.count, " training images of data set \"", name, "\""));
  }
  const std::vector<int64_t> perm = Permutation(train.count, seed);
  const int64_t n_train = train_examples > 0 ? train_examples : available;
  std::vector<int64_t> train_idx(perm.begin(), perm.begin() + n_train);
  if (!options.imbalance_classes.empty() && options.imbalance_keep < 1.0) {
    // Keep the first imbalance_keep of each listed class's images (in permutation order).
    std::map<int, int64_t> total, kept;
    for (int64_t i : train_idx) ++total[train.labels[i]];
    std::vector<int64_t> filtered;
    for (int64_t i : train_idx) {
      const int c = train.labels[i];
      const bool listed = std::find(options.imbalance_classes.begin(), options.imbalance_classes.end(), c) !=
                          options.imbalance_classes.end();
      if (listed && kept[c] >= std::max<int64_t>(1, std::llround(options.imbalance_keep * total[c]))) continue;
      ++kept[c];
      filtered.push_back(i);
    }
    train_idx = std::move(filtered);
  }
  split->train = Subset(train, train_idx);
  if (raw->has_val) {
    const ImageSet& val = raw->val;
    if (options.val_examples > val.count) {
      return absl::InvalidArgumentError(absl::StrCat("task.val_examples (", options.val_examples, ") exceeds the ",
                                                     val.count, " images of data set \"", name, "\"'s val/ folder"));
    }
    std::vector<int64_t> val_idx = Permutation(val.count, seed);
    if (options.val_examples > 0) val_idx.resize(options.val_examples);
    std::sort(val_idx.begin(), val_idx.end());
    split->val = Subset(val, val_idx);
  } else {
    split->val = Subset(train, std::vector<int64_t>(perm.end() - carved, perm.end()));
  }
  const int64_t n_test = test_examples > 0 ? std::min<int64_t>(test_examples, test.count) : test.count;
  std::vector<int64_t> test_idx;
  if (raw->format == "image_folder") {
    // Folder order is by class: draw the subset instead of taking the first classes.
    test_idx = Permutation(test.count, seed);
    test_idx.resize(n_test);
    std::sort(test_idx.begin(), test_idx.end());
  } else {
    test_idx.resize(n_test);
    std::iota(test_idx.begin(), test_idx.end(), 0);
  }
  split->test = Subset(test, test_idx);
  return std::shared_ptr<const DataSplit>(std::move(split));
}

const std::vector<std::string>& FashionMnistClassNames() {
  static const std::vector<std::string> kFashion = {"t-shirt", "trouser", "pullover", "dress", "coat",
                                                    "sandal",  "shirt",   "sneaker",  "bag",   "ankle boot"};
  return kFashion;
}

absl::StatusOr<std::vector<std::string>> ClassNamesFor(const std::string& dir, const std::string& format,
                                                       int num_classes) {
  const std::string file = (std::filesystem::path(dir) / "classes.txt").string();
  std::error_code ec;
  if (std::filesystem::exists(file, ec)) {
    std::ifstream in(file);
    if (!in) return absl::PermissionDeniedError(absl::StrCat("cannot read ", file));
    std::vector<std::string> names;
    std::string line;
    while (std::getline(in, line) && names.size() <= 256) {
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
      if (line.empty()) continue;
      if (line.size() > 256) return absl::InvalidArgumentError(absl::StrCat(file, ": a class name is over 256 bytes"));
      names.push_back(DisplayName(line));
    }
    if (static_cast<int>(names.size()) != num_classes) {
      return absl::InvalidArgumentError(absl::StrCat(file, " has ", names.size(), " class names but the data set has ",
                                                     num_classes, " classes: write one name a line, in label order"));
    }
    return names;
  }
  static const std::vector<std::string> kCifar10 = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                    "dog",      "frog",       "horse", "ship", "truck"};
  const std::string base = std::filesystem::path(dir).filename().string();
  if (format == "idx" && num_classes == 10 && base.find("fashion") != std::string::npos) {
    return FashionMnistClassNames();
  }
  if (format == "cifar10" && num_classes == 10) return kCifar10;
  std::vector<std::string> names;
  for (int c = 0; c < num_classes; ++c) names.push_back(std::to_string(c));
  return names;
}

ChannelStats ComputeChannelStats(const ImageSet& s) {
  const int64_t plane = static_cast<int64_t>(s.height) * s.width;
  ChannelStats out{std::vector<double>(s.channels), std::vector<double>(s.channels)};
  for (int c = 0; c < s.channels; ++c) {
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < s.count; ++i) {
      const uint8_t* p = s.pixels.data() + (i * s.channels + c) * plane;
      for (int64_t k = 0; k < plane; ++k) {
        sum += p[k];
        sq += static_cast<double>(p[k]) * p[k];
      }
    }
    const double n = std::max<double>(1, static_cast<double>(s.count) * plane);
    out.mean[c] = sum / n / 255.0;
    out.std[c] = std::sqrt(std::max(0.0, sq / n / 65025.0 - out.mean[c] * out.mean[c]));
  }
  return out;
}

}  // namespace hpo::worker
