// Bounds on JSON text that clients send (study specs, enqueued parameters) and on how much of a
// client's text is quoted back in messages and logs. nlohmann's dump, copy and comparison
// recurse once per nesting level, so JSON deeper than kMaxJsonDepth must never reach it: a
// few hundred kilobytes of '[' would overflow the stack.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include "absl/strings/string_view.h"

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace hpo {

// Arrays and objects nested deeper than this are refused (a study spec needs 5 levels).
inline constexpr int kMaxJsonDepth = 64;
// How much of a client's text a message or log line quotes.
inline constexpr size_t kQuotedPrefixBytes = 64;

// At most `max_bytes` of `text`, escaped so that the result is one line of printable ASCII (and so
// valid UTF-8 whatever `text` holds): bytes outside 0x20..0x7e become \xNN. A cut is marked with "... (N bytes)".
inline std::string ClientTextPrefix(absl::string_view text, size_t max_bytes = kQuotedPrefixBytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  const size_t n = std::min(text.size(), max_bytes);
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (n < text.size()) absl::StrAppend(&out, "... (", text.size(), " bytes)");
  return out;
}

// kInvalidArgument when arrays and objects in `text` nest deeper than `max_depth`. One linear
// pass that counts brackets outside strings (skipping escaped characters inside them); it
// does not check anything else, the parser does.
inline absl::Status CheckJsonDepth(absl::string_view text, absl::string_view what, int max_depth = kMaxJsonDepth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) {
        return absl::InvalidArgumentError(absl::StrCat(what, " is nested deeper than ", max_depth,
                                                       " levels of arrays and objects (at byte ", i, ")"));
      }
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return absl::OkStatus();
}

// Parses JSON from a client: at most `max_bytes`, nested at most kMaxJsonDepth deep, and every
// exception nlohmann can throw (syntax, invalid UTF-8, a number beyond double range) turned
// into kInvalidArgument naming `what` ("the spec").
inline absl::StatusOr<nlohmann::json> ParseClientJson(absl::string_view text, size_t max_bytes,
                                                      absl::string_view what) {
  if (absl::Status s = CheckJsonDepth(text, what); !s.ok()) return s;
  if (text.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is ", text.size(), " bytes; at most ", max_bytes, " bytes are accepted"));
  }
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    // "[json.exception.parse_error.101] parse error at line 3, column 12: ..." without the tag;
    // it quotes the bytes last read, which may be anything.
    absl::string_view why = e.what();
    if (auto pos = why.find("] "); pos != absl::string_view::npos) why.remove_prefix(pos + 2);
    return absl::InvalidArgumentError(absl::StrCat(what, " is not valid JSON: ", ClientTextPrefix(why, 300)));
  }
}

}  // namespace hpo
