#include "client/init.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/fmnist_best.h"
#include "proto/common/status_macros.h"
#include "worker/data/dataset.h"
#include "worker/data/image_folder.h"

namespace hpo::client {
namespace {

using nlohmann::ordered_json;
namespace fs = std::filesystem;

// The CPU budget, in training pixels (images x height x width after resizing).
// Convolution cost grows with the pixels; the channel count only changes the
// first layer. One epoch is capped at 12,000 Fashion-MNIST-sized images ...
constexpr double kEpochPixels = 12000.0 * 28 * 28;
// ... and a study at the work of 40 full-length trials of 10 such epochs (ASHA
// stops most trials after an epoch or three, so it runs more trials than that).
constexpr double kStudyPixels = 40 * 10 * kEpochPixels;
constexpr int kMinTrials = 20;  // TPE needs trials beyond its random start to learn from
constexpr int kMaxTrials = 50;
constexpr int kStartupTrials = 10;
// Without a val/ folder this share of the training images (at most kMaxVal) is held out.
constexpr double kValFraction = 0.2;
constexpr int64_t kMaxVal = 5000;
constexpr int kMaxConvBlocks = 5;  // deeper costs a CPU much and rarely pays at <= 64 px
constexpr uint64_t kSeed = 42;

absl::Status Invalid(const std::string& msg) { return absl::InvalidArgumentError(msg); }

std::string Num(double v) { return absl::StrFormat("%g", v); }

ordered_json Float(const std::string& name, double low, double high, bool log = false) {
  ordered_json p = {{"name", name}, {"type", "float"}, {"low", low}, {"high", high}};
  if (log) p["log"] = true;
  return p;
}

ordered_json Int(const std::string& name, int low, int high, int step = 0) {
  ordered_json p = {{"name", name}, {"type", "int"}, {"low", low}, {"high", high}};
  if (step > 0) p["step"] = step;
  return p;
}

ordered_json Choice(const std::string& name, ordered_json choices) {
  return {{"name", name}, {"type", "categorical"}, {"choices", std::move(choices)}};
}

// Rounds down to two significant digits, so caps read as chosen (2200, not 2296).
int64_t RoundDown2(int64_t v) {
  int64_t unit = 1;
  while (v / unit >= 100) unit *= 10;
  return v / unit * unit;
}

std::string ClassList(const std::vector<std::string>& names) {
  constexpr size_t kShown = 10;
  if (names.size() <= kShown) return absl::StrJoin(names, ", ");
  return absl::StrCat(absl::StrJoin(names.begin(), names.begin() + kShown, ", "), ", ... (", names.size(),
                      " in all)");
}

std::string FormatName(const std::string& format) {
  if (format == "image_folder") return "image folder";
  if (format == "idx") return "IDX (MNIST format)";
  if (format == "cifar10") return "CIFAR-10 binary";
  return format;
}

// Compact JSON with spaces after ':' and ',', as the README's examples are written.
std::string Compact(const ordered_json& j) {
  std::vector<std::string> parts;
  if (j.is_object()) {
    for (const auto& [key, value] : j.items())
      parts.push_back(absl::StrCat(ordered_json(key).dump(), ": ", Compact(value)));
    return absl::StrCat("{", absl::StrJoin(parts, ", "), "}");
  }
  if (j.is_array()) {
    for (const auto& v : j) parts.push_back(Compact(v));
    return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
  }
  return j.dump();
}

std::string ShellQuote(const std::string& s) {
  const bool safe = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("_-./:=+,@%").find(c) != std::string_view::npos;
  });
  if (safe) return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// What the draft needs to know about the training classes.
struct ClassBalance {
  int largest = 0, smallest = 0;   // labels, over classes with training images
  double ratio = 1;                // largest / smallest
  std::vector<std::string> empty;  // classes without training images
};

absl::StatusOr<ClassBalance> Balance(const worker::DataSetSummary& data) {
  const std::vector<int64_t>& counts = data.train.per_class;
  ClassBalance b;
  int used = 0;
  for (int c = 0; c < static_cast<int>(counts.size()); ++c) {
    if (counts[c] == 0) {
      b.empty.push_back(data.class_names[c]);
      continue;
    }
    if (used == 0 || counts[c] > counts[b.largest]) b.largest = c;
    if (used == 0 || counts[c] < counts[b.smallest]) b.smallest = c;
    ++used;
  }
  // The worker refuses an image folder with an empty class; IDX labels may simply skip a value.
  if (!b.empty.empty() && data.format == "image_folder") {
    std::string msg =
        absl::StrCat(b.empty.size() == 1 ? "class \"" : "classes \"", absl::StrJoin(b.empty, "\", \""), "\" ",
                     b.empty.size() == 1 ? "has" : "have",
                     " no usable training image, and the worker refuses such a folder: add JPEG or PNG "
                     "images, or remove the class folder");
    if (!data.skipped_examples.empty()) absl::StrAppend(&msg, " (skipped: ", data.skipped_examples[0], ")");
    return Invalid(msg);
  }
  if (used < 2) {
    return Invalid(absl::StrCat("only ", used, " of the ", counts.size(),
                                " classes has training images; a classifier needs at least two"));
  }
  b.ratio = static_cast<double>(counts[b.largest]) / static_cast<double>(counts[b.smallest]);
  return b;
}

std::string DataLine(const worker::DataSetSummary& d) {
  std::string line = absl::StrCat("data: ", FormatName(d.format), ", ", d.class_names.size(), " classes (",
                                  ClassList(d.class_names), "), ", d.train.total(), " training images");
  const bool folder = d.format == "image_folder";
  if (d.val.present) absl::StrAppend(&line, ", ", d.val.total(), folder ? " in val/" : " validation");
  if (d.test.present) absl::StrAppend(&line, ", ", d.test.total(), folder ? " in test/" : " test");
  absl::StrAppend(&line, "; median size ", d.median_height, "x", d.median_width);
  if (d.min_side != d.max_side) absl::StrAppend(&line, ", sides ", d.min_side, "..", d.max_side, " px");
  absl::StrAppend(&line, d.colour ? ", colour" : ", grayscale");
  if (d.skipped_files > 0) {
    absl::StrAppend(&line, "; ", d.skipped_files, " files skipped (e.g. ",
                    d.skipped_examples.empty() ? "?" : d.skipped_examples[0], ")");
  }
  return line;
}

std::string ObjectiveLine(const worker::DataSetSummary& d, const ClassBalance& b, bool imbalanced) {
  const auto& counts = d.train.per_class;
  const std::string extremes = absl::StrCat(d.class_names[b.smallest], " ", counts[b.smallest], ", ",
                                            d.class_names[b.largest], " ", counts[b.largest]);
  std::string line;
  if (imbalanced) {
    line = absl::StrCat("classes are imbalanced ", Num(std::round(b.ratio * 10) / 10), ":1 (", extremes,
                        ") -> objective val_balanced_accuracy (plain accuracy rewards ignoring small "
                        "classes), class_weighting and sampling searched");
  } else if (counts[b.smallest] == counts[b.largest]) {
    line = absl::StrCat("classes are balanced (", counts[b.largest],
                        " training images each) -> objective val_accuracy; no class weighting or sampling");
  } else {
    line = absl::StrCat("classes are balanced enough (", Num(std::round(b.ratio * 10) / 10), ":1, ", extremes,
                        "; above ", Num(kImbalanceRatio),
                        ":1 counts as imbalanced) -> objective val_accuracy; no class weighting or sampling");
  }
  if (!b.empty.empty()) {
    absl::StrAppend(&line, "; no training images for ", absl::StrJoin(b.empty, ", "));
  }
  return line;
}

// How images of other shapes are fitted to image_size. Stretching (Keras' and
// torchvision's default) keeps every pixel and is harmless while shapes are
// alike; the summary only bounds the spread of shapes by the spread of sides.
std::pair<std::string, std::string> ResizeChoice(const worker::DataSetSummary& d) {
  const double spread = d.min_side > 0 ? static_cast<double>(d.max_side) / d.min_side : 1;
  if (d.min_side == d.max_side) {
    return {"stretch", absl::StrCat("resize stretch: every training image is ", d.min_side, "x", d.max_side,
                                    ", so nothing is distorted")};
  }
  if (spread <= 1.5) {
    return {"stretch", absl::StrCat("resize stretch: every training image's sides lie within ", d.min_side,
                                    "..", d.max_side, " px, so no aspect ratio is more than ", absl::StrFormat("%.2f", spread),
                                    "x off and stretching distorts little")};
  }
  return {"stretch",
          absl::StrCat("resize stretch: sides range ", d.min_side, "..", d.max_side,
                       " px; stretching keeps every pixel and is what Keras and torchvision do. If that "
                       "range is a mix of shapes (portrait and landscape) rather than of scales, try "
                       "\"resize\": \"pad\" (keeps shapes, adds borders) or \"crop\" (keeps the centre)")};
}

// Fashion-MNIST as the data layer knows it (its IDX files in a folder named for it, so the classes have
// its names), with all 60,000 training images: the recommended spec's 55,000 + 5,000 fit.
bool IsFullFashionMnist(const worker::DataSetSummary& data) {
  return data.format == "idx" && data.class_names == worker::FashionMnistClassNames() && !data.colour &&
         data.median_height == 28 && data.median_width == 28 && data.train.total() >= 60000;
}

// The recommended spec (examples/fmnist-best.json), renamed for the folder.
absl::StatusOr<DraftedSpec> RecommendedFashionMnist(const worker::DataSetSummary& data,
                                                    const std::string& dataset_name) {
  DraftedSpec d;
  d.spec = ordered_json::parse(kFashionMnistBestSpec, nullptr, /*allow_exceptions=*/false);
  if (d.spec.is_discarded() || !d.spec.is_object() || !d.spec.contains("task")) {
    return absl::InternalError("hpoctl's copy of examples/fmnist-best.json is not a spec; rebuild hpoctl");
  }
  d.spec["name"] = dataset_name;
  d.spec["task"]["dataset"] = dataset_name;
  d.reasons.push_back(DataLine(data));
  d.reasons.push_back(
      "this is Fashion-MNIST: the recommended spec (examples/fmnist-best.json), measured to reach 0.93 test "
      "accuracy within 60 minutes on 2 cores; its choices and the run behind them are in bench/README.md "
      "(\"A recommended spec\")");
  d.reasons.push_back(
      "it trains on all 55,000 training images for 15 epochs with a cosine schedule, batch norm and Adam, and "
      "searches a narrow space; max_minutes 60 ends it after the measured hour (no trial starts later; the "
      "ones running then finish), and max_trials 60 is about what 2 cores train in that hour");
  return d;
}

int EpochsFor(int64_t train_images) {
  // Small sets give few updates per epoch; more epochs give them a similar number.
  if (train_images >= 10000) return 10;
  if (train_images >= 3000) return 15;
  if (train_images >= 1000) return 20;
  return 30;
}

}  // namespace

