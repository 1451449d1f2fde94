// libFuzzer target: EnqueueTrial's parameter JSON, as Coordinator::EnqueueTrial receives it, on a
// study made from one of a few fixed specs (the first input byte picks it; the rest is the JSON).
// Each input gets a fresh coordinator over an in-memory SQLite storage. Beyond "no crash, no
// exception, no hang", it checks what an accepted trial must satisfy: the next AskTrial hands it
// out, with every value it was given unchanged and every other active parameter filled inside the
// space; a refusal must say why.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <variant>

#include <nlohmann/json.hpp>

#include "server/core/coordinator.h"
#include "server/model/search_space.h"
#include "server/storage/sqlite_storage.h"
#include "tests/testing/fake_clock.h"

namespace {

using hpo::server::Coordinator;
using hpo::server::ParamValue;

// The specs cover every parameter type, log and stepped ranges, mixed-type choices and a
// conditional parameter; every sampler, so that filling in a partial trial runs each of them.
const char* const kSpecs[] = {
    R"({"name": "f", "task": {"type": "external", "max_steps": 5}, "max_trials": 4,
        "sampler": {"type": "random", "seed": 1},
        "parameters": [
          {"name": "lr", "type": "float", "low": 0.0001, "high": 0.1, "log": true},
          {"name": "optimizer", "type": "categorical", "choices": ["adam", "sgd", "rmsprop"]},
          {"name": "momentum", "type": "float", "low": 0, "high": 0.99,
           "condition": {"parent": "optimizer", "values": ["sgd"]}},
          {"name": "batch", "type": "categorical", "choices": [32, 64, 128]},
          {"name": "blocks", "type": "int", "low": 1, "high": 8},
          {"name": "filters", "type": "int", "low": 8, "high": 64, "step": 8},
          {"name": "drop", "type": "float", "low": 0, "high": 0.5, "step": 0.1},
          {"name": "bn", "type": "categorical", "choices": [true, false]},
          {"name": "mixed", "type": "categorical", "choices": [1, 2.5, "x", false]}]})",
    R"({"name": "g", "task": {"type": "external", "max_steps": 5}, "max_trials": 4,
        "sampler": {"type": "grid", "seed": 2},
        "parameters": [
          {"name": "a", "type": "int", "low": -3, "high": 3},
          {"name": "b", "type": "categorical", "choices": ["p", "q"]},
          {"name": "c", "type": "float", "low": 0, "high": 1, "step": 0.25,
           "condition": {"parent": "b", "values": ["q"]}}]})",
    R"({"name": "t", "task": {"type": "external", "max_steps": 5}, "max_trials": 4,
        "sampler": {"type": "tpe", "seed": 3},
        "parameters": [
          {"name": "x", "type": "float", "low": -1e300, "high": 1e300},
          {"name": "n", "type": "int", "low": 1, "high": 1000000, "log": true}]})",
    R"({"name": "p", "task": {"type": "external", "max_steps": 5}, "max_trials": 4,
        "sampler": {"type": "gp", "seed": 4},
        "parameters": [
          {"name": "x", "type": "float", "low": 0, "high": 1},
          {"name": "k", "type": "categorical", "choices": ["u", "v", "w"]}]})",
};
constexpr size_t kNumSpecs = sizeof(kSpecs) / sizeof(kSpecs[0]);

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "enqueue_fuzz: %s\n", what.c_str());
  std::abort();
}

bool SameValue(const ParamValue& a, const ParamValue& b) {
  if (a.index() == b.index()) return a == b;
  // A float parameter given an integer in JSON holds it as a double.
  auto as_double = [](const ParamValue& v, double* out) {
    if (const double* d = std::get_if<double>(&v)) return *out = *d, true;
    if (const int64_t* i = std::get_if<int64_t>(&v)) return *out = static_cast<double>(*i), true;
    return false;
  };
  double x = 0, y = 0;
  return as_double(a, &x) && as_double(b, &y) && x == y;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const char* spec = kSpecs[data[0] % kNumSpecs];
  const std::string params_json(reinterpret_cast<const char*>(data + 1), size - 1);

  hpo::testing::FakeClock clock;
  auto storage = hpo::server::OpenSqliteStorage(":memory:");
  if (!storage.ok()) Fail("in-memory storage: " + storage.status().ToString());
  auto c = Coordinator::Open(std::move(*storage), &clock, hpo::server::CoordinatorOptions{});
  if (!c.ok()) Fail("open: " + c.status().ToString());
  auto study = (*c)->CreateStudy(spec);
  if (!study.ok()) Fail("fixed spec refused: " + study.status().ToString());

  auto trial = (*c)->EnqueueTrial(study->id, params_json);
  if (!trial.ok()) {
    if (trial.status().message().empty()) Fail("a refusal without a message");
    return 0;
  }
  // Accepted: the JSON is an object of this study's parameters (nlohmann parses it again here).
  const nlohmann::json j = nlohmann::json::parse(params_json, nullptr, false);
  if (!j.is_object()) Fail("accepted parameters that are not a JSON object: " + params_json);

  auto a = (*c)->AskTrial("fuzz-worker", {"external"}, study->id);
  if (!a.ok()) Fail("AskTrial after an accepted EnqueueTrial: " + a.status().ToString());
  if (!a->has_value()) Fail("the enqueued trial was not handed out");
  const hpo::server::Trial& t = (*a)->trial;
  if (t.id != trial->id) Fail("another trial was handed out before the enqueued one");
  for (const auto& [name, given] : trial->params) {
    auto it = t.params.find(name);
    if (it == t.params.end() || !SameValue(it->second, given)) Fail("enqueued value of " + name + " changed");
  }
  for (const hpo::server::ParamSpec& p : study->spec.params) {
    auto it = t.params.find(p.name);
    const bool active = hpo::server::IsActive(p, t.params);
    if (active && it == t.params.end()) Fail("active parameter " + p.name + " missing from the handed-out trial");
    if (!active && it != t.params.end()) Fail("inactive parameter " + p.name + " in the handed-out trial");
    if (it != t.params.end() && !hpo::server::Contains(p, it->second)) {
      Fail("parameter " + p.name + " = " + hpo::server::ToString(it->second) + " is outside its space");
    }
  }
  return 0;
}
