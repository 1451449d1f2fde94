#include "client/report.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "proto/common/param_json.h"

namespace hpo::client {
namespace {

std::string Esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// A plotting area: data ranges mapped onto an SVG of W x H with margins for the axes.
struct Plot {
  double x0, x1, y0, y1;
  double w = 560, h = 300, left = 56, right = 16, top = 16, bottom = 40;
  double X(double x) const { return left + (x - x0) / std::max(1e-12, x1 - x0) * (w - left - right); }
  double Y(double y) const { return h - bottom - (y - y0) / std::max(1e-12, y1 - y0) * (h - top - bottom); }
  std::string Open(const std::string& id, const std::string& xlabel, const std::string& ylabel) const {
    std::string s = absl::StrFormat(
        "<svg class=\"chart\" data-chart=\"%s\" viewBox=\"0 0 %g %g\" width=\"%g\" height=\"%g\">"
        "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"#fafafa\" stroke=\"#ccc\"/>",
        id, w, h, w, h, left, top, w - left - right, h - top - bottom);
    for (int i = 0; i <= 4; ++i) {
      const double yv = y0 + (y1 - y0) * i / 4, xv = x0 + (x1 - x0) * i / 4;
      absl::StrAppend(&s, absl::StrFormat("<text x=\"%g\" y=\"%g\" font-size=\"10\" text-anchor=\"end\">%.3g</text>",
                                          left - 4, Y(yv) + 3, yv));
      absl::StrAppend(&s, absl::StrFormat("<text x=\"%g\" y=\"%g\" font-size=\"10\" text-anchor=\"middle\">%.3g</text>",
                                          X(xv), h - bottom + 14, xv));
    }
    absl::StrAppend(&s, absl::StrFormat("<text x=\"%g\" y=\"%g\" font-size=\"11\" text-anchor=\"middle\">%s</text>",
                                        (left + w - right) / 2, h - 6, Esc(xlabel)));
    absl::StrAppend(&s, absl::StrFormat("<text x=\"12\" y=\"%g\" font-size=\"11\" text-anchor=\"middle\" "
                                        "transform=\"rotate(-90 12 %g)\">%s</text>",
                                        (top + h - bottom) / 2, (top + h - bottom) / 2, Esc(ylabel)));
    return s;
  }
};

std::string Polyline(const Plot& p, const std::vector<std::pair<double, double>>& pts, const std::string& cls,
                     const std::string& style) {
  std::vector<std::string> xy;
  for (const auto& [x, y] : pts) xy.push_back(absl::StrFormat("%.1f,%.1f", p.X(x), p.Y(y)));
  return absl::StrFormat("<polyline class=\"%s\" fill=\"none\" %s points=\"%s\"/>", cls, style, absl::StrJoin(xy, " "));
}

double Metric(const hpo::v1::Measurement& m, const std::string& name) {
  auto it = m.metrics().find(name);
  return it == m.metrics().end() ? NAN : it->second;
}

std::string Color(double t) {  // 0 -> red, 1 -> blue
  t = std::clamp(t, 0.0, 1.0);
  return absl::StrFormat("rgb(%d,%d,%d)", static_cast<int>(220 * (1 - t) + 30 * t), static_cast<int>(60 + 60 * t),
                         static_cast<int>(60 * (1 - t) + 220 * t));
}

std::string History(const hpo::v1::Study& s, const std::vector<hpo::v1::Trial>& trials) {
  Plot p{0, std::max<double>(1, trials.size() - 1), 1e300, -1e300};
  for (const auto& t : trials) {
    if (!t.has_value()) continue;
    p.y0 = std::min(p.y0, t.value());
    p.y1 = std::max(p.y1, t.value());
  }
  if (p.y0 > p.y1) p.y0 = 0, p.y1 = 1;
  std::string svg = p.Open("history", "trial", s.metric());
  std::vector<std::pair<double, double>> best;
  double b = s.direction() == hpo::v1::MINIMIZE ? 1e300 : -1e300;
  for (const auto& t : trials) {
    if (!t.has_value()) continue;
    const bool pruned = t.state() == hpo::v1::TRIAL_PRUNED;
    absl::StrAppend(&svg, absl::StrFormat("<circle class=\"point %s\" cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"><title>"
                                          "trial %d %s %.4f</title></circle>",
                                          pruned ? "pruned" : "completed", p.X(t.number()), p.Y(t.value()),
                                          pruned ? "#e69138" : "#3465a4", t.number(), TrialStateName(t.state()),
                                          t.value()));
    if (t.state() == hpo::v1::TRIAL_COMPLETED) {
      b = s.direction() == hpo::v1::MINIMIZE ? std::min(b, t.value()) : std::max(b, t.value());
      best.emplace_back(t.number(), b);
    }
  }
  if (!best.empty()) absl::StrAppend(&svg, Polyline(p, best, "series best-so-far", "stroke=\"#2e7d32\" stroke-width=\"2\""));
  return svg + "</svg>";
}

std::string Curves(const std::vector<hpo::v1::Trial>& trials, int best_number) {
  int max_step = 1;
  for (const auto& t : trials)
    for (const auto& m : t.measurements()) max_step = std::max(max_step, m.step());
  Plot p{0, static_cast<double>(max_step), 0, 1};
  std::string svg = p.Open("curves", "epoch", "accuracy (validation solid, training dashed)");
  for (const auto& t : trials) {
    std::vector<std::pair<double, double>> val, train;
    for (const auto& m : t.measurements()) {
      const double v = Metric(m, "val_accuracy"), tr = Metric(m, "train_accuracy");
      if (!std::isnan(v)) val.emplace_back(m.step(), v);
      if (!std::isnan(tr)) train.emplace_back(m.step(), tr);
    }
    if (val.empty()) continue;
    const bool best = t.number() == best_number;
    const std::string color = best ? "#3465a4" : t.state() == hpo::v1::TRIAL_PRUNED ? "#e69138" : "#999";
    absl::StrAppend(&svg, Polyline(p, val, absl::StrCat("series val trial-", t.number()),
                                   absl::StrFormat("stroke=\"%s\" stroke-width=\"%d\"", color, best ? 3 : 1)));
    if (!train.empty()) {
      absl::StrAppend(&svg, Polyline(p, train, absl::StrCat("series train trial-", t.number()),
                                     absl::StrFormat("stroke=\"%s\" stroke-dasharray=\"4 3\" stroke-width=\"%d\"", color,
                                                     best ? 2 : 1)));
    }
    if (t.state() == hpo::v1::TRIAL_PRUNED) {  // where the pruner stopped it
      absl::StrAppend(&svg, absl::StrFormat("<text class=\"pruned-mark\" x=\"%.1f\" y=\"%.1f\" font-size=\"12\" "
                                            "fill=\"#e69138\" text-anchor=\"middle\">&#215;</text>",
                                            p.X(val.back().first), p.Y(val.back().second) + 4));
    }
  }
  return svg + "</svg>";
}

std::string Parallel(const hpo::v1::Study& s, const std::vector<hpo::v1::Trial>& trials) {
  std::set<std::string> names;
  for (const auto& t : trials)
    for (const auto& [k, v] : t.params()) names.insert(k);
  const std::vector<std::string> axes(names.begin(), names.end());
  if (axes.empty()) return "";
  Plot p{0, static_cast<double>(axes.size()), 0, 1};
  p.w = std::max(560.0, 90.0 * (axes.size() + 1));
  std::string svg = absl::StrFormat("<svg class=\"chart\" data-chart=\"parallel\" viewBox=\"0 0 %g %g\" width=\"%g\" "
                                    "height=\"%g\">",
                                    p.w, p.h, p.w, p.h);
  // Each axis: numbers scaled to [0,1] (log when all positive and spanning a decade), categories spread.
  std::map<std::string, std::function<double(const hpo::v1::ParamValue&)>> scale;
  for (const auto& name : axes) {
    std::vector<double> nums;
    std::vector<std::string> cats;
    for (const auto& t : trials) {
      auto it = t.params().find(name);
      if (it == t.params().end()) continue;
      const auto& v = it->second;
      if (v.kind_case() == hpo::v1::ParamValue::kFloatValue) nums.push_back(v.float_value());
      else if (v.kind_case() == hpo::v1::ParamValue::kIntValue) nums.push_back(static_cast<double>(v.int_value()));
      else cats.push_back(ParamValueToJson(v).dump());
    }
    if (!cats.empty() || nums.empty()) {
      std::sort(cats.begin(), cats.end());
      cats.erase(std::unique(cats.begin(), cats.end()), cats.end());
      scale[name] = [cats](const hpo::v1::ParamValue& v) {
        const auto k = std::find(cats.begin(), cats.end(), ParamValueToJson(v).dump()) - cats.begin();
        return cats.size() < 2 ? 0.5 : static_cast<double>(k) / (cats.size() - 1);
      };
    } else {
      const double lo = *std::min_element(nums.begin(), nums.end()), hi = *std::max_element(nums.begin(), nums.end());
      const bool log = lo > 0 && hi / lo > 10;
      scale[name] = [lo, hi, log](const hpo::v1::ParamValue& v) {
        double x = v.kind_case() == hpo::v1::ParamValue::kFloatValue ? v.float_value() : static_cast<double>(v.int_value());
        if (hi <= lo) return 0.5;
        return log ? std::log(x / lo) / std::log(hi / lo) : (x - lo) / (hi - lo);
      };
    }
  }
  double vmin = 1e300, vmax = -1e300;
  for (const auto& t : trials) {
    if (!t.has_value()) continue;
    vmin = std::min(vmin, t.value());
    vmax = std::max(vmax, t.value());
  }
  const bool maximize = s.direction() != hpo::v1::MINIMIZE;
  for (const auto& t : trials) {
    if (!t.has_value()) continue;
    std::vector<std::pair<double, double>> pts;
    for (size_t a = 0; a < axes.size(); ++a) {
      auto it = t.params().find(axes[a]);
      if (it != t.params().end()) pts.emplace_back(a + 0.5, scale[axes[a]](it->second));
    }
    double q = vmax > vmin ? (t.value() - vmin) / (vmax - vmin) : 1;
    if (!maximize) q = 1 - q;
    absl::StrAppend(&svg, Polyline(p, pts, absl::StrCat("series trial-", t.number()),
                                   absl::StrFormat("stroke=\"%s\" stroke-opacity=\"0.7\"", Color(q))));
  }
  for (size_t a = 0; a < axes.size(); ++a) {
    absl::StrAppend(&svg, absl::StrFormat("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>"
                                          "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%s</text>",
                                          p.X(a + 0.5), p.Y(0), p.X(a + 0.5), p.Y(1), p.X(a + 0.5), p.h - 12,
                                          Esc(axes[a])));
  }
  return svg + "</svg>";
}

// Horizontal bars on [0, 1]; with `spread` (one per bar), a whisker of +- spread and "mean +- spread".
std::string Bars(const std::string& id, const std::vector<std::pair<std::string, double>>& bars,
                 const std::string& label, const std::vector<double>& spread = {}) {
  Plot p{0, 1, 0, 1};
  p.h = 40 + 22.0 * bars.size();
  p.left = 150;
  const double span = p.w - p.left - 60 - (spread.empty() ? 0 : 40);
  std::string svg = absl::StrFormat("<svg class=\"chart\" data-chart=\"%s\" viewBox=\"0 0 %g %g\" width=\"%g\" "
                                    "height=\"%g\">",
                                    id, p.w, p.h, p.w, p.h);
  for (size_t i = 0; i < bars.size(); ++i) {
    const double y = 10 + 22.0 * i, v = bars[i].second;
    const double sd = i < spread.size() ? spread[i] : -1;
    double text_x = p.left + v * span + 4;
    absl::StrAppend(&svg, absl::StrFormat("<text x=\"%g\" y=\"%g\" font-size=\"11\" text-anchor=\"end\">%s</text>"
                                          "<rect class=\"series bar\" x=\"%g\" y=\"%g\" width=\"%.1f\" height=\"16\" "
                                          "fill=\"#3465a4\"/>",
                                          p.left - 6, y + 12, Esc(bars[i].first), p.left, y, std::max(1.0, v * span)));
    if (sd >= 0) {
      const double a = p.left + std::max(0.0, v - sd) * span, b = p.left + std::min(1.0, v + sd) * span;
      absl::StrAppend(&svg, absl::StrFormat("<path class=\"whisker\" d=\"M%.1f %g H%.1f M%.1f %g V%g M%.1f %g V%g\" "
                                            "stroke=\"#222\" fill=\"none\"/>",
                                            a, y + 8, b, a, y + 4, y + 12, b, y + 4, y + 12));
      text_x = std::max(text_x, b + 4);
    }
    absl::StrAppend(&svg, absl::StrFormat("<text x=\"%.1f\" y=\"%g\" font-size=\"10\">%s</text>", text_x, y + 12,
                                          sd >= 0 ? absl::StrFormat("%.2f \u00b1 %.2f", v, sd)
                                                  : absl::StrFormat("%.3f", v)));
  }
  absl::StrAppend(&svg, absl::StrFormat("<text x=\"%g\" y=\"%g\" font-size=\"11\">%s</text>", p.left, p.h - 8,
                                        Esc(label)));
  return svg + "</svg>";
}

// `s` cut to at most `n` characters (UTF-8 code points), with an ellipsis when cut.
std::string Short(const std::string& s, size_t n) {
  size_t chars = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80 && chars++ == n) return s.substr(0, i) + "\u2026";
  }
  return s;
}

