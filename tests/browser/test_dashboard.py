#!/usr/bin/python3
"""The dashboard in a real browser: headless Chromium (Debian's chromium + chromium-driver) driven by
python3-selenium, against a real two-worker study on Fashion-MNIST.

Run: /usr/bin/python3 tests/browser/test_dashboard.py
Binaries come from $HPO_SERVER_BIN, $HPO_WORKER_BIN and $HPO_CTL_BIN (default: build/...). Screenshots go
to $HPO_SCREENSHOT_DIR (default: a temporary folder, printed). The data root is $HPO_DATA_ROOT
(default /usr/share/datasets); without fashion-mnist there the test is skipped.
"""
import json
import os
import shutil
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SERVER_BIN = os.environ.get("HPO_SERVER_BIN", os.path.join(ROOT, "build", "server", "hpo-server"))
WORKER_BIN = os.environ.get("HPO_WORKER_BIN", os.path.join(ROOT, "build", "worker", "hpo-worker"))
CTL_BIN = os.environ.get("HPO_CTL_BIN", os.path.join(ROOT, "build", "client", "hpoctl"))
DATA_ROOT = os.environ.get("HPO_DATA_ROOT", "/usr/share/datasets")

SPEC = {
    "name": "browser-test",
    "objective": {"metric": "val_accuracy", "direction": "maximize"},
    "task": {"type": "cnn", "dataset": "fashion-mnist", "train_examples": 1000, "val_examples": 500,
             "test_examples": 500, "max_epochs": 3},
    "parameters": [
        {"name": "learning_rate", "type": "float", "low": 0.0005, "high": 0.05, "log": True},
        {"name": "optimizer", "type": "categorical", "choices": ["adam", "sgd"]},
        {"name": "filters", "type": "int", "low": 8, "high": 16, "step": 8},
    ],
    "sampler": {"type": "random", "seed": 3},
    # Stops a trial still below 0.6 after its second epoch: (with this seed) a pruned trial to mark.
    "pruner": {"type": "threshold", "lower": 0.6, "warmup_steps": 1},
    "max_trials": 4,
    "max_minutes": 60,  # never runs out here: the page shows what is left of it
}

CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,2600"]


