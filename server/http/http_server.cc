#include "server/http/http_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <regex>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/http/api.h"
#include "server/http/assets.h"

namespace hpo::server {
namespace {

bool IsLoopbackHost(const std::string& host) {
  const std::string h = absl::AsciiStrToLower(host);
  if (h == "localhost" || h == "::1") return true;
  // 127.0.0.0/8, written as a dotted quad.
  unsigned a, b, c, d;
  char rest;
  return std::sscanf(h.c_str(), "%u.%u.%u.%u%c", &a, &b, &c, &d, &rest) == 4 && a == 127 && b < 256 &&
         c < 256 && d < 256;
}

// The host part of a Host header ("127.0.0.1:8080", "[::1]:8080", "localhost").
std::string HostOfHeader(const std::string& value) {
  if (!value.empty() && value[0] == '[') {
    const size_t close = value.find(']');
    return close == std::string::npos ? value : value.substr(1, close - 1);
  }
  const size_t colon = value.rfind(':');
  return colon == std::string::npos ? value : value.substr(0, colon);
}

// Dashboard pages: "/", "/studies/ID", "/studies/ID/trials/N" (with or without a trailing slash).
bool IsPage(const std::string& path) {
  static const std::regex kPage(R"(/|/studies/[0-9]{1,18}/?|/studies/[0-9]{1,18}/trials/[0-9]{1,9}/?)");
  return std::regex_match(path, kPage);
}

class HttpServerImpl final : public HttpServer {
 public:
  HttpServerImpl(const HttpOptions& options, std::string host, const Coordinator* c, PrometheusMetrics* m)
      : options_(options), host_(std::move(host)), c_(c), metrics_(m) {}
  ~HttpServerImpl() override { Stop(); }