// The validation confusion matrix, rows (true class) and columns (predicted) labelled by class
// name (cut to 12 characters; the full names are in each cell's tooltip).
std::string Confusion(const hpo::v1::Trial& t) {
  const auto& c = t.classes();
  const int k = ConfusionSide(c);
  if (k == 0 || c.val_confusion_size() != k * k) return "";
  double top = 1;
  for (int64_t v : c.val_confusion()) top = std::max(top, static_cast<double>(v));
  size_t longest = 1;
  for (int a = 0; a < k; ++a) longest = std::max(longest, Short(ClassName(t, a), 12).size());
  // Room for the labels: rows on the left, columns rotated above.
  const double cell = std::min(36.0, 360.0 / k), margin = 12 + 6.5 * std::min<size_t>(longest, 13);
  const double size = margin + cell * k;
  std::string svg = absl::StrFormat("<svg class=\"chart\" data-chart=\"confusion\" viewBox=\"0 0 %g %g\" width=\"%g\" "
                                    "height=\"%g\">",
                                    size + 10 + margin / 2, size + 10, size + 10 + margin / 2, size + 10);
  for (int a = 0; a < k; ++a) {
    const std::string label = Esc(Short(ClassName(t, a), 12));
    const double mid = margin + cell * a + cell / 2;
    absl::StrAppend(&svg, absl::StrFormat("<text x=\"%g\" y=\"%g\" font-size=\"10\" text-anchor=\"end\">%s</text>"
                                          "<text x=\"%g\" y=\"%g\" font-size=\"10\" text-anchor=\"start\" "
                                          "transform=\"rotate(-60 %g %g)\">%s</text>",
                                          margin - 4, mid + 3, label, mid + 3, margin - 4, mid + 3, margin - 4, label));
    for (int b = 0; b < k; ++b) {
      const double v = static_cast<double>(c.val_confusion(a * k + b));
      const int shade = static_cast<int>(255 - 200 * std::sqrt(v / top));
      absl::StrAppend(&svg, absl::StrFormat("<rect class=\"series cell\" x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" "
                                            "fill=\"rgb(%d,%d,255)\"><title>true %s, predicted %s: %.0f</title></rect>",
                                            margin + cell * b, margin + cell * a, cell - 1, cell - 1, shade, shade,
                                            Esc(ClassName(t, a)), Esc(ClassName(t, b)), v));
    }
  }
  return svg + "</svg>";
}

}  // namespace

