// Image decoding, image folders as data sets, and the decoded-image cache, on
// JPEG and PNG files written at test time.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/testing/image_files.h"
#include "worker/data/dataset.h"
#include "worker/data/image_cache.h"
#include "worker/data/image_decode.h"
#include "worker/data/image_folder.h"

namespace hpo::worker {
namespace {

namespace fs = std::filesystem;
using hpo::testing::WriteJpeg;
using hpo::testing::WritePalettePng;
using hpo::testing::WritePng;

std::string Slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void Spit(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

absl::StatusOr<std::vector<uint8_t>> Decode(const fs::path& p, int h, int w, int c,
                                            ResizeMode mode = ResizeMode::kStretch) {
  const std::string bytes = Slurp(p);
  std::vector<uint8_t> out(static_cast<size_t>(c) * h * w);
  absl::Status s = DecodeImage(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), h, w, c, mode, out.data());
  if (!s.ok()) return s;
  return out;
}

// A solid image: every pixel `rgb` (interleaved, `channels` of rgb[0..]).
std::vector<uint8_t> Solid(int w, int h, int channels, std::vector<uint8_t> value) {
  std::vector<uint8_t> px;
  for (int i = 0; i < w * h; ++i) px.insert(px.end(), value.begin(), value.begin() + channels);
  return px;
}

// A 28x28 gray "garment": a bright rectangle whose position depends on the class, plus noise.
std::vector<uint8_t> Garment(int label, int seed, int size = 28) {
  std::vector<uint8_t> px(static_cast<size_t>(size) * size);
  uint32_t r = 2654435761u * (seed + 1);
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      r = r * 1664525u + 1013904223u;
      const bool on = (label == 0) ? (y < size / 2) : (x < size / 2);
      px[y * size + x] = static_cast<uint8_t>((on ? 200 : 30) + (r >> 28));
    }
  }
  return px;
}

// `jpg` with its baseline SOF marker rewritten to claim 30000 x 30000 pixels (a decompression bomb's
// header); "" when it has no SOF0 marker.
std::string ClaimSize30000(std::string jpg) {
  for (size_t sof = 2; sof + 9 < jpg.size(); ++sof) {
    if (static_cast<uint8_t>(jpg[sof]) == 0xFF && static_cast<uint8_t>(jpg[sof + 1]) == 0xC0) {
      jpg[sof + 5] = 0x75, jpg[sof + 6] = 0x30, jpg[sof + 7] = 0x75, jpg[sof + 8] = 0x30;  // 0x7530 = 30000
      return jpg;
    }
  }
  return "";
}

class ImageFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("hpo_image_test_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // DIR/<class>/img_<i>.{png,jpg}: `n` images per class, alternating PNG and JPEG, mixed sizes.
  void Fill(const fs::path& dir, const std::vector<std::string>& classes, int n) {
    for (size_t c = 0; c < classes.size(); ++c) {
      fs::create_directories(dir / classes[c]);
      for (int i = 0; i < n; ++i) {
        const int size = i % 3 == 0 ? 28 : 40;
        const std::vector<uint8_t> px = Garment(static_cast<int>(c), i, size);
        const fs::path base = dir / classes[c] / ("img_" + std::to_string(i));
        ASSERT_TRUE(i % 2 ? WriteJpeg(base.string() + ".jpg", size, size, 1, px, 95)
                          : WritePng(base.string() + ".png", size, size, 1, 8, px));
      }
    }
  }
  fs::path root_;
};

