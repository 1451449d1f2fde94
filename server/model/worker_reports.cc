#include "server/model/worker_reports.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proto/common/status_macros.h"

namespace hpo::server {
namespace {

absl::Status Invalid(const std::string& msg) { return absl::InvalidArgumentError(msg); }

bool HasControl(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

absl::Status CheckCount(int64_t v, const char* what) {
  if (v < 0) return Invalid(absl::StrCat("data report: ", what, " is ", v, "; it must be >= 0"));
  return absl::OkStatus();
}

// A per-class array of `field` must have one entry per class (or none: not reported).
template <typename T>
absl::Status CheckLength(const std::vector<T>& v, size_t want, const char* field, int n) {
  if (v.empty() || v.size() == want) return absl::OkStatus();
  return Invalid(absl::StrCat("class report: ", field, " has ", v.size(), " entries but there are ", n,
                              " classes", want != static_cast<size_t>(n) ? " (it must be n x n)" : "",
                              "; send one entry per class label, or none"));
}

}  // namespace

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    int extra = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3, cp = c & 0x07;
    } else {
      return false;  // a continuation byte where a character must start, or 0xF8..0xFF
    }
    if (i + extra >= s.size()) return false;  // truncated
    for (int k = 1; k <= extra; ++k) {
      const unsigned char cc = s[i + k];
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

absl::Status ValidateDataReport(const DataReport& d) {
  if (d.format.size() > kMaxClassNameBytes || !IsValidUtf8(d.format) || HasControl(d.format)) {
    return Invalid("data report: format must be a short name such as \"image_folder\"");
  }
  if (d.class_names.size() > static_cast<size_t>(kMaxClasses)) {
    return Invalid(absl::StrCat("data report: ", d.class_names.size(), " class names; at most ", kMaxClasses,
                                " classes are supported"));
  }
  for (size_t c = 0; c < d.class_names.size(); ++c) {
    const std::string& name = d.class_names[c];
    if (name.empty() || name.size() > kMaxClassNameBytes || !IsValidUtf8(name) || HasControl(name)) {
      return Invalid(absl::StrCat("data report: class_names[", c, "] must be 1 to ", kMaxClassNameBytes,
                                  " bytes of UTF-8 without control characters (got ", name.size(), " bytes",
                                  IsValidUtf8(name) ? "" : ", not UTF-8", ")"));
    }
  }
  RETURN_IF_ERROR(CheckCount(d.train_images, "train_images"));
  RETURN_IF_ERROR(CheckCount(d.val_images, "val_images"));
  RETURN_IF_ERROR(CheckCount(d.test_images, "test_images"));
  RETURN_IF_ERROR(CheckCount(d.channels, "channels"));
  RETURN_IF_ERROR(CheckCount(d.height, "height"));
  RETURN_IF_ERROR(CheckCount(d.width, "width"));
  RETURN_IF_ERROR(CheckCount(d.skipped_files, "skipped_files"));
  if (d.skipped_examples.size() > kMaxSkippedExamples) {
    return Invalid(absl::StrCat("data report: ", d.skipped_examples.size(), " skipped_examples; send at most ",
                                kMaxSkippedExamples, " (skipped_files counts them all)"));
  }
  for (size_t k = 0; k < d.skipped_examples.size(); ++k) {
    const std::string& e = d.skipped_examples[k];
    if (e.size() > kMaxSkippedExampleBytes || !IsValidUtf8(e)) {
      return Invalid(absl::StrCat("data report: skipped_examples[", k, "] must be at most ",
                                  kMaxSkippedExampleBytes, " bytes of UTF-8 (got ", e.size(), " bytes",
                                  IsValidUtf8(e) ? "" : ", not UTF-8", ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateClassReport(const ClassReport& c, const DataReport* data) {
  const int n = c.NumClasses();
  if (n > kMaxClasses) {
    return Invalid(absl::StrCat("class report: ", n, " classes; at most ", kMaxClasses, " are supported"));
  }
  const size_t un = static_cast<size_t>(n);
  RETURN_IF_ERROR(CheckLength(c.train_count, un, "train_count", n));
  RETURN_IF_ERROR(CheckLength(c.val_count, un, "val_count", n));
  RETURN_IF_ERROR(CheckLength(c.train_recall, un, "train_recall", n));
  RETURN_IF_ERROR(CheckLength(c.val_recall, un, "val_recall", n));
  RETURN_IF_ERROR(CheckLength(c.val_confusion, un * un, "val_confusion", n));
  for (const auto* counts : {&c.train_count, &c.val_count, &c.val_confusion}) {
    for (int64_t v : *counts) {
      if (v < 0) return Invalid(absl::StrCat("class report: a count is ", v, "; counts must be >= 0"));
    }
  }
  for (const auto* recalls : {&c.train_recall, &c.val_recall}) {
    for (double r : *recalls) {
      if (!std::isfinite(r) || r < 0 || r > 1) {
        return Invalid(absl::StrCat("class report: a recall is ", r, "; recalls must be finite, in [0, 1]"));
      }
    }
  }
  if (n > 0 && data != nullptr && !data->class_names.empty() && data->class_names.size() != un) {
    return Invalid(absl::StrCat("class report: ", n, " classes, but the trial's data report names ",
                                data->class_names.size(), "; both must count the same classes"));
  }
  return absl::OkStatus();
}

}  // namespace hpo::server
