#include "worker/data/image_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace hpo::worker {
namespace {

constexpr char kMagic[8] = {'H', 'P', 'O', 'I', 'M', 'G', 'C', '1'};
constexpr char kEnd[8] = {'H', 'P', 'O', 'I', 'E', 'N', 'D', '1'};

// Two independent 64-bit FNV-1a streams: a 128-bit key, so unrelated folders never share a file.
struct Hasher {
  uint64_t a = 0xcbf29ce484222325ULL, b = 0x84222325cbf29ce4ULL;
  void Bytes(const void* p, size_t n) {
    const auto* s = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) {
      a = (a ^ s[i]) * 0x100000001b3ULL;
      b = (b ^ s[i]) * 0x100000001b3ULL ^ (b >> 29);
    }
  }
  void Str(const std::string& s) {
    Int(static_cast<int64_t>(s.size()));
    Bytes(s.data(), s.size());
  }
  void Int(int64_t v) { Bytes(&v, sizeof v); }
};

class Writer {
 public:
  explicit Writer(std::ofstream& out) : out_(out) {}
  void Raw(const void* p, size_t n) { out_.write(static_cast<const char*>(p), static_cast<std::streamsize>(n)); }
  void Int(int64_t v) { Raw(&v, sizeof v); }
  void Str(const std::string& s) {
    Int(static_cast<int64_t>(s.size()));
    Raw(s.data(), s.size());
  }
  void Set(const ImageSet& s) {
    Int(s.count);
    Raw(s.labels.data(), s.labels.size());
    Raw(s.pixels.data(), s.pixels.size());
  }

 private:
  std::ofstream& out_;
};

// Bounds-checked reads over the mapped file.
class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  bool Raw(void* dst, size_t n) {
    if (n > n_ - off_) return false;
    std::memcpy(dst, p_ + off_, n);
    off_ += n;
    return true;
  }
  bool Int(int64_t* v) { return Raw(v, sizeof *v); }
  bool Str(std::string* s) {
    int64_t len = 0;
    if (!Int(&len) || len < 0 || static_cast<uint64_t>(len) > n_ - off_) return false;
    s->assign(reinterpret_cast<const char*>(p_ + off_), static_cast<size_t>(len));
    off_ += static_cast<size_t>(len);
    return true;
  }
  bool Set(int c, int h, int w, int classes, ImageSet* s) {
    int64_t count = 0;
    if (!Int(&count) || count < 0) return false;
    s->count = count;
    s->channels = c, s->height = h, s->width = w;
    s->num_classes = classes;
    const uint64_t px = static_cast<uint64_t>(count) * c * h * w;
    if (static_cast<uint64_t>(count) > n_ - off_ || px > n_ - off_ - count) return false;
    s->labels.assign(p_ + off_, p_ + off_ + count);
    off_ += count;
    s->pixels.assign(p_ + off_, p_ + off_ + px);
    off_ += px;
    for (uint8_t l : s->labels) {
      if (l >= classes) return false;
    }
    return true;
  }
  bool AtEnd() const { return off_ == n_; }

 private:
  const uint8_t* p_;
  size_t n_, off_ = 0;
};

}  // namespace

std::string ImageCacheKey(const FolderLayout& layout, const ImageFolderOptions& options) {
  Hasher h;
  h.Str("hpo image cache v2");  // bump when decoding or resizing changes what a pixel is
  h.Int(options.height), h.Int(options.width), h.Int(options.channels), h.Int(static_cast<int>(options.resize));
  h.Int(layout.has_val), h.Int(layout.has_test);
  for (const std::string& c : layout.class_names) h.Str(c);
  for (const auto* split : {&layout.train, &layout.val, &layout.test}) {
    h.Int(static_cast<int64_t>(split->size()));
    for (const ImageFile& f : *split) {
      h.Str(f.path);
      h.Int(f.label), h.Int(f.size), h.Int(f.mtime_ns);
    }
  }
  // Skipped entries change the report (how many files were skipped), not the pixels.
  for (const std::string& s : layout.skipped_paths) h.Str(s);
  return absl::StrFormat("%016x%016x", h.a, h.b);
}