TEST_F(ImageFolderTest, DecodesEveryPngKindAndJpegToTheRequestedChannels) {
  const fs::path d = root_;
  ASSERT_TRUE(WritePng((d / "g8.png").string(), 4, 4, 1, 8, Solid(4, 4, 1, {77})));
  // 16-bit gray 0x8000 -> 128 after conversion to 8 bits.
  ASSERT_TRUE(WritePng((d / "g16.png").string(), 4, 4, 1, 16, Solid(4, 4, 2, {0x80, 0x00})));
  ASSERT_TRUE(WritePng((d / "ga.png").string(), 4, 4, 2, 8, Solid(4, 4, 2, {90, 10})));
  ASSERT_TRUE(WritePng((d / "rgb.png").string(), 4, 4, 3, 8, Solid(4, 4, 3, {255, 0, 0})));
  ASSERT_TRUE(WritePng((d / "rgba.png").string(), 4, 4, 4, 8, Solid(4, 4, 4, {0, 0, 255, 0})));
  ASSERT_TRUE(WritePalettePng((d / "pal.png").string(), 4, 4, std::vector<uint8_t>(16, 1), {0, 0, 0, 0, 255, 0}));
  ASSERT_TRUE(WriteJpeg((d / "gray.jpg").string(), 16, 16, 1, Solid(16, 16, 1, {160}), 100));
  ASSERT_TRUE(WriteJpeg((d / "rgb.jpg").string(), 16, 16, 3, Solid(16, 16, 3, {0, 200, 0}), 100));

  auto g8 = Decode(d / "g8.png", 4, 4, 1);
  ASSERT_TRUE(g8.ok()) << g8.status();
  EXPECT_EQ((*g8)[0], 77);
  auto g16 = Decode(d / "g16.png", 4, 4, 3);  // gray replicated to RGB
  ASSERT_TRUE(g16.ok()) << g16.status();
  EXPECT_EQ((*g16)[0], 128);
  EXPECT_EQ((*g16)[16], 128);
  EXPECT_EQ((*g16)[32], 128);
  auto ga = Decode(d / "ga.png", 4, 4, 1);  // alpha dropped, not composited
  ASSERT_TRUE(ga.ok()) << ga.status();
  EXPECT_EQ((*ga)[5], 90);
  auto red = Decode(d / "rgb.png", 4, 4, 3);
  ASSERT_TRUE(red.ok()) << red.status();
  EXPECT_EQ((*red)[0], 255);   // R plane
  EXPECT_EQ((*red)[16], 0);    // G plane
  auto red_luma = Decode(d / "rgb.png", 4, 4, 1);
  ASSERT_TRUE(red_luma.ok());
  EXPECT_EQ((*red_luma)[0], 76);  // 0.299 * 255, as PIL's convert("L")
  auto blue = Decode(d / "rgba.png", 4, 4, 3);  // fully transparent pixels keep their colour
  ASSERT_TRUE(blue.ok()) << blue.status();
  EXPECT_EQ((*blue)[32], 255);
  auto pal = Decode(d / "pal.png", 4, 4, 3);
  ASSERT_TRUE(pal.ok()) << pal.status();
  EXPECT_EQ((*pal)[16], 255);  // palette entry 1 is green
  EXPECT_EQ((*pal)[0], 0);
  auto gray_jpeg = Decode(d / "gray.jpg", 8, 8, 1);  // scaled decoding (1/2) of a solid image
  ASSERT_TRUE(gray_jpeg.ok()) << gray_jpeg.status();
  EXPECT_NEAR((*gray_jpeg)[27], 160, 2);
  auto green = Decode(d / "rgb.jpg", 16, 16, 3);
  ASSERT_TRUE(green.ok()) << green.status();
  EXPECT_NEAR((*green)[256 + 100], 200, 4);
  EXPECT_NEAR((*green)[100], 0, 4);

  // Headers: size and colour without decoding.
  const std::string rgb = Slurp(d / "rgb.jpg");
  auto hdr = ReadImageHeader(reinterpret_cast<const uint8_t*>(rgb.data()), rgb.size());
  ASSERT_TRUE(hdr.ok());
  EXPECT_EQ(hdr->width, 16);
  EXPECT_TRUE(hdr->colour);
  const std::string g = Slurp(d / "g16.png");
  hdr = ReadImageHeader(reinterpret_cast<const uint8_t*>(g.data()), g.size());
  ASSERT_TRUE(hdr.ok());
  EXPECT_FALSE(hdr->colour);
  EXPECT_STREQ(hdr->format, "png");
}

