#include "worker/data/image_folder.h"

#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <tuple>
#include <atomic>
#include <filesystem>
#include <functional>
#include <system_error>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "worker/data/image_cache.h"

namespace hpo::worker {
namespace fs = std::filesystem;
namespace {

constexpr int kMaxDepth = 32;  // folder nesting inside a class folder

bool Hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

bool IsWithin(const fs::path& canonical_root, const fs::path& canonical) {
  auto r = canonical_root.begin(), c = canonical.begin();
  for (; r != canonical_root.end(); ++r, ++c) {
    if (c == canonical.end() || *r != *c) return false;
  }
  return true;
}

// Runs fn(i) for i in [0, n) on `threads` threads.
void ParallelFor(int64_t n, int threads, const std::function<void(int64_t)>& fn) {
  threads = static_cast<int>(std::clamp<int64_t>(threads, 1, std::max<int64_t>(1, n)));
  std::atomic<int64_t> next{0};
  auto body = [&] {
    for (int64_t i; (i = next.fetch_add(1)) < n;) fn(i);
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(body);
  body();
  for (std::thread& t : pool) t.join();
}

class Scanner {
 public:
  Scanner(fs::path root, fs::path canonical_root, int threads, FolderLayout* out)
      : root_(std::move(root)), canonical_root_(std::move(canonical_root)), threads_(threads), out_(out) {}

  void Skip(const fs::path& p, const std::string& why) {
    const std::string rel = DisplayName(p.lexically_relative(root_).string());
    ++out_->skipped;
    out_->skipped_paths.push_back(p.string());
    if (static_cast<int>(out_->skipped_examples.size()) < kSkippedExamples) {
      out_->skipped_examples.push_back(absl::StrCat(rel, ": ", why));
    }
  }

  // The sorted class folders of `dir`, and the files directly in it (skipped).
  absl::StatusOr<std::vector<std::string>> ClassFolders(const fs::path& dir) {
    std::error_code ec;
    std::vector<std::string> classes;
    fs::directory_iterator it(dir, ec), end;
    if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot read folder ", DisplayName(dir.string()), ": ", ec.message()));
    std::vector<fs::path> stray;
    for (; it != end; it.increment(ec)) {
      if (ec) break;
      const fs::path p = it->path();
      if (Hidden(p)) {
        if (!it->is_directory(ec)) stray.push_back(p);
        continue;
      }
      if (it->is_directory(ec)) {
        classes.push_back(p.filename().string());
      } else {
        stray.push_back(p);
      }
    }
    if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot list folder ", DisplayName(dir.string()), ": ", ec.message()));
    std::sort(stray.begin(), stray.end());
    for (const fs::path& p : stray) Skip(p, "not in a class folder");
    std::sort(classes.begin(), classes.end());
    return classes;
  }

  // Every regular file under `dir` (recursively), as candidates with `label`. POSIX calls, one
  // fstatat per entry: a 60,000-file folder is listed in a fraction of what std::filesystem needs
  // (it stats each file once for the size and again for the time), and every trial lists it.
  void Files(const fs::path& dir, int label, int depth, std::vector<ImageFile>* files) {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) {
      Skip(dir, absl::StrCat("cannot read folder: ", std::strerror(errno)));
      return;
    }
    std::vector<std::string> names;
    errno = 0;
    while (const dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
    }
    if (errno != 0) Skip(dir, absl::StrCat("cannot list folder: ", std::strerror(errno)));
    std::sort(names.begin(), names.end());
    const int dfd = ::dirfd(d);
    // The stat calls are most of the time on a large folder: spread them over the threads.
    std::vector<struct stat> stats(names.size());
    std::vector<int> errors(names.size());
    ParallelFor(static_cast<int64_t>(names.size()), names.size() >= 512 ? threads_ : 1, [&](int64_t i) {
      if (::fstatat(dfd, names[i].c_str(), &stats[i], AT_SYMLINK_NOFOLLOW) != 0) errors[i] = errno;
    });
    const std::string prefix = dir.string() + "/";
    for (size_t i = 0; i < names.size(); ++i) {
      const std::string& name = names[i];
      const std::string path = prefix + name;
      struct stat& st = stats[i];
      if (errors[i] != 0) {
        Skip(path, absl::StrCat("cannot read: ", std::strerror(errors[i])));
        continue;
      }
      if (name[0] == '.') {
        if (!S_ISDIR(st.st_mode)) Skip(path, "hidden file");
        continue;
      }
      if (S_ISLNK(st.st_mode)) {
        std::error_code ec;
        const fs::path target = fs::canonical(path, ec);
        if (ec || ::stat(path.c_str(), &st) != 0) {
          Skip(path, "broken symbolic link");
          continue;
        }
        if (!IsWithin(canonical_root_, target)) {
          Skip(path, "symbolic link out of the data set");
          continue;
        }
        if (S_ISDIR(st.st_mode)) {
          Skip(path, "symbolic link to a folder (not followed)");
          continue;
        }
      }
      if (S_ISDIR(st.st_mode)) {
        if (depth >= kMaxDepth) {
          Skip(path, "folders nested too deep");
        } else {
          Files(path, label, depth + 1, files);
        }
        continue;
      }
      if (!S_ISREG(st.st_mode)) {
        Skip(path, "not a regular file");
        continue;
      }
      if (st.st_size == 0) {
        Skip(path, "empty file");
        continue;
      }
      if (st.st_size > kMaxImageFileBytes) {
        Skip(path, absl::StrCat("larger than ", kMaxImageFileBytes, " bytes"));
        continue;
      }
      ImageFile f;
      f.path = path;
      f.label = label;
      f.size = static_cast<int64_t>(st.st_size);
      f.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
      files->push_back(std::move(f));
    }
    ::closedir(d);
  }

  // Files of the split folder `dir` whose class folders must be among `classes`.
  absl::Status Split(const fs::path& dir, const std::vector<std::string>& classes, std::vector<ImageFile>* files) {
    auto found = ClassFolders(dir);
    if (!found.ok()) return found.status();
    for (const std::string& c : *found) {
      auto it = std::lower_bound(classes.begin(), classes.end(), c);
      if (it == classes.end() || *it != c) {
        return absl::InvalidArgumentError(absl::StrCat(
            "class folder ", DisplayName((dir / c).string()), " has no counterpart in ",
            DisplayName((root_ / "train").string()), ": every class of val/ and test/ must be a class of train/"));
      }
      Files(dir / c, static_cast<int>(it - classes.begin()), 0, files);
    }
    return absl::OkStatus();
  }

 private:
  fs::path root_, canonical_root_;
  int threads_;
  FolderLayout* out_;
};

struct Probe {
  int height = 0, width = 0;
  bool colour = false;
};

// Decodes one split into `set`, keeping the images that decode; records the others as skipped.
void DecodeSplit(const std::vector<ImageFile>& files, const fs::path& root, int c, int h, int w, ResizeMode mode,
                 int threads, int num_classes, ImageSet* set, ImageFolderData* d) {
  const int64_t image = static_cast<int64_t>(c) * h * w;
  std::vector<uint8_t> pixels(files.size() * image);
  std::vector<std::string> errors(files.size());
  ParallelFor(static_cast<int64_t>(files.size()), threads, [&](int64_t i) {
    auto bytes = ReadWholeFile(files[i].path);
    absl::Status s = bytes.ok() ? DecodeImage(reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size(), h, w, c,
                                              mode, pixels.data() + i * image)
                                : bytes.status();
    if (!s.ok()) errors[i] = std::string(s.message());
  });
  set->channels = c, set->height = h, set->width = w;
  set->num_classes = num_classes;
  int64_t kept = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    if (!errors[i].empty()) {
      ++d->skipped_files;
      if (static_cast<int>(d->skipped_examples.size()) < kSkippedExamples) {
        d->skipped_examples.push_back(
            absl::StrCat(DisplayName(fs::path(files[i].path).lexically_relative(root).string()), ": ", errors[i]));
      }
      continue;
    }
    if (kept != static_cast<int64_t>(i)) std::copy_n(pixels.begin() + i * image, image, pixels.begin() + kept * image);
    set->labels.push_back(static_cast<uint8_t>(files[i].label));
    ++kept;
  }
  pixels.resize(kept * image);
  set->pixels = std::move(pixels);
  set->count = kept;
}

// Holds an exclusive flock on a file while alive (-1: none).
struct FileLock {
  int fd = -1;
  explicit FileLock(const std::string& path) {
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0 && ::flock(fd, LOCK_EX) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ~FileLock() {
    if (fd >= 0) ::close(fd);  // releases the lock
  }
};

absl::StatusOr<ImageFolderData> Decode(const FolderLayout& layout, const ImageFolderOptions& options) {
  const fs::path root(layout.root);
  int h = options.height, w = options.width, c = options.channels;
  if (h <= 0 || w <= 0 || c <= 0) {
    // Defaults from the training images' headers: median size, colour if any is in colour.
    std::vector<Probe> probes(layout.train.size());
    ParallelFor(static_cast<int64_t>(probes.size()), options.threads, [&](int64_t i) {
      auto bytes = ReadWholeFile(layout.train[i].path);
      if (!bytes.ok()) return;
      auto hdr = ReadImageHeader(reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size());
      if (hdr.ok()) probes[i] = Probe{hdr->height, hdr->width, hdr->colour};
    });
    std::vector<int> hs, ws;
    bool colour = false;
    for (const Probe& p : probes) {
      if (p.height == 0) continue;
      hs.push_back(p.height), ws.push_back(p.width);
      colour = colour || p.colour;
    }
    if (hs.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("no usable JPEG or PNG image under ", DisplayName(layout.root)));
    }
    std::nth_element(hs.begin(), hs.begin() + hs.size() / 2, hs.end());
    std::nth_element(ws.begin(), ws.begin() + ws.size() / 2, ws.end());
    if (h <= 0 || w <= 0) DefaultImageSize(hs[hs.size() / 2], ws[ws.size() / 2], &h, &w);
    if (c <= 0) c = colour ? 3 : 1;
  }
  ImageFolderData d;
  d.class_names.reserve(layout.class_names.size());
  for (const std::string& name : layout.class_names) d.class_names.push_back(DisplayName(name));
  d.has_val = layout.has_val, d.has_test = layout.has_test;
  d.skipped_files = layout.skipped;
  d.skipped_examples = layout.skipped_examples;
  const int n = static_cast<int>(layout.class_names.size());
  DecodeSplit(layout.train, root, c, h, w, options.resize, options.threads, n, &d.train, &d);
  DecodeSplit(layout.val, root, c, h, w, options.resize, options.threads, n, &d.val, &d);
  DecodeSplit(layout.test, root, c, h, w, options.resize, options.threads, n, &d.test, &d);
  return d;
}

// Fails when a class of train/ has no usable image, or val/ / test/ exist but have none.
absl::Status CheckUsable(const FolderLayout& layout, const ImageFolderData& d) {
  std::vector<int64_t> per_class(d.class_names.size());
  for (uint8_t l : d.train.labels) ++per_class[l];
  const fs::path train_dir = layout.has_val || layout.has_test || fs::is_directory(fs::path(layout.root) / "train")
                                 ? fs::path(layout.root) / "train"
                                 : fs::path(layout.root);
  for (size_t k = 0; k < per_class.size(); ++k) {
    if (per_class[k] == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "class folder ", DisplayName((train_dir / layout.class_names[k]).string()),
          " has no usable JPEG or PNG image", d.skipped_examples.empty() ? "" : " (skipped: ",
          absl::StrJoin(d.skipped_examples, "; "), d.skipped_examples.empty() ? "" : ")"));
    }
  }
  if (layout.has_val && d.val.count == 0) {
    return absl::InvalidArgumentError(absl::StrCat("folder ", DisplayName(layout.root), "/val has no usable image"));
  }
  if (layout.has_test && d.test.count == 0) {
    return absl::InvalidArgumentError(absl::StrCat("folder ", DisplayName(layout.root), "/test has no usable image"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string DisplayName(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char b = p[i];
    size_t len = 0;
    uint32_t cp = 0;
    if (b >= 0x20 && b < 0x7F) {
      out.push_back(static_cast<char>(b));
      ++i;
      continue;
    }
    if (b >= 0xC2 && b <= 0xDF) len = 2, cp = b & 0x1F;
    else if (b >= 0xE0 && b <= 0xEF) len = 3, cp = b & 0x0F;
    else if (b >= 0xF0 && b <= 0xF4) len = 4, cp = b & 0x07;
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (p[i + k] & 0xC0) == 0x80;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are invalid too.
    ok = ok && !(len == 3 && cp < 0x800) && !(len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) &&
         !(cp >= 0xD800 && cp <= 0xDFFF);
    if (ok) {
      out.append(s, i, len);
      i += len;
    } else {
      absl::StrAppend(&out, absl::StrFormat("\\x%02X", b));
      ++i;
    }
  }
  return out;
}

void DefaultImageSize(int median_height, int median_width, int* height, int* width) {
  constexpr int kLongSide = 64, kMin = 8;
  int h = std::max(1, median_height), w = std::max(1, median_width);
  const int longer = std::max(h, w);
  if (longer > kLongSide) {
    h = static_cast<int>(std::lround(static_cast<double>(h) * kLongSide / longer));
    w = static_cast<int>(std::lround(static_cast<double>(w) * kLongSide / longer));
  }
  *height = std::max(kMin, h);
  *width = std::max(kMin, w);
}

bool IsImageFolder(const std::string& dir) {
  std::error_code ec;
  const fs::path d(dir);
  if (!fs::is_directory(d, ec)) return false;
  for (const char* marker : {"data_batch_1.bin", "train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"}) {
    if (fs::exists(d / marker, ec)) return false;
  }
  fs::directory_iterator it(d, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    if (!Hidden(it->path()) && it->is_directory(ec)) return true;
  }
  return false;
}

absl::StatusOr<FolderLayout> ScanImageFolder(const std::string& dir, int threads) {
  std::error_code ec;
  const fs::path root(dir);
  if (!fs::is_directory(root, ec)) {
    return absl::NotFoundError(absl::StrCat(DisplayName(dir), " is not a folder"));
  }
  const fs::path canonical_root = fs::canonical(root, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot resolve ", DisplayName(dir), ": ", ec.message()));
  FolderLayout out;
  out.root = dir;
  Scanner scan(root, canonical_root, threads, &out);
  const bool split_layout = fs::is_directory(root / "train", ec);
  const fs::path train_dir = split_layout ? root / "train" : root;
  auto classes = scan.ClassFolders(train_dir);
  if (!classes.ok()) return classes.status();
  if (classes->size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "folder ", DisplayName(train_dir.string()), " has ", classes->size(),
        " class folder(s); an image-folder data set needs at least two (", DisplayName(train_dir.string()),
        "/<class>/<images>)"));
  }
  if (classes->size() > 256) {
    return absl::InvalidArgumentError(absl::StrCat("folder ", DisplayName(train_dir.string()), " has ",
                                                   classes->size(), " class folders; hpo supports up to 256"));
  }
  out.class_names = *classes;
  for (size_t k = 0; k < classes->size(); ++k) scan.Files(train_dir / (*classes)[k], static_cast<int>(k), 0, &out.train);
  if (split_layout) {
    for (const auto& [name, files, present] :
         {std::tuple{"val", &out.val, &out.has_val}, std::tuple{"test", &out.test, &out.has_test}}) {
      if (!fs::is_directory(root / name, ec)) continue;
      *present = true;
      if (absl::Status s = scan.Split(root / name, out.class_names, files); !s.ok()) return s;
    }
  }
  return out;
}

absl::StatusOr<ImageFolderData> LoadImageFolder(const std::string& dir, const ImageFolderOptions& options) {
  if ((options.channels != 0 && options.channels != 1 && options.channels != 3) || options.height < 0 ||
      options.width < 0 || options.height > 4096 || options.width > 4096) {
    return absl::InvalidArgumentError("image options: channels must be 1 or 3 and image_size within [8, 4096]");
  }
  auto layout = ScanImageFolder(dir, options.threads);
  if (!layout.ok()) return layout.status();
  std::string cache_path;
  std::unique_ptr<FileLock> lock;
  if (!options.cache_dir.empty()) {
    std::error_code ec;
    fs::create_directories(options.cache_dir, ec);
    std::string base = DisplayName(fs::path(dir).filename().string());
    for (char& ch : base) {
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_') ch = '_';
    }
    cache_path = (fs::path(options.cache_dir) / absl::StrCat(base, "-", ImageCacheKey(*layout, options), ".u8")).string();
    if (auto cached = ReadImageCache(cache_path); cached.ok()) return cached;
    // One worker decodes while the others on this machine wait for its cache file.
    lock = std::make_unique<FileLock>(cache_path + ".lock");
    if (auto cached = ReadImageCache(cache_path); cached.ok()) return cached;
  }
  auto data = Decode(*layout, options);
  if (!data.ok()) return data.status();
  if (absl::Status s = CheckUsable(*layout, *data); !s.ok()) return s;
  if (!cache_path.empty()) {
    // A cache that cannot be written (read-only home, full disk) only costs the next trial time.
    if (WriteImageCache(cache_path, *data).ok()) data->cache_path = cache_path;
  }
  return data;
}

}  // namespace hpo::worker
