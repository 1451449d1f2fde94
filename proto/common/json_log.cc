#include "proto/common/json_log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include <cctype>
#include <memory>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace hpo {
namespace {

// The number right after `word ` at `pos` (-1 if none).
long long NumberAfter(std::string_view s, size_t pos) {
  if (pos >= s.size() || !std::isdigit(static_cast<unsigned char>(s[pos]))) return -1;
  long long v = 0;
  for (; pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos])) && v < (1LL << 60); ++pos) {
    v = v * 10 + (s[pos] - '0');
  }
  return v;
}

// The first "word N" in `s` where `word` starts a word; -1 if none.
long long FirstNumbered(std::string_view s, std::string_view word) {
  for (size_t at = s.find(word); at != std::string_view::npos; at = s.find(word, at + 1)) {
    const bool starts = at == 0 || !std::isalnum(static_cast<unsigned char>(s[at - 1]));
    const size_t after = at + word.size();
    if (starts && after < s.size() && s[after] == ' ') {
      const long long v = NumberAfter(s, after + 1);
      if (v >= 0) return v;
    }
  }
  return -1;
}

std::string Escaped(std::string_view s) {
  // dump() escapes quotes and control characters; invalid UTF-8 (a client's text) becomes U+FFFD.
  return nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// spdlog flag %* : the JSON fields after "process", built from the message.
class JsonFields final : public spdlog::custom_flag_formatter {
 public:
  explicit JsonFields(std::string worker) : worker_(std::move(worker)) {}
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const std::string_view text(msg.payload.data(), msg.payload.size());
    const std::string line = Fields(text);
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonFields>(worker_); }

  std::string Fields(std::string_view text) const {
    const LogFields f = FieldsOfLogLine(text);
    std::string out = absl::StrCat("\"msg\":", Escaped(text));
    if (f.study >= 0) absl::StrAppend(&out, ",\"study\":", f.study);
    if (f.trial >= 0) absl::StrAppend(&out, ",\"trial\":", f.trial);
    const std::string& worker = worker_.empty() ? f.worker : worker_;
    if (!worker.empty()) absl::StrAppend(&out, ",\"worker\":", Escaped(worker));
    return out;
  }

 private:
  std::string worker_;
};

}  // namespace

LogFields FieldsOfLogLine(std::string_view m) {
  LogFields f;
  // "trial 3 of study 2" is how both binaries name a trial; "study 2" alone names a study.
  for (size_t at = m.find("trial "); at != std::string_view::npos; at = m.find("trial ", at + 1)) {
    if (at > 0 && std::isalnum(static_cast<unsigned char>(m[at - 1]))) continue;
    const long long t = NumberAfter(m, at + 6);
    if (t < 0) continue;
    size_t p = at + 6;
    while (p < m.size() && std::isdigit(static_cast<unsigned char>(m[p]))) ++p;
    if (m.substr(p, 10) == " of study ") {
      f.trial = t;
      f.study = NumberAfter(m, p + 10);
      break;
    }
  }
  if (f.study < 0) f.study = FirstNumbered(m, "study");
  for (size_t at = m.find("worker "); at != std::string_view::npos; at = m.find("worker ", at + 1)) {
    if (at > 0 && std::isalnum(static_cast<unsigned char>(m[at - 1]))) continue;
    size_t p = at + 7, q = p;
    while (q < m.size() && (std::isalnum(static_cast<unsigned char>(m[q])) || m[q] == '-' || m[q] == '_' ||
                            m[q] == '.' || m[q] == ':')) {
      ++q;
    }
    while (q > p && (m[q - 1] == '.' || m[q - 1] == ':')) --q;  // sentence punctuation
    if (q > p && q - p <= 256) {
      f.worker = std::string(m.substr(p, q - p));
      break;
    }
  }
  return f;
}

std::string JsonLogLine(std::string_view time, std::string_view level, std::string_view process,
                        std::string_view worker, std::string_view message) {
  return absl::StrCat("{\"time\":", Escaped(time), ",\"level\":", Escaped(level), ",\"process\":", Escaped(process),
                      ",", JsonFields(std::string(worker)).Fields(message), "}");
}

absl::Status SetLogFormat(const std::string& format, const std::string& text_pattern, const std::string& process,
                          const std::string& worker) {
  if (format == "text") {
    spdlog::set_pattern(text_pattern);
    return absl::OkStatus();
  }
  if (format != "json") {
    return absl::InvalidArgumentError(absl::StrCat("--log_format must be text or json, not \"", format, "\""));
  }
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<JsonFields>('*', worker);
  formatter->set_pattern(absl::StrCat("{\"time\":\"%Y-%m-%dT%H:%M:%S.%e%z\",\"level\":\"%l\",\"process\":",
                                      Escaped(process), ",%*}"));
  spdlog::set_formatter(std::move(formatter));
  return absl::OkStatus();
}

}  // namespace hpo