TEST_F(ImageFolderTest, PadKeepsTheAspectRatioWithBlackBarsAndCropCutsTheCentre) {
  // 8 wide x 4 high, white; left half 255, right half 100.
  std::vector<uint8_t> px(32);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 8; ++x) px[y * 8 + x] = x < 4 ? 255 : 100;
  ASSERT_TRUE(WritePng((root_ / "wide.png").string(), 8, 4, 1, 8, px));
  auto pad = Decode(root_ / "wide.png", 8, 8, 1, ResizeMode::kPad);
  ASSERT_TRUE(pad.ok()) << pad.status();
  EXPECT_EQ((*pad)[0 * 8 + 0], 0);    // top bar
  EXPECT_EQ((*pad)[7 * 8 + 7], 0);    // bottom bar
  EXPECT_EQ((*pad)[3 * 8 + 0], 255);  // image rows 2..5
  EXPECT_EQ((*pad)[4 * 8 + 7], 100);
  auto crop = Decode(root_ / "wide.png", 4, 4, 1, ResizeMode::kCrop);  // the centre 4x4: 255 | 100
  ASSERT_TRUE(crop.ok()) << crop.status();
  EXPECT_EQ((*crop)[0], 255);
  EXPECT_EQ((*crop)[3], 100);
  auto stretch = Decode(root_ / "wide.png", 4, 4, 1, ResizeMode::kStretch);  // whole width: 255 255 | 100 100
  ASSERT_TRUE(stretch.ok()) << stretch.status();
  EXPECT_EQ((*stretch)[0], 255);
  EXPECT_EQ((*stretch)[3], 100);
  EXPECT_EQ((*stretch)[1 * 4 + 0], 255);
  // Shrinking averages: a 2x2 checkerboard of 0/200 shrunk to 1x1 is the mean.
  ASSERT_TRUE(WritePng((root_ / "check.png").string(), 2, 2, 1, 8, {0, 200, 200, 0}));
  auto mean = Decode(root_ / "check.png", 1, 1, 1);
  ASSERT_TRUE(mean.ok());
  EXPECT_NEAR((*mean)[0], 100, 1);
}

