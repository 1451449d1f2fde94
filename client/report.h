// hpoctl report: one self-contained HTML page (inline SVG, no scripts, no network) with the study's
// optimization history, learning curves, parallel coordinates, parameter importance, the best trial's
// per-class recall and confusion matrix, and the diagnosis.
#pragma once

#include <string>
#include <vector>

#include "hpo/v1/coordinator.pb.h"

namespace hpo::client {

std::string RenderReport(const hpo::v1::Study& study, const std::vector<hpo::v1::Trial>& trials,
                         const std::vector<hpo::v1::Finding>& findings);

}  // namespace hpo::client
