#pragma once

#include <memory>

#include "server/sampler/sampler.h"

namespace hpo::server {

// Independent uniform (or log-uniform) draws per parameter, from the trial seed
// and the parameter's name: the same seed gives the same parameters for the same trial number.
std::unique_ptr<Sampler> NewRandomSampler();

}  // namespace hpo::server