std::string RenderReport(const hpo::v1::Study& s, const std::vector<hpo::v1::Trial>& trials,
                         const std::vector<hpo::v1::Finding>& findings) {
  const hpo::v1::Trial* best = nullptr;
  for (const auto& t : trials) {
    if (t.number() == s.best_trial() && s.has_best()) best = &t;
  }
  std::string html = absl::StrFormat(
      "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>hpo study %d: %s</title><style>"
      "body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}"
      "section{display:inline-block;vertical-align:top;margin:0 24px 24px 0}"
      "h2{font-size:16px;margin:8px 0}li{margin-bottom:8px}.cause{font-weight:bold}</style></head><body>"
      "<h1>Study %d \"%s\": %s</h1><p>%d trials: %d completed, %d pruned, %d failed, %d running; objective %s %s%s</p>",
      s.id(), Esc(s.name()), s.id(), Esc(s.name()), StudyStateName(s.state()), static_cast<int>(trials.size()),
      s.counts().completed(), s.counts().pruned(), s.counts().failed(), s.counts().running(),
      s.direction() == hpo::v1::MINIMIZE ? "minimize" : "maximize", Esc(s.metric()),
      s.has_best() ? absl::StrFormat("; best %.4f (trial %d)", s.best_value(), s.best_trial()) : "");
  absl::StrAppend(&html, "<section><h2>Diagnosis</h2><ol>");
  for (const auto& f : findings) {
    absl::StrAppend(&html, "<li><span class=\"cause\">", Esc(f.cause()), "</span>: ", Esc(f.evidence()),
                    "<br><i>try:</i> ", Esc(f.suggestion()), "</li>");
  }
  absl::StrAppend(&html, "</ol></section><br>");
  absl::StrAppend(&html, "<section><h2>Optimization history</h2>", History(s, trials), "</section>");
  absl::StrAppend(&html, "<section><h2>Learning curves (best trial in blue, pruned in orange, &#215; where stopped)</h2>",
                  Curves(trials, best ? best->number() : -1), "</section>");
  absl::StrAppend(&html, "<section><h2>Parallel coordinates (blue: better)</h2>", Parallel(s, trials), "</section>");
  for (const auto& f : findings) {
    // The diagnosis's fANOVA importance: "importance/NAME" (mean over the forest's trees) and
    // "importance_std/NAME" (their spread), "trees" and "completed_trials".
    if (f.cause() != "parameter importance") continue;
    std::vector<std::pair<std::string, double>> bars;
    for (const auto& [k, v] : f.figures()) {
      if (absl::StartsWith(k, "importance/")) bars.emplace_back(k.substr(11), v);
    }
    if (bars.empty()) continue;
    std::sort(bars.begin(), bars.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    std::vector<double> spread;
    for (const auto& [name, v] : bars) {
      auto it = f.figures().find("importance_std/" + name);
      spread.push_back(it == f.figures().end() ? 0.0 : it->second);
    }
    const auto figure = [&](const char* k) {
      auto it = f.figures().find(k);
      return it == f.figures().end() ? 0 : static_cast<int>(it->second);
    };
    absl::StrAppend(&html, "<section><h2>Parameter importance</h2>",
                    Bars("importance", bars,
                         absl::StrFormat("fANOVA: share of variance, mean \u00b1 sd over %d trees, "
                                         "%d trials",
                                         figure("trees"), figure("completed_trials")),
                         spread),
                    "</section>");
  }
  if (best != nullptr) {
    std::vector<std::pair<std::string, double>> recall;
    for (int c = 0; c < best->classes().val_recall_size(); ++c) {
      recall.emplace_back(best->data().class_names_size() > 0 ? Short(ClassName(*best, c), 22)
                                                             : absl::StrCat("class ", c),
                          best->classes().val_recall(c));
    }
    if (!recall.empty()) {
      absl::StrAppend(&html, absl::StrFormat("<section><h2>Validation recall per class, trial %d</h2>", best->number()),
                      Bars("recall", recall, "recall at the best epoch"), "</section>");
      absl::StrAppend(&html, absl::StrFormat("<section><h2>Confusion matrix, trial %d (rows: true class)</h2>",
                                             best->number()),
                      Confusion(*best), "</section>");
    }
  }
  absl::StrAppend(&html, "</body></html>\n");
  return html;
}

}  // namespace hpo::client
