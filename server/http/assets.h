// The dashboard's files (web/src/ and ECharts from web/package-lock.json), embedded in the binary
// at build time (assets.cc), so hpo-server serves them with nothing fetched at run time.
#pragma once

#include <string_view>

namespace hpo::server {

struct Asset {
  std::string_view body;
  const char* content_type;
};

// `name` as in the URL after /assets/ ("app.js"); null when there is no such file.
const Asset* FindAsset(std::string_view name);
// The single page that every dashboard address serves (the script routes by location).
const Asset& IndexPage();

}  // namespace hpo::server