def wait_for(what, predicate, timeout=60, interval=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # a page still loading, a server still starting
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def read(path):
    with open(path) as f:
        return f.read().strip()


class DashboardTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        for b in (SERVER_BIN, WORKER_BIN, CTL_BIN):
            if not os.access(b, os.X_OK):
                raise unittest.SkipTest(f"no binary at {b}")
        if not os.path.isdir(os.path.join(DATA_ROOT, "fashion-mnist")):
            raise unittest.SkipTest(f"no fashion-mnist under {DATA_ROOT}")
        from selenium import webdriver  # python3-selenium
        from selenium.webdriver.chrome.service import Service
        cls.dir = tempfile.mkdtemp(prefix="hpo-browser-")
        cls.shots = os.environ.get("HPO_SCREENSHOT_DIR") or os.path.join(cls.dir, "screenshots")
        os.makedirs(cls.shots, exist_ok=True)
        cls.procs = []
        cls.logs = []
        port_file, http_file = os.path.join(cls.dir, "port"), os.path.join(cls.dir, "http_port")
        cls.start([SERVER_BIN, "--listen=127.0.0.1:0", f"--port_file={port_file}", "--http=127.0.0.1:0",
                   f"--http_port_file={http_file}", f"--db={os.path.join(cls.dir, 'hpo.db')}"], "server")
        cls.port = int(wait_for("the server's port", lambda: read(port_file), 15))
        cls.http = int(wait_for("the HTTP port", lambda: read(http_file), 15))
        cls.base = f"http://127.0.0.1:{cls.http}"
        spec_path = os.path.join(cls.dir, "spec.json")
        with open(spec_path, "w") as f:
            json.dump(SPEC, f)
        out = subprocess.run([CTL_BIN, f"--coordinator=127.0.0.1:{cls.port}", "create", spec_path],
                             check=True, capture_output=True, text=True).stdout
        cls.study = int(out.strip().splitlines()[-1])
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in CHROME_FLAGS + [f"--user-data-dir={os.path.join(cls.dir, 'chromium-profile')}"]:
            options.add_argument(flag)
        cls.driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        cls.driver.set_page_load_timeout(30)

    @classmethod
    def start(cls, argv, name):
        log = open(os.path.join(cls.dir, name + ".log"), "w")
        cls.logs.append(log)
        cls.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))

    @classmethod
    def tearDownClass(cls):
        driver = getattr(cls, "driver", None)
        if driver is not None:
            driver.quit()
        for p in reversed(getattr(cls, "procs", [])):
            p.terminate()
        for p in reversed(getattr(cls, "procs", [])):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in getattr(cls, "logs", []):
            log.close()
        print(f"screenshots in {cls.shots}", file=sys.stderr)
        if not os.environ.get("HPO_KEEP"):
            shutil.rmtree(os.path.join(cls.dir, "chromium-profile"), ignore_errors=True)

    # ---- helpers ----
    def api(self, path):
        with urllib.request.urlopen(self.base + path, timeout=10) as r:
            return json.load(r)

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def shot(self, name):
        self.driver.save_screenshot(os.path.join(self.shots, name + ".png"))

    def stored_curves(self, metric):
        """{trial number: [[step, value], ...]} from the API, as the curves chart should hold them."""
        out = {}
        for t in self.api(f"/api/studies/{self.study}/trials"):
            points = [[m["step"], m["metrics"][metric]] for m in t["measurements"] if m["metrics"].get(metric) is not None]
            if points:
                out[t["number"]] = points
        return out

    def drawn_curves(self):
        return self.js("""
            const c = window.hpoDashboard && window.hpoDashboard.charts.curves;
            if (!c) return null;
            const out = {};
            for (const s of c.getOption().series) {
              if (!s || s.type !== 'line') continue;  // series removed by a filter leave holes
              out[s.id.slice(2)] = s.data.map(d => d.value);
            }
            return out;""")

    def curves_match_api(self, metric="val_accuracy"):
        stored = self.stored_curves(metric)
        drawn = self.drawn_curves()
        if drawn is None:
            return False
        drawn = {int(k): v for k, v in drawn.items()}
        return (stored == drawn) and stored

    def test_dashboard(self):
        d = self.driver
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select

        # The study list.
        d.get(self.base + "/")
        wait_for("the study in the list", lambda: d.find_elements(By.CSS_SELECTOR, f"#studies tr[data-study='{self.study}']"), 20)
        self.shot("study-list")

        # The study page, open before the workers start (a trial takes seconds here).
        d.get(f"{self.base}/studies/{self.study}")
        wait_for("the empty study page", lambda: self.js("return window.hpoDashboard.updates") > 0, 20)
        budget_card = lambda: self.js(
            "return [...document.querySelectorAll('#cards .card')].map(c => c.textContent).find(t => t.startsWith('time budget'))")
        self.assertEqual(budget_card(), "time budget60 min, from the first trial")
        workers = []
        for i in range(2):
            self.start([WORKER_BIN, f"--coordinator=127.0.0.1:{self.port}", f"--data_root={DATA_ROOT}",
                        "--threads=1", f"--worker_id=browser-w{i}", "--cache_dir=none"], f"worker{i}")
            workers.append(self.procs[-1])
        # An epoch takes a fraction of a second here, so the workers are paused (SIGSTOP, far
        # shorter than the lease) at the first stored epoch, and the page is checked against a
        # study that stands still.
        wait_for("a first measurement", lambda: self.stored_curves("val_accuracy"), 120, 0.02)
        for w in workers:
            w.send_signal(signal.SIGSTOP)
        try:
            # The curves hold the stored points...
            wait_for("the curves to hold the stored points", self.curves_match_api, 10, 0.05)
            self.shot("study-live")
            before = sum(len(v) for v in self.stored_curves("val_accuracy").values())
        finally:
            for w in workers:
                w.send_signal(signal.SIGCONT)
        # ... and grow within 2 s of a new epoch being stored.
        wait_for("a new epoch", lambda: sum(len(v) for v in self.stored_curves("val_accuracy").values()) > before, 120, 0.02)
        grown_at = time.monotonic()
        wait_for("the new epoch on the page", lambda: self.js("return window.hpoDashboard.curvePoints") > before, 5, 0.05)
        delay = time.monotonic() - grown_at
        print(f"a new epoch showed on the page {delay:.2f} s after it was stored", file=sys.stderr)
        self.assertLess(delay, 2.0, "a new measurement took 2 s or more to show")

        # Let the study finish, then every curve holds exactly the stored points.
        wait_for("the study to finish", lambda: self.api(f"/api/studies/{self.study}")["state"] == "completed", 300, 0.5)
        wait_for("the final curves", self.curves_match_api, 10)
        # The budget started with the first trial: the seconds to a minute the study took are used.
        left = wait_for("the time left", lambda: re.fullmatch(r"time budget(\d+\.\d) of 60 min left", budget_card() or ""), 5)
        self.assertTrue(45 < float(left.group(1)) <= 60, left.group(0))
        trials = self.api(f"/api/studies/{self.study}/trials")
        states = {t["number"]: t["state"] for t in trials}
        wait_for("the trials table", lambda: len(d.find_elements(By.CSS_SELECTOR, "#trials tbody tr")) == len(trials), 10)
        for t in trials:
            if t["state"] == "pruned":
                self.assertTrue(t["reason"], t)
        pruned_marks = self.js("return window.hpoDashboard.charts.curves.getOption().series.find(s => s && s.id === 'c-pruned').data.length")
        self.assertEqual(pruned_marks, sum(1 for s in states.values() if s == "pruned"))
        wait_for("the diagnosis", lambda: d.find_elements(By.CSS_SELECTOR, "#diagnosis .finding, #diagnosis p"), 10)
        time.sleep(1.5)
        d.execute_script("window.scrollTo(0, 0)")
        self.shot("study")

        # Hover a point of trial 0's curve: the tooltip names the trial and its parameters.
        t0 = trials[0]
        last = [m for m in t0["measurements"]][-1]
        d.execute_script("document.getElementById('curves').scrollIntoView({block: 'center'})")
        x, y = self.js("return window.hpoDashboard.charts.curves.convertToPixel({seriesId: 'c-0'}, arguments[0])",
                       [last["step"], last["metrics"]["val_accuracy"]])
        node = d.find_element(By.ID, "curves")
        w, h = node.size["width"], node.size["height"]
        ActionChains(d).move_to_element_with_offset(node, int(x - w / 2), int(y - h / 2)).perform()

        def tooltip_text():
            for e in d.find_elements(By.CSS_SELECTOR, "#curves .hpo-tooltip"):
                if e.is_displayed() and e.text.strip():
                    return e.text
            return None
        text = wait_for("the tooltip", tooltip_text, 5)
        self.assertIn("trial 0", text)
        for name in t0["params"]:
            self.assertIn(name, text)
        self.shot("hover")

        # The state filter: unchecking completed hides completed trials from the curves and the table.
        box = d.find_element(By.ID, "filter-completed")
        d.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
        box.click()
        shown = {n for n, s in states.items() if s != "completed"}
        wait_for("the filter", lambda: {int(k) for k in self.drawn_curves()} == {n for n in shown if n in self.stored_curves("val_accuracy")}, 5)
        # Read in one script: the table is redrawn every second, so elements found earlier can go stale.
        rows_shown = lambda: set(self.js(
            "return [...document.querySelectorAll('#trials tbody tr')].map(r => Number(r.dataset.trial))"))
        wait_for("the filtered table", lambda: rows_shown() == shown, 5)
        self.assertEqual(rows_shown(), shown)
        self.shot("filtered")
        box.click()
        wait_for("the filter off", self.curves_match_api, 5)

        # The metric on the curves: val_loss.
        Select(d.find_element(By.ID, "metric")).select_by_value("val_loss")
        wait_for("val_loss curves", lambda: {int(k): v for k, v in self.drawn_curves().items()} == self.stored_curves("val_loss"), 5)
        self.assertEqual(self.js("return window.hpoDashboard.charts.curves.getOption().yAxis[0].name"), "val_loss")

        # Click a point: the trial's page, with its curves, parameters and per-class figures.
        best = self.api(f"/api/studies/{self.study}")["best"]["trial"]
        d.execute_script("window.hpoDashboard.charts.curves.dispatchAction({type: 'downplay'})")
        Select(d.find_element(By.ID, "metric")).select_by_value("val_accuracy")
        tb = trials[best]
        lm = tb["measurements"][-1]
        time.sleep(0.3)
        x, y = self.js("return window.hpoDashboard.charts.curves.convertToPixel({seriesId: 'c-' + arguments[1]}, arguments[0])",
                       [lm["step"], lm["metrics"]["val_accuracy"]], best)
        ActionChains(d).move_to_element_with_offset(node, int(x - w / 2), int(y - h / 2)).click().perform()
        wait_for("the trial page", lambda: d.current_url.endswith(f"/studies/{self.study}/trials/{best}"), 10)
        wait_for("the trial's curves", lambda: self.js(
            "const c = window.hpoDashboard.charts.val; return c && c.getOption().series.length > 0"), 10)
        self.assertEqual(self.js("return document.querySelectorAll('#params tr').length"), len(tb["params"]))
        time.sleep(1)
        self.shot("trial")

        # No page raised a script error or failed to load a file.
        severe = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
        self.assertEqual(severe, [])

    def test_unknown_pages_and_ids(self):
        """A page for a study that does not exist says so; unknown addresses are 404 with JSON."""
        d = self.driver
        from selenium.webdriver.common.by import By
        d.get(self.base + "/studies/987654")
        box = wait_for("the error box", lambda: d.find_elements(By.CSS_SELECTOR, ".error-box"), 10)
        self.assertIn("987654", box[0].text)
        for path, status in (("/nope", 404), ("/api/studies/987654", 404), ("/api/studies/1/trials?state=x", 400)):
            with self.assertRaises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(self.base + path, timeout=10)
            self.assertEqual(e.exception.code, status, path)
            self.assertIn("error", json.load(e.exception))


if __name__ == "__main__":
    unittest.main()
