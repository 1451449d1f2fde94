// libFuzzer target: every RPC's request handling, through the real CoordinatorService handlers, in
// process (a gRPC server with no port, called over its in-process channel; no network).
//
// An input is a sequence of calls, each [selector: 1 byte][length: 2 bytes, little-endian][length
// bytes]. The selector (mod 16) picks the RPC (kCall below); the bytes are its serialized request
// (one ProgressReport for a stream write), skipped when they do not parse. Each input gets a fresh
// coordinator over in-memory SQLite that already holds study 1 (kFixedSpec, an external task) so
// that ids in the requests reach real studies and trials.
//
// Checked on every answer: no crash, leak or sanitizer report; no hang (each call has a deadline,
// and DEADLINE_EXCEEDED aborts); no exception escaping the coordinator (INTERNAL "failed inside the
// coordinator", UNKNOWN, UNIMPLEMENTED abort); every refusal has a message; the server still
// answers GetStudy(1) and ListStudies at the end.
//
// HPO_RPC_FUZZ_WRITE_SEEDS=DIR rpc_fuzz writes the seed corpus (tests/fuzz/corpus/rpc) and exits.
#include <google/protobuf/stubs/logging.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "hpo/v1/coordinator.grpc.pb.h"
#include "server/rpc/coordinator_service.h"
#include "server/storage/sqlite_storage.h"
#include "tests/testing/fake_clock.h"

namespace {

namespace v1 = hpo::v1;
using hpo::server::CoordinatorService;

enum Call : uint8_t {
  kCreateStudy = 0,
  kGetStudy,
  kListStudies,
  kStopStudy,
  kListTrials,
  kGetBestTrial,
  kDiagnoseStudy,
  kEnqueueTrial,
  kAskTrial,
  kReport,       // one ProgressReport on the open stream (opened when there is none)
  kCloseStream,  // WritesDone and Finish on the open stream
  kHeartbeat,
  kCompleteTrial,
  kFailTrial,
  kAdvanceClock,  // the first 2 bytes: seconds; then the coordinator reaps expired leases
  kReport2,       // the same as kReport (streams are most of a worker's traffic)
};

constexpr char kFixedSpec[] = R"({"name": "fuzz", "task": {"type": "external", "max_steps": 6},
  "objective": {"metric": "value", "direction": "maximize"},
  "parameters": [{"name": "x", "type": "float", "low": 0, "high": 1},
                 {"name": "opt", "type": "categorical", "choices": ["a", "b"]},
                 {"name": "m", "type": "int", "low": 1, "high": 9,
                  "condition": {"parent": "opt", "values": ["b"]}}],
  "pruner": {"type": "median", "startup_trials": 1}, "max_trials": 8, "max_retries": 1})";

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "rpc_fuzz: %s\n", what.c_str());
  std::abort();
}

// One gRPC server for the whole run; each input swaps in a fresh CoordinatorService.
class ForwardingService final : public v1::Coordinator::CallbackService {
 public:
  CoordinatorService* target = nullptr;