absl::StatusOr<DraftedSpec> DraftSpec(const worker::DataSetSummary& data, const std::string& dataset_name) {
  // The server's rule for task.dataset: one directory name directly under --data_root.
  const bool control = std::any_of(dataset_name.begin(), dataset_name.end(),
                                   [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
  if (dataset_name.empty() || dataset_name == "." || dataset_name == ".." || control ||
      dataset_name.find('/') != std::string::npos) {
    return Invalid(absl::StrCat("the folder name \"", dataset_name,
                                "\" cannot be a task.dataset (one directory name under the worker's "
                                "--data_root); give the data set's own folder, or rename it"));
  }
  const int n = static_cast<int>(data.class_names.size());
  if (n < 2) {
    return Invalid(
        absl::StrCat("the data set has ", n, " class", n == 1 ? "" : "es",
                     "; a classifier needs at least two (image folders: one sub-folder per class)"));
  }
  if (static_cast<int>(data.train.per_class.size()) != n || data.median_height < 1 || data.median_width < 1) {
    return Invalid("the data set summary is inconsistent (class counts or image sizes missing)");
  }
  if (IsFullFashionMnist(data)) return RecommendedFashionMnist(data, dataset_name);
  ASSIGN_OR_RETURN(ClassBalance balance, Balance(data));
  const bool imbalanced = balance.ratio > kImbalanceRatio;
  const bool folder = data.format == "image_folder";

  DraftedSpec d;
  d.reasons.push_back(DataLine(data));
  d.reasons.push_back(ObjectiveLine(data, balance, imbalanced));

  // The size trained at: image folders are resized; IDX and CIFAR are used as stored.
  int height = data.median_height, width = data.median_width;
  ordered_json task = {{"type", "cnn"}, {"dataset", dataset_name}};
  if (folder) {
    worker::DefaultImageSize(data.median_height, data.median_width, &height, &width);
    task["image_size"] = {height, width};
    d.reasons.push_back(
        height == data.median_height && width == data.median_width
            ? absl::StrCat("image_size [", height, ", ", width,
                           "]: the training images' median size, small enough to train as is")
            : absl::StrCat("image_size [", height, ", ", width, "]: the training images' median size is ",
                           data.median_height, "x", data.median_width,
                           "; scaled down (same shape) so the longer side is 64 px and trials fit a CPU"));
    task["channels"] = data.colour ? 3 : 1;
    d.reasons.push_back(
        data.colour ? "channels 3: some training images are in colour"
                    : "channels 1: every training image is grayscale (3 would triple the input for nothing)");
    auto [resize, why] = ResizeChoice(data);
    task["resize"] = resize;
    d.reasons.push_back(why);
  } else {
    d.reasons.push_back(
        absl::StrCat("images ", height, "x", width, data.colour ? " colour" : " grayscale",
                     ": used as stored (image_size, channels and resize are for image folders)"));
  }

  // Validation: the val/ folder when there is one, else a share held out of training.
  const int64_t n_train = data.train.total();
  int64_t val = 0;
  if (data.val.present) {
    d.reasons.push_back(absl::StrCat("validation: the val/ folder (", data.val.total(),
                                     " images) is the validation set, so val_examples is left out"));
  } else {
    val = std::clamp<int64_t>(std::llround(kValFraction * n_train), 1, std::min(kMaxVal, n_train - 1));
    d.reasons.push_back(absl::StrCat(
        "validation: ", folder ? "no val/ folder" : "the files have no validation split",
        ", so val_examples ", val, " (", Num(kValFraction * 100), "% of the ", n_train,
        " training images, at most ", kMaxVal, ") are held out of training as the validation set"));
  }
  const int64_t val_images = data.val.present ? data.val.total() : val;
  if (val_images < 500) {
    d.reasons.push_back(
        absl::StrCat("note: only ", val_images, " validation images; accuracy differences under ~",
                     Num(std::round(100 / std::sqrt(std::max<int64_t>(val_images, 1)))),
                     " points may be noise (more images, or task.executions_per_trial, help)"));
  }

  // Training images per epoch, capped by the pixel budget.
  const int64_t available = n_train - val;
  const int64_t cap =
      std::max<int64_t>(10, RoundDown2(static_cast<int64_t>(kEpochPixels / (height * width))));
  const int64_t train_used = std::min(available, cap);
  if (cap < available) {
    task["train_examples"] = train_used;
    d.reasons.push_back(absl::StrCat("train_examples ", train_used, " of ", available, ": caps an epoch at ~",
                                     Num(std::round(kEpochPixels / 1e5) / 10),
                                     "M training pixels (12000 images of 28x28) so a study fits a CPU; raise "
                                     "it, or remove it to use all, for the final runs"));
  } else {
    d.reasons.push_back(absl::StrCat("train_examples left out: all ", available,
                                     " training images fit the CPU budget of an epoch"));
  }
  if (val > 0) task["val_examples"] = val;
  const int epochs = EpochsFor(train_used);
  task["max_epochs"] = epochs;
  d.reasons.push_back(absl::StrCat(
      "max_epochs ", epochs, ": ", train_used, " training images are ~",
      std::max<int64_t>(1, train_used / 64),
      " batches of 64 per epoch; smaller sets get more epochs (10 to 30) for a similar number of updates"));

  // The search space: the seed's factors, in the order people read them.
  ordered_json params = ordered_json::array();
  params.push_back(Float("learning_rate", 1e-4, 0.05, /*log=*/true));
  params.push_back(Choice("optimizer", {"adam", "rmsprop", "sgd"}));
  const ordered_json batches = train_used < 2000 ? ordered_json{16, 32, 64} : ordered_json{32, 64, 128};
  params.push_back(Choice("batch_size", batches));
  d.reasons.push_back(
      absl::StrCat("learning_rate 1e-4..0.05 (log): adam and rmsprop like ~1e-3, sgd ~1e-2; optimizer adam, "
                   "rmsprop, sgd; batch_size ",
                   Compact(batches), train_used < 2000 ? " (small set: smaller batches, more updates)" : ""));

  const int side = std::min(height, width);
  int blocks = 0;  // 2x2 pools that leave a feature map of at least 3 px
  while (blocks < kMaxConvBlocks && (side >> (blocks + 1)) >= 3) ++blocks;
  blocks = std::max(blocks, 2);
  params.push_back(Int("conv_blocks", 1, blocks));
  params.push_back(Int("filters", 8, 64, 8));
  params.push_back(Choice("dense_units", {0, 64, 128, 256}));
  std::string capacity = absl::StrCat("capacity: conv_blocks 1..", blocks, " (a ", side, "-px side is ",
                                      std::max(1, side >> blocks), " px after ", blocks,
                                      " 2x2 pools), filters 8..64 (doubling per block), dense_units 0..256");
  if (side >= 32) {
    // Flattening a large last feature map makes a huge dense layer; global average pooling does not.
    params.push_back(Choice("global_pooling", {"flatten", "average"}));
    absl::StrAppend(
        &capacity,
        ", global_pooling flatten/average (a large last feature map flattened is a huge dense layer)");
  }
  d.reasons.push_back(capacity);

  params.push_back(Float("dropout", 0.0, 0.5));
  params.push_back(Choice("batch_norm", {false, true}));
  d.reasons.push_back(
      "regularization: dropout 0..0.5, batch_norm off/on (against overfitting: training accuracy far above "
      "validation)");

  // Few images per class: augmentation matters most, so search wider ranges.
  const bool few = data.train.per_class[balance.smallest] < 200;
  const double shift = few ? 0.2 : 0.15, rotation = few ? 20 : 15, zoom = few ? 0.2 : 0.15;
  params.push_back(Float("aug_shift", 0.0, shift));
  params.push_back(Float("aug_rotation", 0.0, rotation));
  params.push_back(Float("aug_zoom", 0.0, zoom));
  std::string aug = absl::StrCat("augmentation: aug_shift 0..", Num(shift), ", aug_rotation 0..",
                                 Num(rotation), " degrees, aug_zoom 0..", Num(zoom),
                                 few ? " (wide: the smallest class has under 200 training images)" : "");
  if (data.colour) {
    params.push_back(Choice("aug_hflip", {false, true}));
    absl::StrAppend(&aug, "; aug_hflip searched (colour images are mostly photos, natural when mirrored)");
  } else {
    absl::StrAppend(&aug,
                    "; aug_hflip left out (grayscale sets are often digits or letters, which a mirror "
                    "changes; add it if your classes look the same mirrored)");
  }
  d.reasons.push_back(aug);

  if (imbalanced) {
    params.push_back(Choice("class_weighting", {"none", "inverse", "sqrt_inverse"}));
    params.push_back(Choice("sampling", {"shuffle", "balanced"}));
  }

  // Budget: ASHA rungs and the number of trials.
  const int min_resource = std::max(1, epochs / 10);
  std::vector<int> rungs;
  for (int r = min_resource; r < epochs; r *= 3) rungs.push_back(r);
  const double trial_pixels = static_cast<double>(epochs) * train_used * height * width;
  const int trials = static_cast<int>(
      std::clamp(std::floor(kStudyPixels / trial_pixels), double{kMinTrials}, double{kMaxTrials}));
  const int startup = std::min(kStartupTrials, trials / 2);
  d.reasons.push_back(
      absl::StrCat("sampler tpe (seed ", kSeed, ", first ", startup,
                   " trials random, then it models which regions do well); pruner asha (min_resource ",
                   min_resource, ", reduction_factor 3): a trial goes on past epoch ",
                   absl::StrJoin(rungs, ", "), " only in the top third of the trials that got there"));
  std::string sizing =
      trials == kMaxTrials ? absl::StrCat("trials are cheap at this size, so the upper bound ", kMaxTrials,
                                          " (more rarely pays on a CPU)")
      : trials == kMinTrials
          ? absl::StrCat("trials are costly at this size, but TPE needs about ", kMinTrials, " to learn from")
          : "about the work of 40 full trials of 10 epochs of 12000 28x28 images";
  d.reasons.push_back(absl::StrCat("max_trials ", trials, ": a full trial trains ", epochs, " epochs of ",
                                   train_used, " images of ", height, "x", width, "; ", sizing,
                                   " (ASHA stops most trials after a few epochs)"));

  d.spec = ordered_json::object();
  d.spec["name"] = dataset_name;
  d.spec["objective"] = {{"metric", imbalanced ? "val_balanced_accuracy" : "val_accuracy"},
                         {"direction", "maximize"}};
  d.spec["task"] = std::move(task);
  d.spec["parameters"] = std::move(params);
  d.spec["sampler"] = {{"type", "tpe"}, {"seed", kSeed}, {"n_startup_trials", startup}};
  d.spec["pruner"] = {{"type", "asha"}, {"min_resource", min_resource}, {"reduction_factor", 3}};
  d.spec["max_trials"] = trials;
  return d;
}

std::string FormatSpec(const ordered_json& spec) {
  std::vector<std::string> lines;
  for (const auto& [key, value] : spec.items()) {
    std::string line = absl::StrCat("  ", ordered_json(key).dump(), ": ");
    if (key == "parameters" && value.is_array()) {
      std::vector<std::string> params;
      for (const auto& p : value) params.push_back(absl::StrCat("    ", Compact(p)));
      absl::StrAppend(&line, "[\n", absl::StrJoin(params, ",\n"), "\n  ]");
    } else {
      absl::StrAppend(&line, Compact(value));
    }
    lines.push_back(std::move(line));
  }
  return absl::StrCat("{\n", absl::StrJoin(lines, ",\n"), "\n}\n");
}

std::vector<std::string> RunCommands(const std::string& data_root, const std::string& spec_path) {
  const std::string worker = absl::StrCat("hpo-worker --data_root=", ShellQuote(data_root),
                                          " --threads=$(( ($(nproc) + 1) / 2 )) &");
  return {"hpo-server --db=hpo.db &",
          worker,
          worker,
          absl::StrCat("STUDY=$(hpoctl create ", ShellQuote(spec_path), " | tail -n 1)"),
          "hpoctl watch $STUDY",
          "hpoctl best $STUDY",
          "hpoctl diagnose $STUDY"};
}

absl::Status Init(const std::vector<std::string>& args, const std::string& out_path, std::ostream& out,
                  std::ostream& err) {
  if (args.size() != 1) {
    return Invalid(
        "usage: hpoctl init DATA_DIR [--out=spec.json]: DATA_DIR is a data set folder (image folders "
        "train/<class>/*.jpg|png or <class>/*.jpg|png, IDX or CIFAR-10 files)");
  }
  ASSIGN_OR_RETURN(worker::DataSetSummary data, worker::InspectDataSet(args[0]));
  // Workers read DATA_ROOT/NAME: the folder's name is the data set, its parent the root.
  std::error_code ec;
  fs::path dir = fs::absolute(args[0], ec).lexically_normal();
  if (dir.filename().empty()) dir = dir.parent_path();  // "flowers/" names flowers
  ASSIGN_OR_RETURN(DraftedSpec draft, DraftSpec(data, dir.filename().string()));
  const std::string text = FormatSpec(draft.spec);

  std::ostream& notes = out_path.empty() ? err : out;
  if (out_path.empty()) {
    out << text;
    out.flush();
  } else {
    std::ofstream file(out_path, std::ios::trunc);
    file << text;
    file.close();
    if (!file) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot write the spec to ", out_path, ": ", std::strerror(errno)));
    }
    notes << "wrote " << out_path << "\n";
  }
  for (const std::string& r : draft.reasons) notes << r << "\n";
  const std::string spec_path = out_path.empty() ? "spec.json" : out_path;
  notes << "\nto run the study";
  if (out_path.empty())
    notes << " (the spec is on stdout: hpoctl init " << ShellQuote(args[0]) << " > spec.json)";
  notes << ":\n";
  for (const std::string& c : RunCommands(dir.parent_path().string(), spec_path)) notes << "  " << c << "\n";
  return absl::OkStatus();
}

}  // namespace hpo::client