TEST_F(ImageFolderTest, RefusesBombsTruncatedAndNonImageFilesWithoutDecoding) {
  // A real 8x8 PNG whose IHDR is rewritten to 20000 x 20000 (CRC fixed): refused from the header.
  ASSERT_TRUE(WritePng((root_ / "small.png").string(), 8, 8, 1, 8, Solid(8, 8, 1, {1})));
  std::string png = Slurp(root_ / "small.png");
  for (int off : {16, 20}) {
    png[off] = 0, png[off + 1] = 0, png[off + 2] = 0x4E, png[off + 3] = 0x20;  // 20000
  }
  const uLong crc = crc32(0, reinterpret_cast<const Bytef*>(png.data() + 12), 17);
  for (int k = 0; k < 4; ++k) png[29 + k] = static_cast<char>((crc >> (24 - 8 * k)) & 0xFF);
  std::vector<uint8_t> out(3 * 64);
  absl::Status s = DecodeImage(reinterpret_cast<const uint8_t*>(png.data()), png.size(), 8, 8, 1,
                               ResizeMode::kStretch, out.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("over the limit"), std::string::npos) << s;

  // A JPEG whose SOF says 30000 x 30000.
  ASSERT_TRUE(WriteJpeg((root_ / "small.jpg").string(), 16, 16, 1, Solid(16, 16, 1, {9})));
  const std::string jpg = ClaimSize30000(Slurp(root_ / "small.jpg"));
  ASSERT_FALSE(jpg.empty());
  s = DecodeImage(reinterpret_cast<const uint8_t*>(jpg.data()), jpg.size(), 8, 8, 1, ResizeMode::kStretch, out.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;

  // Truncated files are refused, not half-decoded.
  ASSERT_TRUE(WriteJpeg((root_ / "big.jpg").string(), 64, 64, 3, Solid(64, 64, 3, {10, 20, 30})));
  const std::string whole = Slurp(root_ / "big.jpg");
  const std::string cut = whole.substr(0, whole.size() / 2);
  s = DecodeImage(reinterpret_cast<const uint8_t*>(cut.data()), cut.size(), 8, 8, 3, ResizeMode::kStretch, out.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  ASSERT_TRUE(WritePng((root_ / "big.png").string(), 64, 64, 1, 8, Garment(0, 1, 64)));
  const std::string p = Slurp(root_ / "big.png");
  const std::string pcut = p.substr(0, p.size() - 30);
  s = DecodeImage(reinterpret_cast<const uint8_t*>(pcut.data()), pcut.size(), 8, 8, 1, ResizeMode::kStretch, out.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;

  const std::string text = "just some notes\n";
  s = DecodeImage(reinterpret_cast<const uint8_t*>(text.data()), text.size(), 8, 8, 1, ResizeMode::kStretch, out.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "not a JPEG or PNG image");
}

// A refused file must not spoil the decoder for the next file on the same thread: each worker
// thread keeps one TurboJPEG handle, and a truncated JPEG once left it so that the next valid
// JPEG's header read as empty, and that image was skipped (seen as a flaky folder test in CI).
TEST_F(ImageFolderTest, AFileThatFailsDoesNotSpoilTheNextDecodeOnTheSameThread) {
  ASSERT_TRUE(WriteJpeg((root_ / "big.jpg").string(), 64, 64, 3, Solid(64, 64, 3, {10, 20, 30})));
  ASSERT_TRUE(WriteJpeg((root_ / "good.jpg").string(), 40, 40, 1, Garment(0, 1, 40), 95));
  const std::string whole = Slurp(root_ / "big.jpg");
  const std::string good = Slurp(root_ / "good.jpg");
  const std::string sof_bomb = ClaimSize30000(whole);
  ASSERT_FALSE(sof_bomb.empty());
  const std::vector<std::string> bad = {whole.substr(0, whole.size() / 2), whole.substr(0, 200), sof_bomb,
                                        whole.substr(0, 3)};
  std::vector<uint8_t> out(3 * 40 * 40);
  for (size_t k = 0; k < bad.size(); ++k) {
    for (int ch : {1, 3}) {
      for (int target : {8, 40}) {
        absl::Status s = DecodeImage(reinterpret_cast<const uint8_t*>(bad[k].data()), bad[k].size(), target, target,
                                     ch, ResizeMode::kStretch, out.data());
        EXPECT_FALSE(s.ok()) << "bad file " << k;
        auto hdr = ReadImageHeader(reinterpret_cast<const uint8_t*>(good.data()), good.size());
        ASSERT_TRUE(hdr.ok()) << "after bad file " << k << ", " << ch << " channels, " << target << ": " << hdr.status();
        EXPECT_EQ(hdr->width, 40);
        s = DecodeImage(reinterpret_cast<const uint8_t*>(bad[k].data()), bad[k].size(), target, target, ch,
                        ResizeMode::kStretch, out.data());
        EXPECT_FALSE(s.ok());
        s = DecodeImage(reinterpret_cast<const uint8_t*>(good.data()), good.size(), 40, 40, 1, ResizeMode::kStretch,
                        out.data());
        EXPECT_TRUE(s.ok()) << "after bad file " << k << ", " << ch << " channels, " << target << ": " << s;
      }
    }
  }
}

TEST_F(ImageFolderTest, LoadsSplitsSkipsBadFilesAndNamesClassesInSortedOrder) {
  const fs::path ds = root_ / "photos";
  Fill(ds / "train", {"shirt", "bag"}, 6);
  Fill(ds / "val", {"bag", "shirt"}, 3);
  // Bad files of every kind, in train/.
  Spit(ds / "train" / "README.txt", "not a class\n");
  Spit(ds / "train" / "bag" / ".DS_Store", "junk");
  Spit(ds / "train" / "bag" / "notes.txt", "hello");
  Spit(ds / "train" / "bag" / "empty.png", "");
  const std::string jpg = Slurp(ds / "train" / "bag" / "img_1.jpg");
  Spit(ds / "train" / "shirt" / "truncated.jpg", jpg.substr(0, jpg.size() / 2));
  Spit(ds / "train" / "shirt" / std::string("caf\xE9-latin1.png"), Slurp(ds / "train" / "shirt" / "img_0.png"));
  Spit(root_ / "outside.png", Slurp(ds / "train" / "shirt" / "img_0.png"));
  fs::create_symlink(root_ / "outside.png", ds / "train" / "bag" / "escape.png");

  ImageFolderOptions o;
  o.threads = 2;
  auto d = LoadImageFolder(ds.string(), o);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->class_names, (std::vector<std::string>{"bag", "shirt"}));
  EXPECT_EQ(d->train.count, 13);  // 6 + 6 + the Latin-1 named copy
  EXPECT_EQ(d->val.count, 6);
  EXPECT_TRUE(d->has_val);
  EXPECT_FALSE(d->has_test);
  EXPECT_EQ(d->test.count, 0);
  // Defaults: gray images -> 1 channel; median size 40x40 <= 64 -> kept.
  EXPECT_EQ(d->train.channels, 1);
  EXPECT_EQ(d->train.height, 40);
  EXPECT_EQ(d->train.width, 40);
  // README.txt (outside a class), .DS_Store, notes.txt, empty.png, truncated.jpg, escape.png.
  EXPECT_EQ(d->skipped_files, 6);
  ASSERT_EQ(d->skipped_examples.size(), 5u);
  std::string all;
  for (const auto& e : d->skipped_examples) all += e + "\n";
  EXPECT_NE(all.find("train/README.txt: not in a class folder"), std::string::npos) << all;
  EXPECT_NE(all.find("symbolic link out of the data set"), std::string::npos) << all;
  // Labels follow the sorted class names: "bag" images (left half bright) are label 0.
  int bag = 0;
  for (uint8_t l : d->train.labels) bag += l == 0;
  EXPECT_EQ(bag, 6);

  // The colour and size options are honoured.
  o.channels = 3, o.height = 12, o.width = 20, o.resize = ResizeMode::kPad;
  d = LoadImageFolder(ds.string(), o);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->train.channels, 3);
  EXPECT_EQ(d->train.height, 12);
  EXPECT_EQ(d->train.width, 20);
  EXPECT_EQ(d->train.pixels.size(), 13u * 3 * 12 * 20);
}

TEST_F(ImageFolderTest, ClearErrorsForFoldersThatAreNoDataSet) {
  Fill(root_ / "one" / "train", {"only"}, 2);
  auto d = LoadImageFolder((root_ / "one").string(), {});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find("at least two"), std::string::npos) << d.status();
  EXPECT_NE(d.status().message().find("one/train"), std::string::npos) << d.status();

  Fill(root_ / "emptyclass", {"a", "b"}, 2);
  for (const auto& e : fs::directory_iterator(root_ / "emptyclass" / "b")) fs::remove(e.path());
  Spit(root_ / "emptyclass" / "b" / "x.txt", "no image");
  d = LoadImageFolder((root_ / "emptyclass").string(), {});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find("emptyclass/b has no usable"), std::string::npos) << d.status();

  Fill(root_ / "extra" / "train", {"a", "b"}, 2);
  Fill(root_ / "extra" / "val", {"a", "c"}, 1);
  d = LoadImageFolder((root_ / "extra").string(), {});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find("extra/val/c"), std::string::npos) << d.status();

  d = LoadImageFolder((root_ / "missing").string(), {});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ImageFolderTest, NonUtf8NamesAndSpecialFilesAreHandled) {
  // A class folder whose name is Latin-1, not UTF-8: its name is shown with the byte escaped.
  Fill(root_ / "names", {std::string("caf\xE9"), "tea"}, 2);
  ASSERT_EQ(::mkfifo((root_ / "names" / "tea" / "pipe.png").c_str(), 0644), 0);  // would block a reader
  auto d = LoadImageFolder((root_ / "names").string(), {});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->class_names, (std::vector<std::string>{"caf\\xE9", "tea"}));
  EXPECT_EQ(d->skipped_files, 1);
  ASSERT_EQ(d->skipped_examples.size(), 1u);
  EXPECT_EQ(d->skipped_examples[0], "tea/pipe.png: not a regular file");
}

