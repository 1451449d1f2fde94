#!/usr/bin/python3
"""Several hosts, simulated faithfully: hpo-server and two hpo-workers, each in a network namespace of its own
(veth pairs on a bridge; addresses only inside the namespaces this test makes), so they reach each other as
separate machines would. The coordinator listens on its namespace's address, not on loopback, set up as
README "Security" says: TLS with a certificate made here by openssl, --require_tokens, an admin token from
hpo-server --new_token, and a worker token per host made with hpoctl token create.

0. Safe defaults across hosts: without TLS and tokens the server refuses that address; plaintext, a missing
   token and a reader token creating a study are refused from another host.

1. A study runs to the end across the three "hosts"; both workers run trials.
2. A network partition: worker 1's link goes down for longer than the lease while it trains. Its trial is
   failed ("lease lost") and handed to worker 2, which finishes it; when the link returns, worker 1's late
   report is refused, and worker 1 asks for new work by itself and completes a later trial.

Needs root (ip netns) and the built binaries; exits 77 (skipped) when it cannot make namespaces.
  /usr/bin/python3 tests/netns/multihost_test.py   (HPO_BIN_DIR: the build folder, default build/)
"""
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("HPO_BIN_DIR", os.path.join(ROOT, "build"))
SERVER = os.path.join(BIN, "server", "hpo-server")
WORKER = os.path.join(BIN, "worker", "hpo-worker")
CTL = os.path.join(BIN, "client", "hpoctl")
TAG = f"hpo{os.getpid() % 10000}"
NS = {"c": f"{TAG}-c", "w1": f"{TAG}-w1", "w2": f"{TAG}-w2"}
SUBNET = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"  # inside our own namespaces only
ADDR = {"c": f"{SUBNET}.1", "w1": f"{SUBNET}.11", "w2": f"{SUBNET}.12"}
PORT = 50551
procs = []


def sh(*args, check=True):
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def in_ns(ns, *args):
    return ["ip", "netns", "exec", NS[ns], *args]


def setup():
    # A bridge in the coordinator's namespace; each host a veth pair, one end in its namespace.
    for ns in NS.values():
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", NS["c"], "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", NS["c"], "link", "set", "br0", "up")
    sh("ip", "-n", NS["c"], "addr", "add", f"{ADDR['c']}/24", "dev", "br0")
    for host in ("w1", "w2"):
        sh("ip", "link", "add", f"{TAG}{host}a", "type", "veth", "peer", "name", f"{TAG}{host}b")
        sh("ip", "link", "set", f"{TAG}{host}a", "netns", NS["c"])
        sh("ip", "link", "set", f"{TAG}{host}b", "netns", NS[host])
        sh("ip", "-n", NS["c"], "link", "set", f"{TAG}{host}a", "master", "br0")
        sh("ip", "-n", NS["c"], "link", "set", f"{TAG}{host}a", "up")
        sh("ip", "-n", NS[host], "link", "set", f"{TAG}{host}b", "name", "eth0")
        sh("ip", "-n", NS[host], "addr", "add", f"{ADDR[host]}/24", "dev", "eth0")
        sh("ip", "-n", NS[host], "link", "set", "eth0", "up")


def teardown():
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    for ns in NS.values():
        sh("ip", "netns", "del", ns, check=False)


def start(host, argv, log):
    p = subprocess.Popen(in_ns(host, *argv), stdout=open(log, "w"), stderr=subprocess.STDOUT)
    procs.append(p)
    return p


SECURITY = []  # --tls_ca and --token for hpoctl, once made


def ctl(*args, host="w2", security=None):
    """hpoctl run from a worker's host, so it too crosses the network."""
    flags = SECURITY if security is None else security
    return sh(*in_ns(host, CTL, f"--coordinator={ADDR['c']}:{PORT}", *flags, *args), check=False)


