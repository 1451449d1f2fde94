"""The hpo Python client as plain functions: a thin shim over the `hpo` package (python/ in this repository).

    import hpo_client
    study = hpo_client.create_study("127.0.0.1:50051", spec)   # spec: a dict (or JSON text) as in a spec file
    def objective(params, report):       # params: dict name -> value
        for step in range(10):
            value = ...                  # train / evaluate
            if report(step, value):      # True: the coordinator pruned (or stopped) the trial
                return value             # stop now
        return value                     # the trial's final value
    n = hpo_client.run_worker("127.0.0.1:50051", study, objective)   # runs trials until the study is finished
    best = hpo_client.best_trial("127.0.0.1:50051", study)           # {"trial", "state", "value", "params", ...}

New code should use the package itself (`pip install ./python`, then `import hpo`; see README "Python
package"): hpo.Client returns typed objects. This module keeps the older dict-returning functions working.

Where the package comes from: run from a repository checkout (python/hpo next to this folder's parent), the
package's source is used with its gRPC code generated from proto/ by python/protogen.py into
$XDG_CACHE_HOME/hpo-python/pkg-<hash> (default ~/.cache), once per .proto content, so it always matches the
server's API (needs Debian's protobuf-compiler and protobuf-compiler-grpc). Elsewhere the installed `hpo`
package is imported.

Every error the coordinator returns is raised as HpoError (hpo.HpoError), whose message starts with the
gRPC status code name, e.g. "INVALID_ARGUMENT: parameters[0] ("x"): low (1) must be below high (0)".
"""

import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile

__all__ = ["HpoError", "create_study", "get_study", "list_trials", "best_trial", "stop_study",
           "enqueue_trial", "run_worker"]

log = logging.getLogger("hpo_client")

_SRC = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))


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


def _generated_dir(pg):
    """A cache folder holding hpo/v1/*_pb2*.py generated from the repository's proto/ (made once)."""
    proto_dir = pg.find_proto_dir([os.environ.get("HPO_PROTO_DIR"), os.path.join(_SRC, "..", "proto")])
    try:
        gen = pg.generator()
    except pg.ProtogenError as e:
        raise ImportError(f"hpo_client: {e}") from None
    h = hashlib.sha256()
    for f in pg.PROTO_FILES:
        with open(os.path.join(proto_dir, f), "rb") as fh:
            h.update(f.encode() + b"\0" + fh.read() + b"\0")
    h.update(repr(gen).encode())
    key = "pkg-" + h.hexdigest()[:16]
    errors = []
    for root in _cache_roots():
        final = os.path.join(root, key)
        if os.path.isfile(os.path.join(final, "COMPLETE")):
            return final
        try:
            os.makedirs(root, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=f".{key}.", dir=root)
        except OSError as e:
            errors.append(f"{root}: {e}")
            continue
        try:
            cmd = pg.generate(proto_dir, tmp)
            with open(os.path.join(tmp, "COMPLETE"), "w") as f:
                f.write(" ".join(cmd) + "\n")
            try:
                os.rename(tmp, final)  # atomic; fails if another process got there first
            except OSError:
                if not os.path.isfile(os.path.join(final, "COMPLETE")):
                    raise
            return final
        except (OSError, pg.ProtogenError) as e:
            errors.append(f"{root}: {e}")
        finally:
            if os.path.isdir(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
    raise ImportError("hpo_client: cannot write the generated gRPC code to any cache directory: " +
                      "; ".join(errors))


def _load_hpo():
    if "hpo" in sys.modules:
        return sys.modules["hpo"]
    if not (os.path.isfile(os.path.join(_SRC, "hpo", "__init__.py")) and
            os.path.isfile(os.path.join(_SRC, "protogen.py"))):
        import hpo  # not in a checkout: the installed package
        return hpo
    spec = importlib.util.spec_from_file_location("hpo_protogen", os.path.join(_SRC, "protogen.py"))
    pg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pg)
    gen = _generated_dir(pg)
    # The package from the source tree, with the generated hpo.v1 found in the cache folder.
    spec = importlib.util.spec_from_file_location(
        "hpo", os.path.join(_SRC, "hpo", "__init__.py"),
        submodule_search_locations=[os.path.join(_SRC, "hpo"), os.path.join(gen, "hpo")])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["hpo"] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules["hpo"]
        raise
    return mod


