// libFuzzer target: study specs as CreateStudy receives them (parse, validate, build the sampler and
// pruner) and EnqueueTrial's parameter JSON, on arbitrary text.
#include <cstddef>
#include <cstdint>
#include <string>

#include "proto/common/json_limits.h"
#include "server/model/study_spec.h"
#include "server/pruner/pruner_registry.h"
#include "server/sampler/sampler_registry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto spec = hpo::server::ParseStudySpec(text);
  if (spec.ok()) {
    (void)hpo::server::MakeSampler(*spec);
    (void)hpo::server::MakePruner(*spec, 0);
  }
  (void)hpo::ParseClientJson(text, 64 << 10, "params_json");
  return 0;
}