absl::Status WriteImageCache(const std::string& path, const ImageFolderData& d) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::UnavailableError(absl::StrCat("cannot write the image cache ", tmp, ": ", std::strerror(errno)));
    Writer w(out);
    w.Raw(kMagic, sizeof kMagic);
    w.Int(d.train.channels), w.Int(d.train.height), w.Int(d.train.width);
    w.Int(static_cast<int64_t>(d.class_names.size()));
    for (const std::string& c : d.class_names) w.Str(c);
    w.Int(d.has_val), w.Int(d.has_test), w.Int(d.skipped_files);
    w.Int(static_cast<int64_t>(d.skipped_examples.size()));
    for (const std::string& s : d.skipped_examples) w.Str(s);
    w.Set(d.train), w.Set(d.val), w.Set(d.test);
    w.Raw(kEnd, sizeof kEnd);
    out.flush();
    if (!out) {
      out.close();
      std::filesystem::remove(tmp);
      return absl::UnavailableError(absl::StrCat("cannot write the image cache ", tmp, " (disk full?)"));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::filesystem::remove(tmp);
    return absl::UnavailableError(absl::StrCat("cannot move the image cache into place at ", path, ": ",
                                               std::strerror(err)));
  }
  return absl::OkStatus();
}

absl::StatusOr<ImageFolderData> ReadImageCache(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("no image cache at ", path));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size <= 0) {
    ::close(fd);
    return absl::DataLossError(absl::StrCat("image cache ", path, " is empty"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  // MAP_POPULATE: the whole file is read in once it is mapped, not page by page as it is copied.
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return absl::DataLossError(absl::StrCat("cannot map the image cache ", path));
  Reader r(static_cast<const uint8_t*>(map), size);
  ImageFolderData d;
  auto parse = [&]() -> bool {
    char magic[8];
    int64_t c = 0, h = 0, w = 0, classes = 0, has_val = 0, has_test = 0, examples = 0;
    if (!r.Raw(magic, 8) || std::memcmp(magic, kMagic, 8) != 0) return false;
    if (!r.Int(&c) || !r.Int(&h) || !r.Int(&w) || !r.Int(&classes)) return false;
    if ((c != 1 && c != 3) || h < 1 || w < 1 || h > 4096 || w > 4096 || classes < 2 || classes > 256) return false;
    d.class_names.resize(static_cast<size_t>(classes));
    for (std::string& name : d.class_names) {
      if (!r.Str(&name)) return false;
    }
    if (!r.Int(&has_val) || !r.Int(&has_test) || !r.Int(&d.skipped_files) || !r.Int(&examples)) return false;
    if (examples < 0 || examples > kSkippedExamples) return false;
    d.skipped_examples.resize(static_cast<size_t>(examples));
    for (std::string& s : d.skipped_examples) {
      if (!r.Str(&s)) return false;
    }
    d.has_val = has_val != 0, d.has_test = has_test != 0;
    const int ci = static_cast<int>(c), hi = static_cast<int>(h), wi = static_cast<int>(w);
    const int n = static_cast<int>(classes);
    if (!r.Set(ci, hi, wi, n, &d.train) || !r.Set(ci, hi, wi, n, &d.val) || !r.Set(ci, hi, wi, n, &d.test)) {
      return false;
    }
    char end[8];
    return r.Raw(end, 8) && std::memcmp(end, kEnd, 8) == 0 && r.AtEnd();
  };
  const bool ok = parse();
  ::munmap(map, size);
  if (!ok) return absl::DataLossError(absl::StrCat("image cache ", path, " is incomplete or of another version"));
  d.from_cache = true;
  d.cache_path = path;
  return d;
}

}  // namespace hpo::worker
