// Image folders as a data set, the way Keras' image_dataset_from_directory and
// torchvision's ImageFolder expect them:
//   NAME/train/<class>/<files>  with optional  NAME/val/<class>/...  and  NAME/test/<class>/...
//   or just NAME/<class>/<files>  (then only a training split).
// Class names are the folder names; labels are their sorted (byte-wise) order.
// Names and paths in messages are shown as UTF-8, with any other byte as \xNN.
// No LibTorch here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/dataset.h"
#include "worker/data/image_decode.h"

namespace hpo::worker {

// One candidate file of a split (not yet known to be a usable image).
struct ImageFile {
  std::string path;        // full path
  int label = 0;           // index into FolderLayout::class_names
  int64_t size = 0;        // bytes
  int64_t mtime_ns = 0;    // modification time
};

// At most this many skipped files are listed by path; all are counted.
inline constexpr int kSkippedExamples = 5;

struct FolderLayout {
  std::string root;                      // the data set folder
  std::vector<std::string> class_names;  // sorted; from train/ (or the root)
  std::vector<ImageFile> train, val, test;  // sorted by (label, path)
  bool has_val = false, has_test = false;
  // Files that cannot be images at all: not in a class folder, unreadable,
  // empty, larger than kMaxImageFileBytes, or symbolic links leaving the root.
  int64_t skipped = 0;
  std::vector<std::string> skipped_examples;  // the first few, "path: why" (path relative to root)
  std::vector<std::string> skipped_paths;     // all of them (they change the cache key)
};

// True when DIR has no IDX or CIFAR-10 files but has sub-folders (train/ or classes).
bool IsImageFolder(const std::string& dir);

// Lists the files of an image-folder data set. Fails (kInvalidArgument, the
// message names the folder) with fewer than two classes, when val/ or test/
// have a class that train/ lacks, or when the root cannot be read. Hidden
// files (.DS_Store) and files outside class folders are counted as skipped.
// `threads` share the stat calls of large folders.
[[nodiscard]] absl::StatusOr<FolderLayout> ScanImageFolder(const std::string& dir, int threads = 1);

struct ImageFolderOptions {
  int height = 0, width = 0;  // 0: picked from the data (DefaultImageSize)
  int channels = 0;           // 0: 3 when any training image is in colour, else 1
  ResizeMode resize = ResizeMode::kStretch;
  int threads = 1;            // decoding threads
  std::string cache_dir;      // where decoded sets are cached ("": no cache)
};

// The decoded data set.
struct ImageFolderData {
  ImageSet train, val, test;  // val/test: count 0 when the folder has none
  bool has_val = false, has_test = false;
  std::vector<std::string> class_names;
  int64_t skipped_files = 0;  // files not used: ScanImageFolder's plus undecodable/oversized images
  std::vector<std::string> skipped_examples;
  bool from_cache = false;    // mapped from the cache instead of decoded
  std::string cache_path;     // the cache file used or written ("" without a cache)
};

// Scans, decodes (in parallel) and resizes DIR, or maps the cached result of an
// earlier identical load. Fails when a class of train/ has no usable image.
[[nodiscard]] absl::StatusOr<ImageFolderData> LoadImageFolder(const std::string& dir,
                                                              const ImageFolderOptions& options);

// The default image size for training images of median size `height` x
// `width`: the median size itself when its longer side is at most 64 pixels,
// otherwise scaled down (keeping the aspect ratio) so the longer side is 64;
// never below 8.
void DefaultImageSize(int median_height, int median_width, int* height, int* width);

// `s` as valid UTF-8: bytes that are not part of a valid sequence, and control
// characters, become \xNN (file names on Linux are bytes, messages are UTF-8).
std::string DisplayName(const std::string& s);

}  // namespace hpo::worker
