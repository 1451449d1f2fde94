// Helpers shared by samplers: seeds and the map from the unit interval to a parameter's values.
#pragma once

#include <cstdint>
#include <string>

#include "server/model/types.h"

namespace hpo::server {

// SplitMix64 finalizer: a well-mixed 64-bit hash of x.
uint64_t Mix64(uint64_t x);
// Seed of trial `number` in a study seeded with `study_seed`; the same on every machine.
uint64_t TrialSeed(uint64_t study_seed, int number);
// Seed of one parameter within a trial: stable when other parameters are added or removed.
uint64_t ParamSeed(uint64_t trial_seed, const std::string& name);
// Uniform double in [0, 1) from 53 bits of `bits`.
double UnitFromBits(uint64_t bits);

// Maps u in [0, 1) to a value of `p`: uniform (or log-uniform) over [low, high],
// on the step grid when there is one, integral for ints, one of the choices
// (each with probability 1/k) for categoricals. Always inside the declared range.
ParamValue FromUnit(const ParamSpec& p, double u);

// Whether `v` is a value `p` can take.
bool Contains(const ParamSpec& p, const ParamValue& v);

// Multi-fidelity fitting (BOHB, Falkner et al. 2018): while fewer than `n_min` trials have completed,
// the highest step that at least `n_min` finished trials (completed or pruned) reported; -1 when
// enough trials completed or no step has that many.
int RungToFit(const Study& study, int n_min);
// A trial's best value up to `step`, as a loss (sign * value, lower is better); +inf if it has none.
double BestLossUpTo(const Trial& t, int step, double sign);

}  // namespace hpo::server
