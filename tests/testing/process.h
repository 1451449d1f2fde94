// Real child processes for the end-to-end tests: start, signal, wait, capture.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace hpo::testing {

class Process {
 public:
  Process() = default;
  // Starts argv (argv[0] is a path); stdout and stderr go to `log_path`.
  static Process Start(const std::vector<std::string>& argv, const std::string& log_path);
  Process(Process&& other) noexcept : pid_(other.pid_) { other.pid_ = -1; }
  Process& operator=(Process&& other) noexcept;
  ~Process();  // SIGKILLs a child still running

  pid_t pid() const { return pid_; }
  bool Running();
  void Signal(int sig);
  // Exit code, 128+signal when killed, or -1 when still running after `timeout`.
  int Wait(std::chrono::milliseconds timeout);

 private:
  pid_t pid_ = -1;
  int status_ = -1;
};

struct CommandResult {
  int exit_code = -1;
  std::string out, err;
};

// Waits until `port_file` (written by hpo-server --port_file) holds a port while `process` runs.
// The port, or 0 when the process exited first or `timeout` passed.
int WaitForPortFile(const std::string& port_file, Process& process,
                    std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Runs argv to completion (killed after `timeout`), capturing stdout and stderr.
CommandResult Run(const std::vector<std::string>& argv,
                  std::chrono::milliseconds timeout = std::chrono::seconds(60));

}  // namespace hpo::testing
