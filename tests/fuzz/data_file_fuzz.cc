// libFuzzer target: the worker's data files read from disk: IDX (raw or gzip), CIFAR-10 batches and the
// decoded-image cache. The first byte picks the reader; the rest is written to a file in /dev/shm.
#include <unistd.h>

#include <cstdlib>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "worker/data/dataset.h"
#include "worker/data/image_cache.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t pick = data[0] % 4;
  const std::string dir = "/dev/shm/hpo-fuzz-" + std::to_string(::getpid());
  static const bool made = [&] { return std::system(("mkdir -p " + dir).c_str()) == 0; }();
  if (!made) return 0;
  const std::string file = dir + "/input", labels = dir + "/labels";
  std::ofstream(file, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data + 1),
                                                               static_cast<std::streamsize>(size - 1));
  switch (pick) {
    case 0: {  // images: the input; labels: a valid header for 1..255 labels
      std::ofstream l(labels, std::ios::binary | std::ios::trunc);
      const char head[8] = {0, 0, 8, 1, 0, 0, 0, static_cast<char>(size % 255 + 1)};
      l.write(head, 8);
      for (size_t i = 0; i < size % 255 + 1; ++i) l.put(static_cast<char>(i % 10));
      l.close();
      (void)hpo::worker::ReadIdx(file, labels);
      break;
    }
    case 1: (void)hpo::worker::ReadIdx(dir + "/missing", file); break;  // the input as the label file
    case 2: (void)hpo::worker::ReadCifar({file}); break;
    case 3: (void)hpo::worker::ReadImageCache(file); break;
  }
  return 0;
}