  absl::Status Start(int port) {
    const int threads = std::max(1, options_.threads);
    server_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    server_.set_read_timeout(5, 0);
    server_.set_write_timeout(5, 0);
    server_.set_idle_interval(0, 100000);
    server_.set_keep_alive_max_count(20);  // a connection holds a thread: let queued ones in
    // An idle keep-alive connection holds its thread this long, and delays Stop() as much: the
    // dashboard polls every second, so 2 s keeps its connection and ends shutdown quickly.
    server_.set_keep_alive_timeout(2);
    server_.set_payload_max_length(64 << 10);  // nothing here takes a body
    server_.set_pre_routing_handler(
        [this](const httplib::Request& req, httplib::Response& res) { return PreRoute(req, res); });
    server_.Get(".*", [this](const httplib::Request& req, httplib::Response& res) { Route(req, res); });
    const std::string bind_host = host_ == "localhost" ? "127.0.0.1" : host_;
    if (port == 0) {
      port_ = server_.bind_to_any_port(bind_host);
      if (port_ <= 0) port_ = 0;
    } else if (server_.bind_to_port(bind_host, port)) {
      port_ = port;
    }
    if (port_ == 0) {
      return absl::UnavailableError(absl::StrCat("cannot listen for HTTP on ", options_.address,
                                                 ": is the address valid and the port free?"));
    }
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // Stop() only ends a server that is already running: wait for it (listen_after_bind returns
    // at once if it fails, hence the bound).
    for (int i = 0; i < 2000 && !server_.is_running(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return absl::OkStatus();
  }

  int port() const override { return port_; }
  std::string url() const override {
    const bool v6 = host_.find(':') != std::string::npos;
    return absl::StrCat("http://", v6 ? "[" : "", host_, v6 ? "]" : "", ":", port_, "/");
  }

  void Stop() override {
    if (thread_.joinable()) {
      server_.stop();
      thread_.join();
    }
  }

 private:
  httplib::Server::HandlerResponse PreRoute(const httplib::Request& req, httplib::Response& res) {
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Referrer-Policy", "no-referrer");
    if (req.method != "GET" && req.method != "HEAD") {
      res.status = 405;
      res.set_header("Allow", "GET, HEAD");
      res.set_content(ApiError("the dashboard is read-only: only GET and HEAD"), "application/json");
      return httplib::Server::HandlerResponse::Handled;
    }
    // On loopback, answer only requests addressed to loopback: a web page elsewhere cannot read
    // the studies through a DNS name rebound to 127.0.0.1.
    if (!options_.allow_remote) {
      const std::string host = HostOfHeader(req.get_header_value("Host"));
      if (!host.empty() && !IsLoopbackHost(host)) {
        res.status = 403;
        res.set_content(ApiError("Host must be a loopback address (start hpo-server with --http_allow_remote "
                                 "to serve other names)"),
                        "application/json");
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  }

  void Route(const httplib::Request& req, httplib::Response& res) {
    const std::string& path = req.path;
    try {
      if (path.rfind("/api/", 0) == 0 || path == "/api") {
        ApiReply r = HandleApi(*c_, path, req.params);
        res.status = r.status;
        res.set_header("Cache-Control", "no-store");
        res.set_content(std::move(r.body), "application/json");
        return;
      }
      if (path == "/metrics" && metrics_ != nullptr) {
        res.set_header("Cache-Control", "no-store");
        res.set_content(metrics_->Scrape(), "text/plain; version=0.0.4; charset=utf-8");
        return;
      }
      if (path.rfind("/assets/", 0) == 0) {
        if (const Asset* a = FindAsset(std::string_view(path).substr(8))) {
          res.set_header("Cache-Control", "no-cache");
          res.set_content(a->body.data(), a->body.size(), a->content_type);
          return;
        }
      } else if (IsPage(path)) {
        const Asset& page = IndexPage();
        res.set_header("Cache-Control", "no-cache");
        res.set_header(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:");
        res.set_content(page.body.data(), page.body.size(), page.content_type);
        return;
      }
      res.status = 404;
      res.set_content(ApiError("no such address"), "application/json");
    } catch (const std::exception& e) {
      spdlog::error("http {}: {}", path.substr(0, 64), e.what());
      res.status = 500;
      res.set_content(ApiError("internal error"), "application/json");
    }
  }

  const HttpOptions options_;
  const std::string host_;
  const Coordinator* c_;
  PrometheusMetrics* metrics_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

}  // namespace

absl::Status CheckHttpAddress(const std::string& address, bool allow_remote, std::string* host, int* port) {
  std::string h, p;
  if (!address.empty() && address[0] == '[') {
    const size_t close = address.find("]:");
    if (close == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--http=", address, ": expected HOST:PORT or [V6]:PORT"));
    }
    h = address.substr(1, close - 1);
    p = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--http=", address, ": expected HOST:PORT, e.g. 127.0.0.1:8080"));
    }
    h = address.substr(0, colon);
    p = address.substr(colon + 1);
  }
  int port_number = -1;
  if (!absl::SimpleAtoi(p, &port_number) || port_number < 0 || port_number > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http=", address, ": the port must be a number from 0 to 65535"));
  }
  if (!allow_remote && !IsLoopbackHost(h)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http=", address,
                     ": the dashboard and /metrics have no authentication, so they listen on loopback "
                     "only (127.0.0.1, ::1, localhost); add --http_allow_remote to serve ",
                     h, " (e.g. behind a proxy, or for a Prometheus on another machine)"));
  }
  *host = h;
  *port = port_number;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<HttpServer>> StartHttpServer(const HttpOptions& options,
                                                            const Coordinator* coordinator,
                                                            PrometheusMetrics* metrics) {
  std::string host;
  int port = 0;
  if (absl::Status s = CheckHttpAddress(options.address, options.allow_remote, &host, &port); !s.ok())
    return s;
  auto server = std::make_unique<HttpServerImpl>(options, host, coordinator, metrics);
  if (absl::Status s = server->Start(port); !s.ok()) return s;
  return std::unique_ptr<HttpServer>(std::move(server));
}

}  // namespace hpo::server