TEST_F(ImageFolderTest, TheCacheIsReusedUntilTheFolderChanges) {
  const fs::path ds = root_ / "cached";
  Fill(ds, {"a", "b"}, 4);
  ImageFolderOptions o;
  o.cache_dir = (root_ / "cache").string();
  auto first = LoadImageFolder(ds.string(), o);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->from_cache);
  ASSERT_FALSE(first->cache_path.empty());
  EXPECT_TRUE(fs::exists(first->cache_path));

  auto second = LoadImageFolder(ds.string(), o);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->from_cache);
  EXPECT_EQ(second->train.pixels, first->train.pixels);
  EXPECT_EQ(second->train.labels, first->train.labels);
  EXPECT_EQ(second->class_names, first->class_names);

  // Another size is another cache entry.
  o.height = o.width = 16;
  auto other = LoadImageFolder(ds.string(), o);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->from_cache);
  EXPECT_NE(other->cache_path, first->cache_path);
  o.height = o.width = 0;

  // A changed file (new modification time) and an added file each give a new cache.
  fs::last_write_time(ds / "a" / "img_0.png", fs::last_write_time(ds / "a" / "img_0.png") + std::chrono::seconds(5));
  auto touched = LoadImageFolder(ds.string(), o);
  ASSERT_TRUE(touched.ok());
  EXPECT_FALSE(touched->from_cache);
  ASSERT_TRUE(WritePng((ds / "b" / "new.png").string(), 28, 28, 1, 8, Garment(1, 99)));
  auto added = LoadImageFolder(ds.string(), o);
  ASSERT_TRUE(added.ok());
  EXPECT_FALSE(added->from_cache);
  EXPECT_EQ(added->train.count, first->train.count + 1);

  // A damaged cache file is not trusted: the folder is decoded again.
  Spit(added->cache_path, "HPOIMGC1garbage");
  auto again = LoadImageFolder(ds.string(), o);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->from_cache);
  EXPECT_EQ(again->train.pixels, added->train.pixels);
  EXPECT_EQ(ReadImageCache((root_ / "cache" / "nothing.u8").string()).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ImageFolderTest, LoadSplitUsesValAsItStandsCarvesWithoutItAndStaysInsideTheDataRoot) {
  Fill(root_ / "withval" / "train", {"a", "b"}, 10);
  Fill(root_ / "withval" / "val", {"a", "b"}, 3);
  Fill(root_ / "withval" / "test", {"a", "b"}, 2);
  SplitOptions o;
  auto s = LoadSplit(root_.string(), "withval", o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->format, "image_folder");
  EXPECT_EQ((*s)->train.count, 20);
  EXPECT_EQ((*s)->val.count, 6);
  EXPECT_EQ((*s)->test.count, 4);
  EXPECT_EQ((*s)->class_names, (std::vector<std::string>{"a", "b"}));
  o.val_examples = 4;
  s = LoadSplit(root_.string(), "withval", o);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)->val.count, 4);
  o.val_examples = 7;
  EXPECT_EQ(LoadSplit(root_.string(), "withval", o).status().code(), absl::StatusCode::kInvalidArgument);

  Fill(root_ / "flat", {"a", "b"}, 10);  // no train/: 20% carved for validation, no test split
  s = LoadSplit(root_.string(), "flat", SplitOptions{});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->val.count, 4);
  EXPECT_EQ((*s)->train.count, 16);
  EXPECT_EQ((*s)->test.count, 0);

  const fs::path data_root = root_ / "root";
  fs::create_directories(data_root);
  fs::create_symlink(root_ / "flat", data_root / "link");
  auto out = LoadSplit(data_root.string(), "link", SplitOptions{});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("leaves --data_root"), std::string::npos) << out.status();
  EXPECT_EQ(LoadSplit(data_root.string(), "../flat", SplitOptions{}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadSplit(data_root.string(), (root_ / "flat").string(), SplitOptions{}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ImageFolderTest, IdxAndCifarSetsGetClassNames) {
  fs::create_directories(root_ / "fashion-mnist");
  auto names = ClassNamesFor((root_ / "fashion-mnist").string(), "idx", 10);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ((*names)[6], "shirt");
  names = ClassNamesFor((root_ / "cifar").string(), "cifar10", 10);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ((*names)[3], "cat");
  names = ClassNamesFor((root_ / "digits").string(), "idx", 3);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ((*names)[2], "2");
  fs::create_directories(root_ / "custom");
  Spit(root_ / "custom" / "classes.txt", "cat\r\ndog\n\n");
  names = ClassNamesFor((root_ / "custom").string(), "idx", 2);
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_EQ(*names, (std::vector<std::string>{"cat", "dog"}));
  names = ClassNamesFor((root_ / "custom").string(), "idx", 3);
  EXPECT_EQ(names.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(names.status().message().find("has 2 class names but the data set has 3"), std::string::npos);
}

}  // namespace
}  // namespace hpo::worker
