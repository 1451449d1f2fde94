#include "server/http/assets.h"

#include <cstring>

// The files are included byte for byte by the assembler (.incbin): no generated source, no
// multi-megabyte array for the compiler to parse. server/CMakeLists.txt passes their paths and
// makes this file depend on them. Each gets a terminating NUL that is not part of its size.
#define HPO_EMBED(sym, path)                                 \
  asm(".section .rodata\n"                                   \
      ".balign 16\n"                                         \
      ".globl " #sym "_begin\n.hidden " #sym "_begin\n" #sym \
      "_begin:\n"                                            \
      ".incbin \"" path                                      \
      "\"\n"                                                 \
      ".globl " #sym "_end\n.hidden " #sym "_end\n" #sym     \
      "_end:\n"                                              \
      ".byte 0\n"                                            \
      ".previous\n");                                        \
  extern "C" const char sym##_begin[];                       \
  extern "C" const char sym##_end[];

HPO_EMBED(hpo_asset_index_html, HPO_ASSET_INDEX_HTML)
HPO_EMBED(hpo_asset_app_js, HPO_ASSET_APP_JS)
HPO_EMBED(hpo_asset_style_css, HPO_ASSET_STYLE_CSS)
HPO_EMBED(hpo_asset_echarts_js, HPO_ASSET_ECHARTS_JS)

namespace hpo::server {
namespace {

std::string_view View(const char* begin, const char* end) {
  return std::string_view(begin, static_cast<size_t>(end - begin));
}

struct Named {
  const char* name;
  Asset asset;
};

const Named* Table() {
  static const Named table[] = {
      {"app.js", {View(hpo_asset_app_js_begin, hpo_asset_app_js_end), "text/javascript; charset=utf-8"}},
      {"style.css", {View(hpo_asset_style_css_begin, hpo_asset_style_css_end), "text/css; charset=utf-8"}},
      {"echarts.min.js",
       {View(hpo_asset_echarts_js_begin, hpo_asset_echarts_js_end), "text/javascript; charset=utf-8"}},
      {nullptr, {}},
  };
  return table;
}

}  // namespace

const Asset* FindAsset(std::string_view name) {
  for (const Named* n = Table(); n->name != nullptr; ++n) {
    if (name == n->name) return &n->asset;
  }
  return nullptr;
}

const Asset& IndexPage() {
  static const Asset index{View(hpo_asset_index_html_begin, hpo_asset_index_html_end),
                           "text/html; charset=utf-8"};
  return index;
}

}  // namespace hpo::server
