"""hpo.Client: the coordinator's API for Python, and a worker loop for `external` studies."""

import json
import logging
import math
import os
import queue
import random
import socket
import threading
import time
from collections import namedtuple
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import grpc

from hpo.errors import HpoError, error
from hpo.types import Finding, ParamValue, Study, Trial, param_value
from hpo.v1 import coordinator_pb2, coordinator_pb2_grpc, study_pb2

__all__ = ["Client", "Objective", "Report"]

log = logging.getLogger("hpo")

# Retried with backoff. CANCELLED too: this client never cancels a call it still waits on, so a cancelled
# one was cut by the coordinator or the connection (e.g. a call that raced hpo-server's shutdown).
_TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)

#: report(step, value, metrics=None) -> bool: sends one measurement; True means "stop now".
Report = Callable[..., bool]
#: objective(params, report) -> the trial's final value (or None when the last report is the value).
Objective = Callable[[Dict[str, ParamValue], Report], Optional[float]]


class _CallDetails(namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                                "wait_for_ready", "compression")),
                   grpc.ClientCallDetails):
    pass


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds "authorization: Bearer TOKEN" to every call on a plaintext channel (gRPC's own call
    credentials are refused on channels without TLS)."""

    def __init__(self, token):
        self._md = ("authorization", f"Bearer {token}")

    def _details(self, d):
        md = list(d.metadata or []) + [self._md]
        return _CallDetails(d.method, d.timeout, md, d.credentials, getattr(d, "wait_for_ready", None),
                            getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


def _read_pem(what: str, pem: Union[str, bytes, os.PathLike]) -> bytes:
    """A PEM given as bytes, as text, or as the path of a file; ValueError naming `what` otherwise."""
    if isinstance(pem, bytes):
        return pem
    s = os.fspath(pem)
    if "-----BEGIN" in s:
        return s.encode()
    try:
        with open(s, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"{what}={s}: cannot read it ({e.strerror})") from None
    if b"-----BEGIN" not in data:
        raise ValueError(f"{what}={s}: not a PEM file (no -----BEGIN line)")
    return data


def _read_ca(tls_ca: Union[str, bytes, os.PathLike]) -> bytes:
    return _read_pem("tls_ca", tls_ca)


class Client:
    """A connection to one hpo coordinator (`hpo-server`).

        client = hpo.Client("127.0.0.1:50051")
        study = client.create_study(spec)            # a dict as in a spec file; returns the study id
        client.run_worker(study, objective)          # runs trials with objective(params, report)
        best = client.best_trial(study)              # an hpo.Trial

    address: HOST:PORT of hpo-server.
    token:   sent as "authorization: Bearer TOKEN" metadata on every call (as gRPC access-token call
             credentials when TLS is on); default: the environment variable HPO_TOKEN. Needed when
             hpo-server runs with --require_tokens (README "Security"): a worker token for run_worker, a
             reader token to read, an admin token to create, stop and enqueue.
    tls_ca:  a PEM file (path, or the PEM text/bytes) of the certificate authority to trust: the channel
             then uses TLS (hpo-server --tls_cert/--tls_key).
    tls_cert, tls_key: this client's certificate and private key (PEM, as for tls_ca) for mutual TLS
             (hpo-server --tls_client_ca); need tls_ca.
    timeout: the deadline of each call, in seconds; connect_timeout: how long calls retry while the
             coordinator cannot be reached (worker loops use their own, longer, unavailable_timeout).

    Every error is raised as an hpo.HpoError subclass (InvalidArgumentError, NotFoundError,
    UnavailableError, ...) whose message is the coordinator's. Thread-safe; close() (or a `with` block)
    releases the channel.
    """

    def __init__(self, address: str, token: Optional[str] = None,
                 tls_ca: Union[str, bytes, os.PathLike, None] = None, *, timeout: float = 30.0,
                 connect_timeout: float = 10.0, tls_cert: Union[str, bytes, os.PathLike, None] = None,
                 tls_key: Union[str, bytes, os.PathLike, None] = None):
        self.address = address
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        if token is None:
            token = os.environ.get("HPO_TOKEN", "").strip() or None
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key go together: a client certificate needs its private key")
        if tls_cert is not None and tls_ca is None:
            raise ValueError("tls_cert needs tls_ca: the CA that signed the coordinator's certificate")
        if tls_ca is not None:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read_ca(tls_ca),
                private_key=_read_pem("tls_key", tls_key) if tls_key is not None else None,
                certificate_chain=_read_pem("tls_cert", tls_cert) if tls_cert is not None else None)
            if token:
                creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(token))
            self._raw = grpc.secure_channel(address, creds)
            self._channel = self._raw
        else:
            self._raw = grpc.insecure_channel(address)
            self._channel = grpc.intercept_channel(self._raw, _BearerToken(token)) if token else self._raw
        self._stub = coordinator_pb2_grpc.CoordinatorStub(self._channel)
        self._tls = tls_ca is not None

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"hpo.Client({self.address!r})"

    def _unreachable(self, e: grpc.RpcError) -> HpoError:
        hint = ("does its certificate match tls_ca and the address?" if self._tls
                else "if it serves TLS, pass tls_ca")
        return error(e.code().name, f"cannot reach the coordinator at {self.address} ({e.details()}): "
                                    f"is hpo-server running there? ({hint})", e.code())

    def _call(self, method: str, request, *, retry: bool = True, unavailable_timeout: Optional[float] = None):
        """Calls a unary method with a deadline, retrying with backoff while the coordinator is unavailable."""
        fn = getattr(self._stub, method)
        give_up = time.monotonic() + (self.connect_timeout if unavailable_timeout is None
                                      else unavailable_timeout)
        delay = 0.05
        while True:
            try:
                return fn(request, timeout=self.timeout)
            except grpc.RpcError as e:
                code = e.code()
                if code in _TRANSIENT and retry and time.monotonic() < give_up:
                    log.debug("%s: %s: %s; retrying in %.2fs", method, code.name, e.details(), delay)
                    time.sleep(min(delay, max(0.0, give_up - time.monotonic())))
                    delay = min(delay * 2, 5.0)
                    continue
                if code == grpc.StatusCode.UNAVAILABLE:
                    raise self._unreachable(e) from None
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise error(code.name, f"{method} to the coordinator at {self.address} did not answer "
                                           f"within {self.timeout:g}s", code) from None
                raise error(code.name, e.details() or "", code) from None

    def wait_ready(self, timeout: Optional[float] = None) -> None:
        """Waits until the channel is connected; raises UnavailableError after `timeout` seconds."""
        t = self.connect_timeout if timeout is None else timeout
        try:
            grpc.channel_ready_future(self._raw).result(timeout=t)
        except grpc.FutureTimeoutError:
            hint = ("does its certificate match tls_ca and the address?" if self._tls
                    else "if it serves TLS, pass tls_ca")
            raise error("UNAVAILABLE", f"cannot reach the coordinator at {self.address} (no connection within "
                                       f"{t:g}s): is hpo-server running there? ({hint})",
                        grpc.StatusCode.UNAVAILABLE) from None

    # ------------------------------------------------------------------ tokens (admin)

    def create_token(self, role: str, study: int = 0, note: str = "") -> str:
        """Makes a bearer token with role "admin", "worker" or "reader" (a worker token may be bound to one
        study) and returns its secret, which the coordinator does not keep: store it now."""
        roles = {"admin": coordinator_pb2.ROLE_ADMIN, "worker": coordinator_pb2.ROLE_WORKER,
                 "reader": coordinator_pb2.ROLE_READER}
        if role not in roles:
            raise ValueError(f"role must be admin, worker or reader, not {role!r}")
        req = coordinator_pb2.CreateTokenRequest(role=roles[role], study_id=study, note=note)
        return self._call("CreateToken", req, retry=False).token

    def list_tokens(self) -> List[Dict[str, Any]]:
        """Every token (never its secret): dicts with id, role, study (None: any), note, created_unix_ms,
        revoked."""
        names = {coordinator_pb2.ROLE_ADMIN: "admin", coordinator_pb2.ROLE_WORKER: "worker",
                 coordinator_pb2.ROLE_READER: "reader"}
        return [{"id": t.id, "role": names.get(t.role, "?"), "study": t.study_id or None, "note": t.note,
                 "created_unix_ms": t.created_unix_ms, "revoked": t.revoked}
                for t in self._call("ListTokens", coordinator_pb2.ListTokensRequest()).tokens]

    def revoke_token(self, token_id: int) -> None:
        """Revokes a token: calls with it get UNAUTHENTICATED from then on."""
        self._call("RevokeToken", coordinator_pb2.RevokeTokenRequest(token_id=token_id))

    # ------------------------------------------------------------------ studies

    def create_study(self, spec: Union[Mapping[str, Any], str]) -> int:
        """Creates a study from a spec (a dict as in a spec file, or its JSON text); returns its id."""
        spec_json = spec if isinstance(spec, str) else json.dumps(spec)
        # CreateStudy is not idempotent: retry only while nothing could have reached the server.
        self.wait_ready()
        resp = self._call("CreateStudy", coordinator_pb2.CreateStudyRequest(spec_json=spec_json), retry=False)
        return resp.study.id

    def get_study(self, study_id: int) -> Study:
        """The study: state, counts, best value, spec, ..."""
        return Study._from_pb(self._call("GetStudy", coordinator_pb2.GetStudyRequest(study_id=study_id)).study)

    def _pages(self, method: str, request, field: str):
        """Every item of a paged List method: one call per page, each with its own deadline and retries."""
        items = []
        while True:
            resp = self._call(method, request)
            items.extend(getattr(resp, field))
            if not resp.next_page_token:
                return items
            if resp.next_page_token == request.page_token:
                raise error("INTERNAL", f"{method}: the coordinator sent the same page token twice",
                            grpc.StatusCode.INTERNAL)
            request.page_token = resp.next_page_token

    def list_studies(self, full: bool = False, page_size: int = 0) -> List[Study]:
        """Every study, oldest first, fetched a page at a time (page_size 0: the server's default).

        Without `full` the studies are summaries whose `spec` is None; full=True also fetches each spec."""
        req = coordinator_pb2.ListStudiesRequest(page_size=page_size, full=full)
        return [Study._from_pb(s) for s in self._pages("ListStudies", req, "studies")]

    def trials(self, study_id: int, page_size: int = 0) -> List[Trial]:
        """Every trial of the study, by number, fetched a page at a time (page_size 0: the server's default)."""
        req = coordinator_pb2.ListTrialsRequest(study_id=study_id, page_size=page_size)
        return [Trial._from_pb(t) for t in self._pages("ListTrials", req, "trials")]

    def delete_study(self, study_id: int) -> Study:
        """Deletes a study with its trials and measurements (needs an admin token when tokens are required).

        Returns the study as it was just before (a summary). Raises NotFoundError for an unknown id."""
        req = coordinator_pb2.DeleteStudyRequest(study_id=study_id)
        return Study._from_pb(self._call("DeleteStudy", req, retry=False).study)

    def best_trial(self, study_id: int) -> Trial:
        """The best completed trial; raises NotFoundError while none has completed."""
        return Trial._from_pb(self._call("GetBestTrial",
                                         coordinator_pb2.GetBestTrialRequest(study_id=study_id)).trial)

    def stop(self, study_id: int) -> Study:
        """Stops a study: no new trials; running and waiting trials are failed. Returns the stopped study."""
        return Study._from_pb(self._call("StopStudy", coordinator_pb2.StopStudyRequest(study_id=study_id)).study)

    def enqueue(self, study_id: int, params: Mapping[str, ParamValue]) -> Trial:
        """Queues a trial with these parameters (handed out before sampled ones); returns it (WAITING).

        Active parameters left out are sampled when it starts. Uses one of the study's max_trials.
        """
        req = coordinator_pb2.EnqueueTrialRequest(study_id=study_id, params_json=json.dumps(dict(params)))
        return Trial._from_pb(self._call("EnqueueTrial", req, retry=False).trial)

    def diagnose(self, study_id: int, trial: Optional[int] = None) -> List[Finding]:
        """Why the objective is not improving, strongest cause first (as `hpoctl diagnose`)."""
        req = coordinator_pb2.DiagnoseStudyRequest(study_id=study_id, has_trial=trial is not None,
                                                   trial=trial or 0)
        return [Finding(f.cause, f.evidence, f.suggestion, dict(f.figures))
                for f in self._call("DiagnoseStudy", req).findings]

    # ------------------------------------------------------------------ worker

    def run_worker(self, study: int, objective: Objective, *, worker_id: Optional[str] = None,
                   max_trials: Optional[int] = None, poll_interval: Optional[float] = None,
                   unavailable_timeout: float = 120.0) -> int:
        """Runs the study's trials with `objective(params, report)` until the study is finished.

        params: dict name -> value of the trial's configuration (inactive conditional parameters absent).
        report(step, value, metrics=None) sends one measurement (step: an int, increasing; value: the
        study's objective; metrics: optional dict of other figures) and returns True when the coordinator
        prunes or stops the trial: the objective should then return at once (later calls send nothing and
        return True). The value the objective returns is reported as one more step when it differs from the
        last report, and the trial is completed. If the objective raises an Exception, its trial is failed
        with "Type: message" and the worker goes on; on KeyboardInterrupt the trial is handed back (failed,
        to be retried by another worker) and the interrupt propagates.

        Heartbeats are sent from a background thread, so a slow objective keeps its lease.
        worker_id: the name shown in trial listings (default host:pid:py); max_trials: return after this
        many trials; poll_interval: seconds between asks while no trial is free (default: what the
        coordinator says); unavailable_timeout: how long to keep retrying while the coordinator cannot be
        reached. Returns the number of trials this worker ran.
        """
        worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:py"
        ran = 0
        ask = coordinator_pb2.AskTrialRequest(worker_id=worker_id, task_types=["external"], study_id=study)
        while max_trials is None or ran < max_trials:
            resp = self._call("AskTrial", ask, unavailable_timeout=unavailable_timeout)
            if not resp.assigned:
                s = self._call("GetStudy", coordinator_pb2.GetStudyRequest(study_id=study),
                               unavailable_timeout=unavailable_timeout).study
                if s.state != study_pb2.STUDY_RUNNING:
                    break
                wait = poll_interval if poll_interval is not None else (resp.retry_after_ms or 1000) / 1000.0
                time.sleep(wait * (0.9 + 0.2 * random.random()))
                continue
            self._run_trial(resp, worker_id, objective, unavailable_timeout)
            ran += 1
        return ran

    def _run_trial(self, resp, worker_id, objective, unavailable_timeout):
        t = resp.trial
        params = {k: param_value(v) for k, v in t.params.items()}
        hb = max(0.05, (resp.heartbeat_interval_ms or 5000) / 1000.0 / 2)  # beat twice per interval
        run = _TrialRun(self, t, worker_id, hb, unavailable_timeout)
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
                    self._call("FailTrial", coordinator_pb2.FailTrialRequest(
                        trial_id=t.id, reason="shut down (the Python worker was interrupted)", retry=True,
                        worker_id=worker_id), retry=False)
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
                self._call("CompleteTrial",
                           coordinator_pb2.CompleteTrialRequest(trial_id=t.id, worker_id=worker_id),
                           unavailable_timeout=unavailable_timeout)
            elif outcome == "fail":
                self._call("FailTrial", coordinator_pb2.FailTrialRequest(trial_id=t.id, reason=detail,
                                                                          retry=False, worker_id=worker_id),
                           unavailable_timeout=unavailable_timeout)
        except HpoError as e:
            if e.code != "FAILED_PRECONDITION":  # e.g. pruned or its lease was lost meanwhile: nothing to do
                raise
            log.info("trial %d: %s", t.number, e.details)


class _TrialRun:
    """One running trial: its measurement stream, its heartbeats and the report() given to the objective."""

    def __init__(self, client: Client, trial, worker_id: str, heartbeat_interval_s: float,
                 unavailable_timeout: float):
        self.client = client
        self.trial_id = trial.id
        self.number = trial.number
        self.worker_id = worker_id
        self.heartbeat_interval_s = heartbeat_interval_s
        self.unavailable_timeout = unavailable_timeout
        self.stopped = False       # pruned or stopped by the coordinator: send nothing more
        self.stop_reason = ""
        self.pruned = False
        self.last_step: Optional[int] = None
        self.last_value: Optional[float] = None
        self._requests = None
        self._responses = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._hb = threading.Thread(target=self._heartbeats, name=f"hpo-heartbeat-{trial.id}", daemon=True)

    def start(self):
        self._hb.start()

    def _heartbeats(self):
        req = coordinator_pb2.HeartbeatRequest(trial_id=self.trial_id, worker_id=self.worker_id)
        stub = self.client._stub
        while not self._done.wait(self.heartbeat_interval_s):
            try:
                resp = stub.Heartbeat(req, timeout=min(self.client.timeout, self.heartbeat_interval_s))
            except grpc.RpcError as e:
                if e.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED,
                                grpc.StatusCode.UNAUTHENTICATED):
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

    def _open(self):
        q = queue.Queue()

        def requests():
            while True:
                r = q.get()
                if r is None:
                    return
                yield r

        self._requests = q
        self._responses = self.client._stub.ReportProgress(requests())

    def _close(self):
        if self._requests is not None:
            self._requests.put(None)
            self._responses.cancel()
        self._requests = self._responses = None

    def report(self, step: int, value: float, metrics: Optional[Mapping[str, float]] = None) -> bool:
        """Sends one measurement; True when the trial must stop (pruned, or stopped by the coordinator)."""
        if self.stopped:
            return True
        if isinstance(step, bool) or int(step) != step:
            raise ValueError(f"step must be an integer, not {step!r}")
        step, value = int(step), float(value)
        if not math.isfinite(value):
            raise ValueError(f"reported value {value} at step {step} is not finite")
        m = study_pb2.Measurement(step=step, value=value)
        for k, v in (metrics or {}).items():
            m.metrics[str(k)] = float(v)
        req = coordinator_pb2.ProgressReport(trial_id=self.trial_id, measurement=m, worker_id=self.worker_id)
        give_up = time.monotonic() + self.unavailable_timeout
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
                    raise error(e.code().name, e.details() or "", e.code()) from None
            if time.monotonic() >= give_up:
                if err is not None:
                    raise self.client._unreachable(err) from None
                raise error("UNAVAILABLE", f"the coordinator at {self.client.address} closed the measurement "
                                           f"stream of trial {self.number} without a decision")
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