hpo = _load_hpo()
from hpo.types import param_value as _param_value  # noqa: E402,F401  (used by bench/*.py)
from hpo.v1 import coordinator_pb2, coordinator_pb2_grpc, study_pb2  # noqa: E402,F401

HpoError = hpo.HpoError


class _FollowHpoClientLevel(logging.Filter):
    """The package logs as "hpo"; setting the level of "hpo_client" (as older code does) governs it too."""

    def filter(self, record):
        return log.isEnabledFor(record.levelno)


logging.getLogger("hpo").addFilter(_FollowHpoClientLevel())


def _security(token, tls_ca, tls_cert, tls_key):
    """Every function takes token= (default: $HPO_TOKEN), tls_ca=, and tls_cert=/tls_key= for mutual TLS,
    as hpo.Client does (README "Security")."""
    return dict(token=token, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)


def _client(address, timeout, connect_timeout, security=None):
    return hpo.Client(address, timeout=timeout, connect_timeout=connect_timeout, **(security or {}))


def create_study(address, spec, *, timeout=30.0, connect_timeout=10.0, token=None, tls_ca=None, tls_cert=None,
                 tls_key=None):
    """Creates a study from a spec (a dict, or JSON text) and returns its id."""
    with _client(address, timeout, connect_timeout, _security(token, tls_ca, tls_cert, tls_key)) as c:
        return c.create_study(spec)


def get_study(address, study, *, timeout=30.0, connect_timeout=10.0, token=None, tls_ca=None, tls_cert=None,
              tls_key=None):
    """The study as a dict: id, name, state ("RUNNING", "COMPLETED", "STOPPED"), counts, best_value, spec, ..."""
    with _client(address, timeout, connect_timeout, _security(token, tls_ca, tls_cert, tls_key)) as c:
        return c.get_study(study).to_dict()


def list_trials(address, study, *, timeout=30.0, connect_timeout=10.0, token=None, tls_ca=None, tls_cert=None,
                tls_key=None):
    """Every trial of the study, by number, as dicts (the same keys as best_trial)."""
    with _client(address, timeout, connect_timeout, _security(token, tls_ca, tls_cert, tls_key)) as c:
        return [t.to_dict() for t in c.trials(study)]


def best_trial(address, study, *, timeout=30.0, connect_timeout=10.0, token=None, tls_ca=None, tls_cert=None,
               tls_key=None):
    """The best completed trial as a dict; raises HpoError NOT_FOUND while no trial has completed."""
    with _client(address, timeout, connect_timeout, _security(token, tls_ca, tls_cert, tls_key)) as c:
        return c.best_trial(study).to_dict()


def stop_study(address, study, *, timeout=30.0, connect_timeout=10.0, token=None, tls_ca=None, tls_cert=None,
               tls_key=None):
    """Stops a study (no new trials; running ones are failed) and returns it as a dict."""
    with _client(address, timeout, connect_timeout, _security(token, tls_ca, tls_cert, tls_key)) as c:
        return c.stop(study).to_dict()


def enqueue_trial(address, study, params, *, timeout=30.0, connect_timeout=10.0, token=None, tls_ca=None,
                  tls_cert=None, tls_key=None):
    """Queues a trial with these parameters; returns it as a dict."""
    with _client(address, timeout, connect_timeout, _security(token, tls_ca, tls_cert, tls_key)) as c:
        return c.enqueue(study, params).to_dict()


def run_worker(address, study, objective, *, worker_id=None, max_trials=None, poll_interval=None,
               timeout=30.0, unavailable_timeout=120.0, token=None, tls_ca=None, tls_cert=None, tls_key=None):
    """Runs the study's trials with `objective(params, report)` until the study is finished; returns how
    many trials this worker ran. See hpo.Client.run_worker."""
    with _client(address, timeout, unavailable_timeout, _security(token, tls_ca, tls_cert, tls_key)) as c:
        return c.run_worker(study, objective, worker_id=worker_id, max_trials=max_trials,
                            poll_interval=poll_interval, unavailable_timeout=unavailable_timeout)
