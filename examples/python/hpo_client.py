"""A small Python client for the hpo coordinator: create a study, act as a worker, read the best trial.

    import hpo_client
    study = hpo_client.create_study("127.0.0.1:50051", spec)   # spec: a dict (or JSON text) as in a spec file
    def objective(params, report):       # params: dict name -> value
        for step in range(10):
            value = ...                  # train / evaluate
            if report(step, value):      # True: the coordinator pruned (or stopped) the trial
                return value             # stop now; the return value is ignored
        return value                     # the trial's final value
    n = hpo_client.run_worker("127.0.0.1:50051", study, objective)   # runs trials until the study is finished
    best = hpo_client.best_trial("127.0.0.1:50051", study)           # {"trial", "state", "value", "params", "values", ...}

The study's task must be {"type": "external"}. The Python gRPC code is generated from the repository's
.proto files (proto/, found relative to this file or from $HPO_PROTO_DIR) with protoc at import time and
cached under $XDG_CACHE_HOME/hpo-python/<hash> (default ~/.cache), so it always matches the server's API.
Needs Debian's python3-grpcio, python3-protobuf, protobuf-compiler and protobuf-compiler-grpc.

Every error the coordinator returns is raised as HpoError, whose message starts with the gRPC status code
name, e.g. "INVALID_ARGUMENT: parameters[0] ("x"): low (1) must be below high (0)".
"""

import hashlib
import json
import logging
import math
import os
import queue
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import grpc

__all__ = ["HpoError", "create_study", "get_study", "list_trials", "best_trial", "stop_study",
           "run_worker"]

log = logging.getLogger("hpo_client")

_PROTO_FILES = ("hpo/v1/study.proto", "hpo/v1/coordinator.proto")
_GRPC_PLUGIN = "/usr/bin/grpc_python_plugin"


class HpoError(Exception):
    """An error from the coordinator (or from reaching it).

    `code` is the gRPC status code name (e.g. "INVALID_ARGUMENT", "UNAVAILABLE"), `details` the server's
    message; str(error) is "CODE: details".
    """

    def __init__(self, code, details):
        self.code = code
        self.details = details
        super().__init__(f"{code}: {details}")


# ------------------------------------------------------------------ generated code


def _proto_dir():
    env = os.environ.get("HPO_PROTO_DIR")
    if env:
        d = os.path.abspath(env)
    else:
        d = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto"))
    for f in _PROTO_FILES:
        if not os.path.isfile(os.path.join(d, f)):
            raise ImportError(f"hpo_client: {os.path.join(d, f)} not found; set HPO_PROTO_DIR to the "
                              f"repository's proto/ directory")
    return d


def _cache_roots():
    roots = []
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        roots.append(os.path.join(xdg, "hpo-python"))
    home = os.path.expanduser("~")
    if home and home != "~":
        roots.append(os.path.join(home, ".cache", "hpo-python"))
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    roots.append(os.path.join(tempfile.gettempdir(), f"hpo-python-{uid}"))
    return roots


def _generate(proto_dir, protoc, out):
    cmd = [protoc, "-I", proto_dir, f"--python_out={out}", f"--grpc_python_out={out}",
           f"--plugin=protoc-gen-grpc_python={_GRPC_PLUGIN}", *_PROTO_FILES]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise ImportError(f"hpo_client: protoc failed on {proto_dir}: {r.stderr.strip()}")
    for pkg in ("hpo", "hpo/v1"):
        open(os.path.join(out, pkg, "__init__.py"), "a").close()
    with open(os.path.join(out, "COMPLETE"), "w") as f:
        f.write(" ".join(cmd) + "\n")


