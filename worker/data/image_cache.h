// The decoded-image cache: one file per (folder contents, image_size, channels,
// resize), written once by the first trial on a machine and mapped by later
// trials and by other workers. No LibTorch here.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/data/image_folder.h"

namespace hpo::worker {

// A key that changes when any file of the layout is added, removed, renamed,
// resized or touched (modification time), or when an option changes; hex, 32 digits.
std::string ImageCacheKey(const FolderLayout& layout, const ImageFolderOptions& options);

// Maps a cache file and copies its sets out. kNotFound when there is none;
// kDataLoss when it is not a complete cache file of this version.
[[nodiscard]] absl::StatusOr<ImageFolderData> ReadImageCache(const std::string& path);

// Writes `data` to `path` atomically (a temporary file renamed into place), so
// a reader never sees a partial file.
[[nodiscard]] absl::Status WriteImageCache(const std::string& path, const ImageFolderData& data);

}  // namespace hpo::worker
