#!/usr/bin/python3
"""Tests of examples/python/hpo_client.py against a real hpo-server.

Run: /usr/bin/python3 tests/python/test_hpo_client.py
The server binary comes from $HPO_SERVER_BIN (default /tmp/hpo-bin/hpo-server); each test starts its own
server on a temporary database and a free port and kills it afterwards.
"""
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.normpath(os.path.join(HERE, "..", "..", "examples", "python")))
import hpo_client  # noqa: E402

SERVER_BIN = os.environ.get("HPO_SERVER_BIN", "/tmp/hpo-bin/hpo-server")


def quadratic(params):
    return (params["x"] - 1.0) ** 2 + (params["y"] - 2.0) ** 2


def external_spec(name, parameters, max_trials, seed=7, **extra):
    spec = {"name": name, "objective": {"direction": "minimize"}, "task": {"type": "external"},
            "parameters": parameters, "sampler": {"type": "random", "seed": seed}, "max_trials": max_trials}
    spec.update(extra)
    return spec


XY = [{"name": "x", "type": "float", "low": -2, "high": 3},
      {"name": "y", "type": "float", "low": -1, "high": 4}]


class HpoClientTest(unittest.TestCase):

    def setUp(self):
        if not os.access(SERVER_BIN, os.X_OK):
            self.fail(f"no hpo-server binary at {SERVER_BIN} (set HPO_SERVER_BIN)")
        self.dir = tempfile.mkdtemp(prefix="hpo-pytest-")
        self.server = None
        self.start_server()

    def start_server(self, *flags):
        """(Re)starts hpo-server on a fresh database and port 0; sets self.addr."""
        self.stop_server()
        run_dir = tempfile.mkdtemp(dir=self.dir)
        port_file = os.path.join(run_dir, "port")
        self.log = open(os.path.join(run_dir, "server.log"), "w")
        self.server = subprocess.Popen(
            [SERVER_BIN, "--listen=127.0.0.1:0", f"--port_file={port_file}",
             f"--db={os.path.join(run_dir, 'hpo.db')}", "--log_level=warn", *flags],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        port = ""
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                with open(self.log.name) as f:
                    self.fail(f"hpo-server exited with {self.server.returncode}: {f.read()}")
            if os.path.exists(port_file):
                with open(port_file) as f:
                    port = f.read().strip()
                if port:
                    break
            time.sleep(0.02)
        self.assertTrue(port, "hpo-server did not write its port file within 10 s")
        self.addr = f"127.0.0.1:{port}"

    def stop_server(self):
        if self.server is not None:
            self.server.kill()
            self.server.wait()
            self.log.close()
            self.server = None

    def tearDown(self):
        self.stop_server()
        shutil.rmtree(self.dir, ignore_errors=True)

    def trials(self, study):
        return hpo_client.list_trials(self.addr, study)

    # ------------------------------------------------------------------ tests

    def test_random_quadratic_study_finishes_with_the_best_trial(self):
        study = hpo_client.create_study(self.addr, external_spec("quad", XY, 20))
        self.assertIsInstance(study, int)

        def objective(params, report):
            v = quadratic(params)
            self.assertFalse(report(0, v + 1.0))  # a worse first step; the returned value becomes step 1
            return v

        ran = hpo_client.run_worker(self.addr, study, objective)
        self.assertEqual(ran, 20)
        trials = self.trials(study)
        self.assertEqual(len(trials), 20)
        self.assertEqual([t["trial"] for t in trials], list(range(20)))
        self.assertTrue(all(t["state"] == "COMPLETED" for t in trials), [t["state"] for t in trials])
        for t in trials:
            v = quadratic(t["params"])
            self.assertEqual([m["step"] for m in t["measurements"]], [0, 1])
            self.assertAlmostEqual(t["values"][0], v + 1.0, places=12)
            self.assertAlmostEqual(t["value"], v, places=12)
            self.assertEqual(t["best_step"], 1)
        self.assertEqual(len({(t["params"]["x"], t["params"]["y"]) for t in trials}), 20)

        best = hpo_client.best_trial(self.addr, study)
        self.assertEqual(best["state"], "COMPLETED")
        self.assertEqual(best["value"], min(t["value"] for t in trials))
        self.assertEqual(best["trial"], min(trials, key=lambda t: t["value"])["trial"])
        self.assertAlmostEqual(best["value"], quadratic(best["params"]), places=12)
        self.assertTrue(-2 <= best["params"]["x"] <= 3 and -1 <= best["params"]["y"] <= 4, best["params"])
        self.assertEqual(len(best["values"]), 2)

        s = hpo_client.get_study(self.addr, study)
        self.assertEqual(s["state"], "COMPLETED")
        self.assertEqual(s["counts"]["completed"], 20)
        self.assertEqual(s["best_value"], best["value"])
        # The study is finished: another worker returns at once without running anything.
        self.assertEqual(hpo_client.run_worker(self.addr, study, objective), 0)

    def test_value_returned_without_reports_is_reported_as_step_0(self):
        study = hpo_client.create_study(self.addr, external_spec("plain", XY, 3))
        self.assertEqual(hpo_client.run_worker(self.addr, study, lambda p, r: quadratic(p)), 3)
        for t in self.trials(study):
            self.assertEqual(t["state"], "COMPLETED")
            self.assertEqual([m["step"] for m in t["measurements"]], [0])
            self.assertAlmostEqual(t["value"], quadratic(t["params"]), places=12)

    def test_raising_objective_fails_its_trials_and_the_worker_goes_on(self):
        study = hpo_client.create_study(self.addr, external_spec("flaky", XY, 9))
        calls = []

        def objective(params, report):
            calls.append(1)
            n = len(calls) - 1
            if n % 3 == 1:
                raise ValueError(f"boom on call {n}")
            if n % 3 == 2:
                report(0, 5.0)
                raise RuntimeError(f"late boom on call {n}")
            return quadratic(params)

        ran = hpo_client.run_worker(self.addr, study, objective)
        self.assertEqual(ran, 9)
        trials = self.trials(study)
        self.assertEqual(len(trials), 9)
        for t in trials:
            if t["trial"] % 3 == 0:
                self.assertEqual(t["state"], "COMPLETED", t)
            else:
                self.assertEqual(t["state"], "FAILED", t)
                kind = "ValueError: boom" if t["trial"] % 3 == 1 else "RuntimeError: late boom"
                self.assertEqual(t["reason"], f"{kind} on call {t['trial']}")
                self.assertEqual(t["retry_of"], -1)
        s = hpo_client.get_study(self.addr, study)
        self.assertEqual(s["state"], "COMPLETED")
        self.assertEqual(s["counts"]["failed"], 6)
        self.assertEqual(s["counts"]["completed"], 3)
        self.assertEqual(hpo_client.best_trial(self.addr, study)["trial"] % 3, 0)

    def test_median_pruner_prunes_bad_curves(self):
        study = hpo_client.create_study(self.addr, external_spec(
            "prune", XY, 10, pruner={"type": "median", "startup_trials": 2}))
        calls = []
        answers = {}  # call number -> what report() returned, step by step

        def objective(params, report):
            n = len(calls)
            calls.append(n)
            bad = n >= 3 and n % 2 == 1
            answers[n] = []
            for step in range(1, 6):
                value = 10.0 + step if bad else 1.0 / step  # every good trial has the same curve
                stop = report(step, value)
                answers[n].append(stop)
                if stop:
                    answers[n].append(report(step + 1, 0.0))  # sends nothing, still says stop
                    return value
            return 1.0 / 5

        ran = hpo_client.run_worker(self.addr, study, objective)
        self.assertEqual(ran, 10)
        bad = {n for n in range(10) if n >= 3 and n % 2 == 1}
        for n in range(10):
            if n in bad:
                self.assertEqual(answers[n], [True, True], n)  # pruned at the first judged step
            else:
                self.assertEqual(answers[n], [False] * 5, n)
        trials = self.trials(study)
        self.assertEqual(len(trials), 10)
        for t in trials:
            if t["trial"] in bad:
                self.assertEqual(t["state"], "PRUNED", t)
                self.assertIn("median", t["reason"])
                self.assertEqual([m["step"] for m in t["measurements"]], [1])  # nothing sent after the prune
            else:
                self.assertEqual(t["state"], "COMPLETED", t)
                self.assertEqual(len(t["measurements"]), 5)
        s = hpo_client.get_study(self.addr, study)
        self.assertEqual(s["state"], "COMPLETED")
        self.assertEqual((s["counts"]["pruned"], s["counts"]["completed"]), (len(bad), 10 - len(bad)))

    def test_bad_spec_raises_invalid_argument(self):
        bad = external_spec("bad", [{"name": "x", "type": "float", "low": 1, "high": 1}], 5)
        with self.assertRaises(hpo_client.HpoError) as cm:
            hpo_client.create_study(self.addr, bad)
        self.assertEqual(cm.exception.code, "INVALID_ARGUMENT")
        self.assertIn("INVALID_ARGUMENT", str(cm.exception))
        self.assertIn("must be below high", str(cm.exception))
        with self.assertRaises(hpo_client.HpoError) as cm:
            hpo_client.create_study(self.addr, dict(external_spec("typo", XY, 5), max_trial=3))
        self.assertIn("INVALID_ARGUMENT", str(cm.exception))
        self.assertIn("max_trial", str(cm.exception))
        with self.assertRaises(hpo_client.HpoError) as cm:
            hpo_client.best_trial(self.addr, 12345)
        self.assertIn("NOT_FOUND", str(cm.exception))

    def test_conditional_parameter_only_with_its_parent_value(self):
        params = [{"name": "opt", "type": "categorical", "choices": ["adam", "sgd"]},
                  {"name": "momentum", "type": "float", "low": 0, "high": 0.99,
                   "condition": {"parent": "opt", "values": ["sgd"]}},
                  {"name": "lr", "type": "float", "low": 1e-4, "high": 1e-1, "log": True}]
        study = hpo_client.create_study(self.addr, external_spec("cond", params, 30, seed=3))
        seen = []

        def objective(p, report):
            seen.append(dict(p))
            return p["lr"] + p.get("momentum", 0.0)

        self.assertEqual(hpo_client.run_worker(self.addr, study, objective), 30)
        trials = self.trials(study)
        self.assertEqual([t["params"] for t in trials], [dict(sorted(p.items())) for p in seen])
        opts = set()
        for t in trials:
            p = t["params"]
            opts.add(p["opt"])
            self.assertIn(p["opt"], ("adam", "sgd"))
            self.assertEqual("momentum" in p, p["opt"] == "sgd", p)
            if "momentum" in p:
                self.assertTrue(0 <= p["momentum"] <= 0.99, p)
            self.assertTrue(1e-4 <= p["lr"] <= 1e-1, p)
        self.assertEqual(opts, {"adam", "sgd"})

    def test_heartbeats_keep_a_long_trial_and_a_stopped_study_stops_it(self):
        # Leases of 2 s: a trial that runs 4.5 s survives only if the heartbeat thread renews it
        # (generous margins, so a loaded CI machine does not lose a lease by a late heartbeat).
        self.start_server("--heartbeat_interval=300ms", "--lease_timeout=2s")
        study = hpo_client.create_study(self.addr, external_spec("slow", XY, 2))
        answers = []

        def objective(params, report):
            answers.append(report(0, 3.0))
            time.sleep(4.5)
            if len(answers) == 1:
                answers.append(report(1, 2.0))
                return 1.0
            hpo_client.stop_study(self.addr, study)
            deadline = time.monotonic() + 3
            while not report(2, 1.0) and time.monotonic() < deadline:
                time.sleep(0.05)
            answers.append(report(3, 0.5))
            return 0.5

        self.assertEqual(hpo_client.run_worker(self.addr, study, objective), 2)
        self.assertEqual(answers, [False, False, False, True])
        first, second = self.trials(study)
        self.assertEqual(first["state"], "COMPLETED", first)
        self.assertEqual([m["step"] for m in first["measurements"]], [0, 1, 2])
        self.assertEqual(first["value"], 1.0)
        self.assertEqual(second["state"], "FAILED", second)
        self.assertIn("stopped", second["reason"])
        self.assertEqual([m["step"] for m in second["measurements"]], [0])
        self.assertEqual(hpo_client.get_study(self.addr, study)["state"], "STOPPED")

    def test_unreachable_coordinator_is_a_clear_error(self):
        with self.assertRaises(hpo_client.HpoError) as cm:
            hpo_client.create_study("127.0.0.1:1", external_spec("x", XY, 1), connect_timeout=0.3)
        self.assertEqual(cm.exception.code, "UNAVAILABLE")
        self.assertIn("cannot reach the coordinator at 127.0.0.1:1", str(cm.exception))
        with self.assertRaises(hpo_client.HpoError) as cm:
            hpo_client.run_worker("127.0.0.1:1", 1, lambda p, r: 0.0, unavailable_timeout=0.3)
        self.assertIn("cannot reach the coordinator", str(cm.exception))

    def test_worker_for_an_unknown_study_raises_not_found(self):
        with self.assertRaises(hpo_client.HpoError) as cm:
            hpo_client.run_worker(self.addr, 999, lambda p, r: 0.0)
        self.assertEqual(cm.exception.code, "NOT_FOUND")

    def test_tls_and_tokens_with_roles(self):
        """hpo-server with TLS and --require_tokens (README "Security"): the admin makes tokens, a worker
        token runs the study over TLS, a reader reads, and the rest is refused with the right status."""
        certs = os.path.join(self.dir, "certs")
        os.mkdir(certs)

        def openssl(*args):
            subprocess.run(["openssl", *args], cwd=certs, check=True, capture_output=True)

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
                "-days", "2", "-subj", "/CN=hpo test CA")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
                "-subj", "/CN=hpo-server")
        with open(os.path.join(certs, "san.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
        ca = os.path.join(certs, "ca.pem")
        tokens_db = os.path.join(self.dir, "tokens.db")
        made = subprocess.run([SERVER_BIN, f"--db={os.path.join(self.dir, 'unused.db')}",
                               f"--tokens_db={tokens_db}", "--new_token=admin"],
                              check=True, capture_output=True, text=True)
        admin = made.stdout.strip()
        self.start_server(f"--tls_cert={os.path.join(certs, 'server.pem')}",
                          f"--tls_key={os.path.join(certs, 'server.key')}", "--require_tokens",
                          f"--tokens_db={tokens_db}")

        spec = external_spec("secured", XY, 4)
        study = hpo_client.create_study(self.addr, spec, token=admin, tls_ca=ca)
        import hpo
        with hpo.Client(self.addr, token=admin, tls_ca=ca) as c:
            worker = c.create_token("worker", study=study, note="py worker")
            reader = c.create_token("reader")
            self.assertEqual([t["role"] for t in c.list_tokens()], ["admin", "worker", "reader"])
        # No token, a reader creating, and plaintext: each refused with its own status.
        with self.assertRaises(hpo_client.HpoError) as cm:
            hpo_client.get_study(self.addr, study, tls_ca=ca)
        self.assertEqual(cm.exception.code, "UNAUTHENTICATED")
        with self.assertRaises(hpo_client.HpoError) as cm:
            hpo_client.create_study(self.addr, spec, token=reader, tls_ca=ca)
        self.assertEqual(cm.exception.code, "PERMISSION_DENIED")
        self.assertIn("admin", str(cm.exception))
        with self.assertRaises(hpo_client.HpoError) as cm:
            hpo_client.get_study(self.addr, study, token=reader, connect_timeout=0.5)
        self.assertEqual(cm.exception.code, "UNAVAILABLE")
        self.assertIn("tls_ca", str(cm.exception))

        # The worker token (from HPO_TOKEN) runs the whole study over TLS; the reader reads it.
        os.environ["HPO_TOKEN"] = worker
        try:
            ran = hpo_client.run_worker(self.addr, study, lambda p, report: quadratic(p), tls_ca=ca)
        finally:
            del os.environ["HPO_TOKEN"]
        self.assertEqual(ran, 4)
        got = hpo_client.get_study(self.addr, study, token=reader, tls_ca=ca)
        self.assertEqual(got["state"], "COMPLETED")
        self.assertEqual(len(hpo_client.list_trials(self.addr, study, token=reader, tls_ca=ca)), 4)
        with hpo.Client(self.addr, token=admin, tls_ca=ca) as c:
            c.revoke_token(3)
        with self.assertRaises(hpo_client.HpoError) as cm:
            hpo_client.get_study(self.addr, study, token=reader, tls_ca=ca)
        self.assertEqual(cm.exception.code, "UNAUTHENTICATED")
        self.assertIn("revoked", str(cm.exception))


if __name__ == "__main__":
    logging.getLogger("hpo_client").setLevel(logging.ERROR)  # the failing-objective test warns on purpose
    unittest.main(verbosity=2)