def _load_generated():
    protoc = shutil.which("protoc")
    if protoc is None or not os.access(_GRPC_PLUGIN, os.X_OK):
        raise ImportError("hpo_client needs protoc and the gRPC Python plugin to generate its gRPC code: "
                          "install protobuf-compiler and protobuf-compiler-grpc "
                          "(apt-get install protobuf-compiler protobuf-compiler-grpc)")
    proto_dir = _proto_dir()
    h = hashlib.sha256()
    for f in _PROTO_FILES:
        h.update(f.encode() + b"\0")
        with open(os.path.join(proto_dir, f), "rb") as fh:
            h.update(fh.read() + b"\0")
    ver = subprocess.run([protoc, "--version"], capture_output=True, text=True).stdout.strip()
    h.update(ver.encode())
    key = h.hexdigest()[:16]

    errors = []
    target = None
    for root in _cache_roots():
        final = os.path.join(root, key)
        if os.path.isfile(os.path.join(final, "COMPLETE")):
            target = final
            break
        try:
            os.makedirs(root, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=f".{key}.", dir=root)
        except OSError as e:
            errors.append(f"{root}: {e}")
            continue
        try:
            _generate(proto_dir, protoc, tmp)
            try:
                os.rename(tmp, final)  # atomic; fails if another process got there first
            except OSError:
                if not os.path.isfile(os.path.join(final, "COMPLETE")):
                    raise
        except OSError as e:
            errors.append(f"{root}: {e}")
            continue
        finally:
            if os.path.isdir(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
        target = final
        break
    if target is None:
        raise ImportError("hpo_client: cannot write the generated gRPC code to any cache directory: " +
                          "; ".join(errors))
    if target not in sys.path:
        sys.path.insert(0, target)
    from hpo.v1 import coordinator_pb2, coordinator_pb2_grpc, study_pb2  # noqa: E402
    return study_pb2, coordinator_pb2, coordinator_pb2_grpc


study_pb2, coordinator_pb2, coordinator_pb2_grpc = _load_generated()

_STUDY_STATE = {v.number: v.name.replace("STUDY_", "", 1) for v in study_pb2.StudyState.DESCRIPTOR.values}
_TRIAL_STATE = {v.number: v.name.replace("TRIAL_", "", 1) for v in study_pb2.TrialState.DESCRIPTOR.values}
_DIRECTION = {v.number: v.name for v in study_pb2.Direction.DESCRIPTOR.values}
_TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


# ------------------------------------------------------------------ calls


class _Conn:
    """A channel plus the retry policy of one client operation."""

    def __init__(self, address, timeout=30.0, unavailable_timeout=10.0):
        self.address = address
        self.timeout = timeout
        self.unavailable_timeout = unavailable_timeout
        self.channel = grpc.insecure_channel(address)
        self.stub = coordinator_pb2_grpc.CoordinatorStub(self.channel)

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def unreachable(self, e):
        return HpoError(e.code().name,
                        f"cannot reach the coordinator at {self.address} ({e.details()}): "
                        f"is hpo-server running there?")

    def call(self, method, request, timeout=None, retry=True):
        """Calls a unary method with a deadline, retrying with backoff while the coordinator is unavailable."""
        fn = getattr(self.stub, method)
        give_up = time.monotonic() + self.unavailable_timeout
        delay = 0.05
        while True:
            try:
                return fn(request, timeout=timeout or self.timeout)
            except grpc.RpcError as e:
                code = e.code()
                if code in _TRANSIENT and retry and time.monotonic() < give_up:
                    log.debug("%s: %s: %s; retrying in %.2fs", method, code.name, e.details(), delay)
                    time.sleep(min(delay, max(0.0, give_up - time.monotonic())))
                    delay = min(delay * 2, 5.0)
                    continue
                if code == grpc.StatusCode.UNAVAILABLE:
                    raise self.unreachable(e) from None
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise HpoError(code.name, f"{method} to the coordinator at {self.address} did not "
                                              f"answer within {timeout or self.timeout:g}s") from None
                raise HpoError(code.name, e.details() or "") from None


def _param_value(pv):
    kind = pv.WhichOneof("kind")
    return None if kind is None else getattr(pv, kind)


def _data_dict(d):
    return {"format": d.format, "class_names": list(d.class_names), "train_images": d.train_images,
            "val_images": d.val_images, "test_images": d.test_images, "channels": d.channels,
            "height": d.height, "width": d.width, "skipped_files": d.skipped_files,
            "skipped_examples": list(d.skipped_examples)}


def _trial_dict(t):
    return {
        "trial": t.number,
        "id": t.id,
        "state": _TRIAL_STATE.get(t.state, str(t.state)),
        "value": t.value if t.has_value else None,
        "best_step": t.best_step if t.has_value else None,
        "params": {k: _param_value(v) for k, v in sorted(t.params.items())},
        "values": [m.value for m in t.measurements],
        "measurements": [{"step": m.step, "value": m.value, "metrics": dict(m.metrics)}
                         for m in t.measurements],
        "final_metrics": dict(t.final_metrics),
        # What an hpo-worker found in the data set (None for external tasks), as hpoctl --json shows it.
        "data": _data_dict(t.data) if t.HasField("data") else None,
        "class_names": list(t.data.class_names),
        "reason": t.reason,
        "worker": t.worker,
        "retry_of": t.retry_of,
    }


def _study_dict(s):
    return {
        "id": s.id,
        "name": s.name,
        "state": _STUDY_STATE.get(s.state, str(s.state)),
        "direction": _DIRECTION.get(s.direction, str(s.direction)),
        "metric": s.metric,
        "max_trials": s.max_trials,
        "counts": {"waiting": s.counts.waiting, "running": s.counts.running, "completed": s.counts.completed,
                   "pruned": s.counts.pruned, "failed": s.counts.failed},
        "best_value": s.best_value if s.has_best else None,
        "best_trial": s.best_trial if s.has_best else None,
        "sampler": s.sampler,
        "pruner": s.pruner,
        "seed": s.seed,
        "spec": json.loads(s.spec_json) if s.spec_json else None,
    }


def create_study(address, spec, *, timeout=30.0, connect_timeout=10.0):
    """Creates a study from a spec (a dict, or JSON text) and returns its id."""
    spec_json = spec if isinstance(spec, str) else json.dumps(spec)
    with _Conn(address, timeout, connect_timeout) as c:
        # CreateStudy is not idempotent: retry only while nothing could have reached the server.
        try:
            grpc.channel_ready_future(c.channel).result(timeout=connect_timeout)
        except grpc.FutureTimeoutError:
            raise HpoError("UNAVAILABLE", f"cannot reach the coordinator at {address} (no connection within "
                                          f"{connect_timeout:g}s): is hpo-server running there?") from None
        resp = c.call("CreateStudy", coordinator_pb2.CreateStudyRequest(spec_json=spec_json), retry=False)
        return resp.study.id


def get_study(address, study, *, timeout=30.0, connect_timeout=10.0):
    """The study as a dict: id, name, state ("RUNNING", "COMPLETED", "STOPPED"), counts, best_value, spec, ..."""
    with _Conn(address, timeout, connect_timeout) as c:
        return _study_dict(c.call("GetStudy", coordinator_pb2.GetStudyRequest(study_id=study)).study)


def list_trials(address, study, *, timeout=30.0, connect_timeout=10.0):
    """Every trial of the study, by number, as dicts (the same keys as best_trial)."""
    with _Conn(address, timeout, connect_timeout) as c:
        resp = c.call("ListTrials", coordinator_pb2.ListTrialsRequest(study_id=study))
        return [_trial_dict(t) for t in resp.trials]


def best_trial(address, study, *, timeout=30.0, connect_timeout=10.0):
    """The best completed trial: {"trial", "state", "value", "params", "values", "best_step", ...}.

    Raises HpoError NOT_FOUND while no trial has completed.
    """
    with _Conn(address, timeout, connect_timeout) as c:
        return _trial_dict(c.call("GetBestTrial", coordinator_pb2.GetBestTrialRequest(study_id=study)).trial)


def stop_study(address, study, *, timeout=30.0, connect_timeout=10.0):
    """Stops a study (no new trials; running ones are failed) and returns it as a dict."""
    with _Conn(address, timeout, connect_timeout) as c:
        return _study_dict(c.call("StopStudy", coordinator_pb2.StopStudyRequest(study_id=study)).study)


# ------------------------------------------------------------------ worker


class _TrialRun:
    """One running trial: its measurement stream, its heartbeats and the report() given to the objective."""

    def __init__(self, conn, trial, worker_id, heartbeat_interval_s):
        self.conn = conn
        self.trial_id = trial.id
        self.number = trial.number
        self.worker_id = worker_id
        self.heartbeat_interval_s = heartbeat_interval_s
        self.stopped = False       # pruned or stopped by the coordinator: send nothing more
        self.stop_reason = ""
        self.pruned = False
        self.last_step = None
        self.last_value = None
        self._requests = None
        self._responses = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._hb = threading.Thread(target=self._heartbeats, name=f"hpo-heartbeat-{trial.id}", daemon=True)

    # -- heartbeats
    def start(self):
        self._hb.start()

    def _heartbeats(self):
        req = coordinator_pb2.HeartbeatRequest(trial_id=self.trial_id, worker_id=self.worker_id)
        while not self._done.wait(self.heartbeat_interval_s):
            try:
                resp = self.conn.stub.Heartbeat(req, timeout=min(self.conn.timeout, self.heartbeat_interval_s))
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    self._stop(e.details())
                    return
                log.debug("trial %d: heartbeat: %s: %s", self.number, e.code().name, e.details())
                continue  # transient: try again at the next beat
            if not resp.keep_running:
                self._stop(resp.reason or "the coordinator says stop")
                return

    def _stop(self, reason):
        with self._lock:
            if not self.stopped:
                self.stopped = True
                self.stop_reason = reason
                log.info("trial %d: stopped by the coordinator: %s", self.number, reason)

    # -- the measurement stream
    def _open(self):
        q = queue.Queue()

        def requests():
            while True:
                r = q.get()
                if r is None:
                    return
                yield r

        self._requests = q
        self._responses = self.conn.stub.ReportProgress(requests())

    def _close(self):
        if self._requests is not None:
            self._requests.put(None)
            self._responses.cancel()
        self._requests = self._responses = None

    def report(self, step, value):
        """Sends one measurement; True when the trial must stop (pruned, or stopped by the coordinator)."""
        if self.stopped:
            return True
        if isinstance(step, bool) or int(step) != step:
            raise ValueError(f"step must be an integer, not {step!r}")
        step, value = int(step), float(value)
        if not math.isfinite(value):
            raise ValueError(f"reported value {value} at step {step} is not finite")
        req = coordinator_pb2.ProgressReport(
            trial_id=self.trial_id, measurement=study_pb2.Measurement(step=step, value=value))
        give_up = time.monotonic() + self.conn.unavailable_timeout
        delay = 0.05
        while True:
            if self._responses is None:
                self._open()
            try:
                self._requests.put(req)
                decision = next(self._responses)
                break
            except StopIteration:  # closed by the server without a decision: try a new stream
                self._close()
                err = None
            except grpc.RpcError as e:
                self._close()
                err = e
                if e.code() == grpc.StatusCode.FAILED_PRECONDITION:  # the trial is no longer running
                    self._stop(e.details())
                    return True
                if e.code() not in _TRANSIENT:
                    raise HpoError(e.code().name, e.details() or "") from None
            if time.monotonic() >= give_up:
                if err is not None:
                    raise self.conn.unreachable(err) from None
                raise HpoError("UNAVAILABLE", f"the coordinator at {self.conn.address} closed the "
                                              f"measurement stream of trial {self.number} without a decision")
            time.sleep(delay)  # the measurement is resent on a new stream; the server answers resends
            delay = min(delay * 2, 5.0)
        self.last_step, self.last_value = step, value
        A = coordinator_pb2.ProgressDecision
        if decision.action in (A.PRUNE, A.STOP):
            self.pruned = decision.action == A.PRUNE
            self._stop(decision.reason or A.Action.Name(decision.action))
            self._close()  # the server has closed its side
            return True
        return False

    def finish(self):
        self._done.set()
        self._close()
        self._hb.join()


def _default_worker_id():
    return f"{socket.gethostname()}:{os.getpid()}:py"


def run_worker(address, study, objective, *, worker_id=None, max_trials=None, poll_interval=None,
               timeout=30.0, unavailable_timeout=120.0):
    """Runs the study's trials with `objective(params, report)` until the study is finished.

    report(step, value) sends one measurement and returns True when the coordinator prunes or stops the
    trial (the objective should then return at once; later report calls send nothing and return True).
    The value the objective returns is reported as one more step when it differs from the last report,
    and the trial is completed; if the objective raises, the trial is failed with "Type: message" and the
    worker goes on. Returns the number of trials this worker ran.

    worker_id: the name shown in trial listings (default host:pid:py); max_trials: return after this many
    trials; poll_interval: seconds between asks while no trial is available (default: the coordinator's
    retry_after_ms); timeout: deadline of each call in seconds; unavailable_timeout: how long to keep
    retrying while the coordinator cannot be reached.
    """
    worker_id = worker_id or _default_worker_id()
    ran = 0
    with _Conn(address, timeout, unavailable_timeout) as c:
        ask = coordinator_pb2.AskTrialRequest(worker_id=worker_id, task_types=["external"], study_id=study)
        while max_trials is None or ran < max_trials:
            resp = c.call("AskTrial", ask)
            if not resp.assigned:
                s = c.call("GetStudy", coordinator_pb2.GetStudyRequest(study_id=study)).study
                if s.state != study_pb2.STUDY_RUNNING:
                    break
                wait = poll_interval if poll_interval is not None else (resp.retry_after_ms or 1000) / 1000.0
                time.sleep(wait * (0.9 + 0.2 * random.random()))
                continue
            _run_trial(c, resp, worker_id, objective)
            ran += 1
    return ran


def _run_trial(c, resp, worker_id, objective):
    t = resp.trial
    params = {k: _param_value(v) for k, v in t.params.items()}
    hb = max(0.05, (resp.heartbeat_interval_ms or 5000) / 1000.0 / 2)  # beat twice per interval
    run = _TrialRun(c, t, worker_id, hb)
    run.start()
    outcome, detail = None, None
    try:
        try:
            result = objective(params, run.report)
        except Exception as e:  # noqa: BLE001 -- the objective's failure fails its trial, not the worker
            detail = f"{type(e).__name__}: {e}"
            if run.stopped:  # already pruned or stopped server-side: nothing to fail
                outcome = "stopped"
                log.info("trial %d raised after it was stopped: %s", t.number, detail)
            else:
                outcome = "fail"
                log.warning("trial %d failed: %s", t.number, detail)
                log.debug("trial %d traceback", t.number, exc_info=True)
        except BaseException:  # e.g. KeyboardInterrupt: hand the trial back for another worker
            run.finish()
            try:
                c.call("FailTrial", coordinator_pb2.FailTrialRequest(
                    trial_id=t.id, reason="shut down (the Python worker was interrupted)", retry=True),
                    retry=False)
            except HpoError:
                pass
            raise
        else:
            if run.stopped:
                outcome = "stopped"
            else:
                outcome = "complete"
                try:
                    if result is not None:
                        if isinstance(result, bool):
                            raise TypeError(f"the objective returned {result!r}, not a number")
                        value = float(result)
                        if not math.isfinite(value):
                            raise ValueError(f"the objective returned {value}; values must be finite")
                        if run.last_value is None or value != run.last_value:
                            step = 0 if run.last_step is None else run.last_step + 1
                            if run.report(step, value):
                                outcome = "stopped"
                    elif run.last_value is None:
                        raise ValueError("the objective returned None and reported no value")
                except Exception as e:  # noqa: BLE001 -- e.g. a non-numeric return value
                    outcome, detail = "fail", f"{type(e).__name__}: {e}"
                    log.warning("trial %d failed: %s", t.number, detail)
    finally:
        run.finish()
    try:
        if outcome == "complete":
            c.call("CompleteTrial", coordinator_pb2.CompleteTrialRequest(trial_id=t.id))
        elif outcome == "fail":
            c.call("FailTrial", coordinator_pb2.FailTrialRequest(trial_id=t.id, reason=detail, retry=False))
    except HpoError as e:
        if e.code != "FAILED_PRECONDITION":  # e.g. pruned or its lease was lost meanwhile: nothing to do
            raise
        log.info("trial %d: %s", t.number, e.details)