def make_certificates(work):
    """A CA and a certificate for the coordinator's address, as in README "Security"."""
    def openssl(*args):
        sh("openssl", *args)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{work}/ca.key", "-out", f"{work}/ca.pem",
            "-days", "2", "-subj", "/CN=hpo netns test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{work}/server.key", "-out", f"{work}/server.csr",
            "-subj", "/CN=hpo-server")
    with open(f"{work}/server.ext", "w") as f:
        f.write(f"subjectAltName=IP:{ADDR['c']}\n")
    openssl("x509", "-req", "-in", f"{work}/server.csr", "-CA", f"{work}/ca.pem", "-CAkey", f"{work}/ca.key",
            "-CAcreateserial", "-out", f"{work}/server.pem", "-days", "2", "-extfile", f"{work}/server.ext")


def trials(study):
    r = ctl("--json", "trials", str(study))
    return json.loads(r.stdout) if r.returncode == 0 else []


def wait_for(pred, timeout, what):
    until = time.time() + timeout
    while time.time() < until:
        got = pred()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def main():
    if os.geteuid() != 0:
        print("multihost_test: needs root for ip netns; skipped")
        return 77
    for b in (SERVER, WORKER, CTL):
        if not os.path.exists(b):
            print(f"multihost_test: {b} is missing: build first", file=sys.stderr)
            return 1
    work = tempfile.mkdtemp(prefix="hpo-netns-")
    try:
        setup()
    except subprocess.CalledProcessError as e:
        teardown()
        print(f"multihost_test: cannot make network namespaces ({e.stderr.strip()}); skipped")
        return 77
    try:
        # Safe defaults: a non-loopback address without TLS and tokens is refused, saying why.
        r = sh(*in_ns("c", SERVER, f"--listen={ADDR['c']}:{PORT}", f"--db={work}/refused.db"), check=False)
        assert r.returncode == 2 and "--require_tokens" in r.stdout + r.stderr, r.stdout + r.stderr
        make_certificates(work)
        admin = sh(SERVER, f"--db={work}/hpo.db", "--new_token=admin").stdout.strip()
        # Loopback in the workers' namespaces cannot reach the coordinator: only the bridge can.
        start("c", [SERVER, f"--listen={ADDR['c']}:{PORT}", f"--db={work}/hpo.db", "--lease_timeout=4s",
                    "--heartbeat_interval=1s", f"--tls_cert={work}/server.pem", f"--tls_key={work}/server.key",
                    "--require_tokens"], f"{work}/server.log")
        tls = [f"--tls_ca={work}/ca.pem"]
        wait_for(lambda: ctl("list", security=tls + [f"--token={admin}"]).returncode == 0, 20,
                 "the coordinator to answer across the bridge")
        plain = ctl("--timeout=3s", "list", security=[f"--token={admin}"])
        assert plain.returncode == 1 and "cannot reach" in plain.stderr, "plaintext must be refused: " + plain.stderr
        anonymous = ctl("list", security=tls)
        assert "UNAUTHENTICATED" in anonymous.stderr, anonymous.stderr
        tokens = {}
        for role, host in (("worker", "w1"), ("worker", "w2"), ("reader", "reader")):
            r = ctl("token", "create", f"--role={role}", f"--note={host}", security=tls + [f"--token={admin}"])
            assert r.returncode == 0, r.stderr
            tokens[host] = r.stdout.strip()
        SECURITY[:] = tls + [f"--token={tokens['reader']}"]  # everything below reads with the reader token
        assert sh(*in_ns("w1", CTL, f"--coordinator=127.0.0.1:{PORT}", "--timeout=2s", "list"),
                  check=False).returncode != 0, "the coordinator must not be reachable on the worker's loopback"
        for host in ("w1", "w2"):
            start(host, [WORKER, f"--coordinator={ADDR['c']}:{PORT}", "--data_root=/usr/share/datasets",
                         "--threads=1", f"--worker_id={host}", f"--cache_dir={work}/cache-{host}",
                         f"--tls_ca={work}/ca.pem", f"--token={tokens[host]}"],
                  f"{work}/{host}.log")
        spec = {"name": "netns", "max_trials": 24, "sampler": {"type": "random", "seed": 5},
                "task": {"type": "cnn", "dataset": "fashion-mnist", "train_examples": 6000, "val_examples": 500,
                         "test_examples": 200, "max_epochs": 4},
                "parameters": [{"name": "learning_rate", "type": "float", "low": 0.0005, "high": 0.005, "log": True},
                               {"name": "filters", "type": "int", "low": 8, "high": 16, "step": 8}]}
        spec_path = f"{work}/spec.json"
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        # A reader may not create studies, from any host.
        r = ctl("create", spec_path, host="c")
        assert r.returncode == 1 and "PERMISSION_DENIED" in r.stderr and "admin" in r.stderr, r.stderr
        # hpoctl reads the spec file on its own side: run it in the coordinator's namespace.
        r = sh(*in_ns("c", CTL, f"--coordinator={ADDR['c']}:{PORT}", *tls, f"--token={admin}", "create", spec_path),
               check=False)
        assert r.returncode == 0, r.stderr
        study = int(r.stdout.strip().splitlines()[-1])

        # The partition: wait until worker 1 is in a trial's second epoch, then cut its link for 7 s (> lease 4 s).
        def w1_mid_trial():
            for t in trials(study):
                if t["worker"] == "w1" and t["state"] == "RUNNING" and len(t["values"]) >= 1:
                    return t
            return None
        cut = wait_for(w1_mid_trial, 240, "worker 1 to be in a trial")
        w1_done_before = sum(t["worker"] == "w1" and t["state"] == "COMPLETED" for t in trials(study))
        sh("ip", "-n", NS["w1"], "link", "set", "eth0", "down")
        cut_at = time.time()
        failed = wait_for(lambda: next((t for t in trials(study) if t["trial"] == cut["trial"] and
                                        t["state"] == "FAILED"), None), 20, "the cut-off trial to lose its lease")
        assert "lease lost" in failed["reason"], failed["reason"]
        time.sleep(max(0.0, 7 - (time.time() - cut_at)))
        sh("ip", "-n", NS["w1"], "link", "set", "eth0", "up")

        watch = ctl("watch", str(study), "--interval=1s")
        assert watch.returncode == 0, watch.stderr
        final = trials(study)
        retry = [t for t in final if t.get("retry_of") == cut["trial"]]
        assert len(retry) == 1 and retry[0]["state"] == "COMPLETED", json.dumps(final, indent=1)
        assert retry[0]["params"] == cut["params"], "the retry runs the same configuration"
        finished = [t for t in final if t["state"] == "COMPLETED"]
        assert len(finished) == 24, json.dumps(final, indent=1)
        assert {t["worker"] for t in finished} == {"w1", "w2"}, "both hosts ran trials"
        # Worker 1 asked for new work by itself after the link returned, and finished a later trial.
        w1_log = open(f"{work}/w1.log").read()
        w1_done = sum(t["worker"] == "w1" for t in finished)
        assert w1_done > w1_done_before, f"worker 1 completed {w1_done} trials, {w1_done_before} before the cut"
        assert ("took the trial back" in w1_log or "refused the measurement" in w1_log), \
            "worker 1's late report must be refused: " + w1_log[-3000:]
        print(f"multihost_test: study {study} finished across 3 namespaces over TLS with tokens; trial {cut['trial']} lost its lease "
              f"during the partition and was retried as trial {retry[0]['trial']} on {retry[0]['worker']}; "
              f"worker 1 ran {len([t for t in finished if t['worker'] == 'w1'])} trials")
        return 0
    except AssertionError as e:
        print(f"multihost_test FAILED: {e}", file=sys.stderr)
        for name in ("server", "w1", "w2"):
            try:
                print(f"==== {name}.log ====\n" + open(f"{work}/{name}.log").read()[-4000:], file=sys.stderr)
            except OSError:
                pass
        return 1
    finally:
        teardown()


if __name__ == "__main__":
    sys.exit(main())
