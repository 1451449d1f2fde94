// proto <-> core types: the only file that knows both.
#pragma once

#include "hpo/v1/study.pb.h"
#include "server/core/coordinator.h"
#include "server/model/study_summary.h"
#include "server/model/types.h"

namespace hpo::server {

void ToProto(const ParamValue& v, hpo::v1::ParamValue* out);
void ToProto(const Trial& t, hpo::v1::Trial* out);
void ToProto(const Study& s, hpo::v1::Study* out);  // with counts and best, without trials
void ToProto(const StudySummary& s, hpo::v1::Study* out);
void ToProto(const TaskSpec& t, hpo::v1::Task* out);
void ToProto(const DataReport& d, hpo::v1::DataReport* out);
void ToProto(const ClassReport& c, hpo::v1::ClassReport* out);
Measurement FromProto(const hpo::v1::Measurement& m);
DataReport FromProto(const hpo::v1::DataReport& d);
ClassReport FromProto(const hpo::v1::ClassReport& c);

}  // namespace hpo::server