  using Ctx = grpc::CallbackServerContext;
  grpc::ServerUnaryReactor* CreateStudy(Ctx* c, const v1::CreateStudyRequest* q, v1::CreateStudyResponse* r) override {
    return target->CreateStudy(c, q, r);
  }
  grpc::ServerUnaryReactor* GetStudy(Ctx* c, const v1::GetStudyRequest* q, v1::GetStudyResponse* r) override {
    return target->GetStudy(c, q, r);
  }
  grpc::ServerUnaryReactor* ListStudies(Ctx* c, const v1::ListStudiesRequest* q, v1::ListStudiesResponse* r) override {
    return target->ListStudies(c, q, r);
  }
  grpc::ServerUnaryReactor* StopStudy(Ctx* c, const v1::StopStudyRequest* q, v1::StopStudyResponse* r) override {
    return target->StopStudy(c, q, r);
  }
  grpc::ServerUnaryReactor* ListTrials(Ctx* c, const v1::ListTrialsRequest* q, v1::ListTrialsResponse* r) override {
    return target->ListTrials(c, q, r);
  }
  grpc::ServerUnaryReactor* GetBestTrial(Ctx* c, const v1::GetBestTrialRequest* q,
                                         v1::GetBestTrialResponse* r) override {
    return target->GetBestTrial(c, q, r);
  }
  grpc::ServerUnaryReactor* DiagnoseStudy(Ctx* c, const v1::DiagnoseStudyRequest* q,
                                          v1::DiagnoseStudyResponse* r) override {
    return target->DiagnoseStudy(c, q, r);
  }
  grpc::ServerUnaryReactor* EnqueueTrial(Ctx* c, const v1::EnqueueTrialRequest* q,
                                         v1::EnqueueTrialResponse* r) override {
    return target->EnqueueTrial(c, q, r);
  }
  grpc::ServerUnaryReactor* AskTrial(Ctx* c, const v1::AskTrialRequest* q, v1::AskTrialResponse* r) override {
    return target->AskTrial(c, q, r);
  }
  grpc::ServerBidiReactor<v1::ProgressReport, v1::ProgressDecision>* ReportProgress(Ctx* c) override {
    return target->ReportProgress(c);
  }
  grpc::ServerUnaryReactor* Heartbeat(Ctx* c, const v1::HeartbeatRequest* q, v1::HeartbeatResponse* r) override {
    return target->Heartbeat(c, q, r);
  }
  grpc::ServerUnaryReactor* CompleteTrial(Ctx* c, const v1::CompleteTrialRequest* q,
                                          v1::CompleteTrialResponse* r) override {
    return target->CompleteTrial(c, q, r);
  }
  grpc::ServerUnaryReactor* FailTrial(Ctx* c, const v1::FailTrialRequest* q, v1::FailTrialResponse* r) override {
    return target->FailTrial(c, q, r);
  }
};

struct Harness {
  ForwardingService forwarder;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::Coordinator::Stub> stub;
};
Harness* harness = nullptr;
// HPO_RPC_FUZZ_TRACE=1: how long each call took, on stderr (to find slow paths).
bool trace = false;

void SetDeadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
}

void Check(const char* rpc, const grpc::Status& s) {
  if (s.ok()) return;
  const std::string where = std::string(rpc) + ": " + std::to_string(s.error_code()) + " " + s.error_message();
  switch (s.error_code()) {
    case grpc::StatusCode::DEADLINE_EXCEEDED: Fail("hang? " + where);
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::UNIMPLEMENTED: Fail("an exception or unhandled case escaped: " + where);
    case grpc::StatusCode::INTERNAL:
      if (s.error_message().find("failed inside the coordinator") != std::string::npos) {
        Fail("an exception escaped the coordinator: " + where);
      }
      break;
    default: break;
  }
  if (s.error_message().empty()) Fail("a refusal without a message: " + where);
}

template <typename Req, typename Resp, typename Method>
void Unary(const char* rpc, Method method, const uint8_t* p, size_t n) {
  Req req;
  if (!req.ParseFromArray(p, static_cast<int>(n))) return;
  Resp resp;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  Check(rpc, (harness->stub.get()->*method)(&ctx, req, &resp));
}

// The open measurement stream of an input, if any.
struct Stream {
  std::unique_ptr<grpc::ClientContext> ctx;
  std::unique_ptr<grpc::ClientReaderWriter<v1::ProgressReport, v1::ProgressDecision>> rw;

  void Close() {
    if (!rw) return;
    rw->WritesDone();
    v1::ProgressDecision ignored;
    while (rw->Read(&ignored)) {
    }
    Check("ReportProgress", rw->Finish());
    rw.reset();
    ctx.reset();
  }
  void Write(const uint8_t* p, size_t n) {
    v1::ProgressReport report;
    if (!report.ParseFromArray(p, static_cast<int>(n))) return;
    if (!rw) {
      ctx = std::make_unique<grpc::ClientContext>();
      SetDeadline(ctx.get());
      rw = harness->stub->ReportProgress(ctx.get());
    }
    v1::ProgressDecision d;
    // A refused report ends the stream: Read fails and Close reads the status.
    if (!rw->Write(report) || !rw->Read(&d)) {
      Close();
      return;
    }
    if (d.step() != report.measurement().step()) Fail("a decision for another step");
    if (d.action() != v1::ProgressDecision::CONTINUE) Close();  // the server ends the stream
  }
};

