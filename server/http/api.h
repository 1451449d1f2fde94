// The dashboard's read-only JSON API, as plain functions of (coordinator, path, query): no sockets,
// so they are tested directly. http_server.cc routes GET /api/... here.
//
//   /api/studies                         every study: state, progress, counts, best
//   /api/studies/ID                      one study: the above plus its spec and parameters
//   /api/studies/ID/trials               its trials with their measurements
//        ?state=running,pruned           only those states (waiting, running, completed, pruned, failed)
//        ?measurements=false             without the measurements
//   /api/studies/ID/trials/N             one trial (by number), with its measurements
//   /api/studies/ID/diagnosis[?trial=N]  the diagnosis (of the best trial, or of trial N)
//
// Answers: 200 with JSON; 404 with {"error": ...} for an unknown path, study or trial; 400 with
// {"error": ...} for a query parameter that is unknown or out of range. Never writes anything.
#pragma once

#include <map>
#include <string>

#include "server/core/coordinator.h"

namespace hpo::server {

struct ApiReply {
  int status = 200;
  std::string body;  // JSON
};

// `query`: the decoded query parameters (a name given twice is refused).
ApiReply HandleApi(const Coordinator& coordinator, const std::string& path,
                   const std::multimap<std::string, std::string>& query);

// {"error": message}, for the HTTP layer's own 404s.
std::string ApiError(const std::string& message);

}  // namespace hpo::server