void WriteSeeds(const char* dir);

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("HPO_RPC_FUZZ_WRITE_SEEDS")) {
    WriteSeeds(dir);
    std::exit(0);
  }
  trace = std::getenv("HPO_RPC_FUZZ_TRACE") != nullptr;
  spdlog::set_level(spdlog::level::off);
  // Requests with invalid UTF-8 in a string field are skipped; protobuf need not say so each time.
  google::protobuf::SetLogHandler([](google::protobuf::LogLevel, const char*, int, const std::string&) {});
  harness = new Harness;
  grpc::ServerBuilder builder;
  builder.RegisterService(&harness->forwarder);
  hpo::server::ConfigureServerBuilder(&builder);
  harness->server = builder.BuildAndStart();
  if (!harness->server) Fail("the in-process server did not start");
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  harness->stub = v1::Coordinator::NewStub(harness->server->InProcessChannel(args));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  hpo::testing::FakeClock clock;
  auto storage = hpo::server::OpenSqliteStorage(":memory:");
  if (!storage.ok()) Fail("in-memory storage: " + storage.status().ToString());
  auto coordinator = hpo::server::Coordinator::Open(std::move(*storage), &clock, hpo::server::CoordinatorOptions{});
  if (!coordinator.ok()) Fail("open: " + coordinator.status().ToString());
  if (!(*coordinator)->CreateStudy(kFixedSpec).ok()) Fail("the fixed spec was refused");
  auto service = std::make_unique<CoordinatorService>(coordinator->get());
  harness->forwarder.target = service.get();
  using Stub = v1::Coordinator::Stub;

  Stream stream;
  size_t i = 0;
  while (i + 3 <= size) {
    const uint8_t selector = data[i] % 16;
    size_t n = data[i + 1] | (static_cast<size_t>(data[i + 2]) << 8);
    i += 3;
    if (n > size - i) n = size - i;
    const uint8_t* p = data + i;
    i += n;
    const auto call_start = std::chrono::steady_clock::now();
    struct Trace {
      uint8_t selector;
      std::chrono::steady_clock::time_point start;
      ~Trace() {
        if (trace) {
          std::fprintf(stderr, "rpc_fuzz: call %d took %.3f ms\n", selector,
                       std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
        }
      }
    } tracer{selector, call_start};
    switch (static_cast<Call>(selector)) {
      case kCreateStudy:
        Unary<v1::CreateStudyRequest, v1::CreateStudyResponse>("CreateStudy", &Stub::CreateStudy, p, n);
        break;
      case kGetStudy: Unary<v1::GetStudyRequest, v1::GetStudyResponse>("GetStudy", &Stub::GetStudy, p, n); break;
      case kListStudies:
        Unary<v1::ListStudiesRequest, v1::ListStudiesResponse>("ListStudies", &Stub::ListStudies, p, n);
        break;
      case kStopStudy: Unary<v1::StopStudyRequest, v1::StopStudyResponse>("StopStudy", &Stub::StopStudy, p, n); break;
      case kListTrials:
        Unary<v1::ListTrialsRequest, v1::ListTrialsResponse>("ListTrials", &Stub::ListTrials, p, n);
        break;
      case kGetBestTrial:
        Unary<v1::GetBestTrialRequest, v1::GetBestTrialResponse>("GetBestTrial", &Stub::GetBestTrial, p, n);
        break;
      case kDiagnoseStudy:
        Unary<v1::DiagnoseStudyRequest, v1::DiagnoseStudyResponse>("DiagnoseStudy", &Stub::DiagnoseStudy, p, n);
        break;
      case kEnqueueTrial:
        Unary<v1::EnqueueTrialRequest, v1::EnqueueTrialResponse>("EnqueueTrial", &Stub::EnqueueTrial, p, n);
        break;
      case kAskTrial: Unary<v1::AskTrialRequest, v1::AskTrialResponse>("AskTrial", &Stub::AskTrial, p, n); break;
      case kReport:
      case kReport2: stream.Write(p, n); break;
      case kCloseStream: stream.Close(); break;
      case kHeartbeat: Unary<v1::HeartbeatRequest, v1::HeartbeatResponse>("Heartbeat", &Stub::Heartbeat, p, n); break;
      case kCompleteTrial:
        Unary<v1::CompleteTrialRequest, v1::CompleteTrialResponse>("CompleteTrial", &Stub::CompleteTrial, p, n);
        break;
      case kFailTrial: Unary<v1::FailTrialRequest, v1::FailTrialResponse>("FailTrial", &Stub::FailTrial, p, n); break;
      case kAdvanceClock:
        clock.Advance(absl::Seconds(n >= 2 ? (p[0] | (p[1] << 8)) : 31));
        (*coordinator)->ReapExpiredLeases();
        break;
    }
  }
  stream.Close();

  // Still serving, and the fixed study is still there.
  v1::GetStudyRequest get;
  get.set_study_id(1);
  v1::GetStudyResponse got;
  grpc::ClientContext get_ctx;
  SetDeadline(&get_ctx);
  if (grpc::Status s = harness->stub->GetStudy(&get_ctx, get, &got); !s.ok()) Fail("GetStudy(1) at the end: " + s.error_message());
  v1::ListStudiesResponse list;
  grpc::ClientContext list_ctx;
  SetDeadline(&list_ctx);
  if (grpc::Status s = harness->stub->ListStudies(&list_ctx, v1::ListStudiesRequest(), &list); !s.ok()) {
    Fail("ListStudies at the end: " + s.error_message());
  }
  if (list.studies_size() < 1) Fail("ListStudies at the end lost study 1");
  // The service outlives its streams: a stream's server side ends (OnDone) a little after the client
  // has its status, so wait for that before the service goes.
  stream.Close();
  for (int i = 0; service->OpenStreams() > 0; ++i) {
    if (i == 1000) Fail("a measurement stream never ended on the server");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  harness->forwarder.target = nullptr;
  return 0;
}

namespace {

// Seed inputs: the calls of a worker's life, and some of the ways a client gets them wrong.
class SeedWriter {
 public:
  void Add(Call call, const google::protobuf::Message& m) { Add(call, m.SerializeAsString()); }
  void Add(Call call, const std::string& bytes) {
    out_.push_back(static_cast<char>(call));
    out_.push_back(static_cast<char>(bytes.size() & 0xff));
    out_.push_back(static_cast<char>(bytes.size() >> 8));
    out_ += bytes;
  }
  void Save(const std::string& dir, const std::string& name) {
    std::ofstream(dir + "/" + name, std::ios::binary) << out_;
    out_.clear();
  }

 private:
  std::string out_;
};

v1::ProgressReport Report(int64_t trial, int step, double value) {
  v1::ProgressReport r;
  r.set_trial_id(trial);
  r.mutable_measurement()->set_step(step);
  r.mutable_measurement()->set_value(value);
  return r;
}

void WriteSeeds(const char* dir_c) {
  const std::string dir = dir_c;
  SeedWriter w;
  v1::AskTrialRequest ask;
  ask.set_worker_id("host:1");
  ask.add_task_types("external");
  v1::HeartbeatRequest hb;
  hb.set_trial_id(1);
  hb.set_worker_id("host:1");
  v1::CompleteTrialRequest complete;
  complete.set_trial_id(1);
  (*complete.mutable_final_metrics())["test_accuracy"] = 0.5;
  v1::GetStudyRequest study1;
  study1.set_study_id(1);

  // A worker's life: ask, report three steps, heartbeat, complete; then read everything.
  w.Add(kAskTrial, ask);
  for (int step = 1; step <= 3; ++step) w.Add(kReport, Report(1, step, 0.1 * step));
  w.Add(kHeartbeat, hb);
  w.Add(kCloseStream, "");
  w.Add(kCompleteTrial, complete);
  w.Add(kGetStudy, study1);
  v1::ListTrialsRequest trials;
  trials.set_study_id(1);
  w.Add(kListTrials, trials);
  v1::GetBestTrialRequest best;
  best.set_study_id(1);
  w.Add(kGetBestTrial, best);
  v1::DiagnoseStudyRequest diag;
  diag.set_study_id(1);
  w.Add(kDiagnoseStudy, diag);
  diag.set_has_trial(true);
  diag.set_trial(0);
  w.Add(kDiagnoseStudy, diag);
  w.Add(kListStudies, v1::ListStudiesRequest());
  w.Save(dir, "worker_life");

  // Two trials, the second pruned by the median rule; one failed with a retry.
  w.Add(kAskTrial, ask);
  w.Add(kReport, Report(1, 1, 0.9));
  w.Add(kReport, Report(1, 2, 0.95));
  w.Add(kCloseStream, "");
  w.Add(kCompleteTrial, complete);
  w.Add(kAskTrial, ask);
  w.Add(kReport, Report(2, 1, 0.1));
  w.Add(kReport, Report(2, 2, 0.1));
  w.Add(kCloseStream, "");
  w.Add(kAskTrial, ask);
  v1::FailTrialRequest fail;
  fail.set_trial_id(3);
  fail.set_reason("out of memory");
  fail.set_retry(true);
  w.Add(kFailTrial, fail);
  w.Add(kAskTrial, ask);
  w.Save(dir, "prune_and_retry");

  // Enqueued parameters, good and bad, then handed out.
  v1::EnqueueTrialRequest enq;
  enq.set_study_id(1);
  enq.set_params_json(R"({"x": 0.25, "opt": "b", "m": 3})");
  w.Add(kEnqueueTrial, enq);
  enq.set_params_json(R"({"x": 2})");
  w.Add(kEnqueueTrial, enq);
  enq.set_params_json(R"({"m": 3})");
  w.Add(kEnqueueTrial, enq);
  enq.set_params_json(R"([[[[1]]]])");
  w.Add(kEnqueueTrial, enq);
  enq.set_params_json(R"({"opt": "a"})");
  w.Add(kEnqueueTrial, enq);
  w.Add(kAskTrial, ask);
  w.Add(kAskTrial, ask);
  w.Save(dir, "enqueue");

  // A lost lease: the worker goes silent, the trial is reaped and retried; late reports refused.
  w.Add(kAskTrial, ask);
  w.Add(kReport, Report(1, 1, 0.5));
  w.Add(kAdvanceClock, std::string("\x40\x00", 2));
  w.Add(kReport, Report(1, 2, 0.6));
  w.Add(kHeartbeat, hb);
  w.Add(kCompleteTrial, complete);
  w.Add(kAskTrial, ask);
  w.Save(dir, "lease_lost");

  // A second study from a client spec, stopped; reports past max_steps and out of order.
  v1::CreateStudyRequest create;
  create.set_spec_json(R"({"name": "s2", "task": {"type": "external", "max_steps": 2},
    "parameters": [{"name": "k", "type": "categorical", "choices": [1, "two", true]}],
    "sampler": {"type": "grid", "seed": 7}, "max_trials": 3})");
  w.Add(kCreateStudy, create);
  v1::AskTrialRequest ask2 = ask;
  ask2.set_study_id(2);
  w.Add(kAskTrial, ask2);
  w.Add(kReport, Report(2, 2, 0.5));
  w.Add(kReport, Report(2, 1, 0.5));
  w.Add(kReport, Report(2, 3, 0.5));
  v1::StopStudyRequest stop;
  stop.set_study_id(2);
  w.Add(kStopStudy, stop);
  w.Add(kAskTrial, ask2);
  w.Save(dir, "second_study");

  // Careless values: no measurement, NaN, huge ids, empty worker id, many metrics.
  w.Add(kAskTrial, ask);
  v1::ProgressReport empty;
  empty.set_trial_id(1);
  w.Add(kReport, empty);
  w.Add(kReport, Report(1, 1, std::nan("")));
  w.Add(kReport, Report(-1, 1, 0.5));
  w.Add(kReport, Report(INT64_MAX, 1, 0.5));
  v1::AskTrialRequest no_id;
  no_id.add_task_types("external");
  w.Add(kAskTrial, no_id);
  v1::ProgressReport metrics = Report(1, 1, 0.5);
  for (int k = 0; k < 70; ++k) (*metrics.mutable_measurement()->mutable_metrics())["m" + std::to_string(k)] = k;
  w.Add(kReport, metrics);
  w.Add(kCompleteTrial, complete);
  w.Save(dir, "careless");
}

}  // namespace
