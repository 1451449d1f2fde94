// The hpo dashboard: three pages routed by location.pathname, fed by the read-only JSON API under
// /api/ (server/http/api.h), polled once a second. Every chart is an ECharts option: no drawing
// code here. Text from the coordinator goes into the page with textContent, and into chart
// tooltips through echarts.format.encodeHTML.
"use strict";

(function () {
  const POLL_MS = 1000;
  const STATES = ["completed", "pruned", "running", "failed", "waiting"];
  const COLORS = { completed: "#2563eb", pruned: "#ea8c00", running: "#16a34a", failed: "#dc2626", waiting: "#9ca3af" };
  // A cross, for where a pruned trial was stopped (a filled path: ECharts fills symbols).
  const CROSS = "path://M2,0 L5,3 L8,0 L10,2 L7,5 L10,8 L8,10 L5,7 L2,10 L0,8 L3,5 L0,2 Z";

  const app = document.getElementById("app");
  const crumbs = document.getElementById("crumbs");
  const statusEl = document.getElementById("status");
  const esc = (s) => (window.echarts ? echarts.format.encodeHTML(String(s)) : String(s).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";"));

  // State shared with the browser test (tests/browser/): the charts and the data they were drawn from.
  const dash = (window.hpoDashboard = { charts: {}, trials: [], study: null, updates: 0, metric: null, states: null });

  // ---- small DOM helpers ----
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }
  function fmt(v, digits) {
    if (v === null || v === undefined) return "–";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
    return v.toFixed(digits === undefined ? 4 : digits);
  }
  function paramsText(params) {
    return Object.entries(params || {}).map(([k, v]) => k + "=" + fmt(v)).join(", ");
  }
  function stateBadge(state) { return el("span", { class: "state " + state, text: state }); }
  function setCrumbs(parts) {
    crumbs.replaceChildren();
    parts.forEach((p, i) => {
      if (i > 0) crumbs.append(el("span", { class: "sep", text: "/" }));
      crumbs.append(p.href ? el("a", { href: p.href, text: p.text }) : el("span", { text: p.text }));
    });
  }
  async function getJson(url) {
    const r = await fetch(url, { cache: "no-store" });
    const body = await r.json().catch(() => ({ error: r.statusText }));
    if (!r.ok) throw Object.assign(new Error(body.error || r.statusText), { status: r.status });
    return body;
  }
  function chart(id, node) {
    if (!window.echarts) { node.textContent = window.HPO_NO_CHARTS || "charts unavailable"; return null; }
    const c = echarts.init(node, null, { renderer: "canvas" });
    dash.charts[id] = c;
    window.addEventListener("resize", () => c.resize());
    return c;
  }
  function poll(fn) {
    let stopped = false;
    const tick = async () => {
      if (stopped) return;
      try {
        await fn();
        statusEl.textContent = "updated " + new Date().toLocaleTimeString();
        statusEl.classList.remove("error");
      } catch (e) {
        statusEl.textContent = e.status === 404 ? "not found" : "coordinator unreachable: " + e.message;
        statusEl.classList.add("error");
        if (e.status === 404) { showError(e.message); stopped = true; return; }
      }
      setTimeout(tick, POLL_MS);
    };
    tick();
  }
  function showError(message) {
    app.replaceChildren(el("div", { class: "error-box", text: message }));
  }

  // ---- data helpers ----
  // The value of `metric` in a measurement ("value" is the study's objective).
  function metricOf(m, metric) {
    if (metric === "value") return m.value;
    const v = m.metrics ? m.metrics[metric] : undefined;
    return v === undefined ? null : v;
  }
  function metricNames(trials, objective) {
    const names = new Set();
    for (const t of trials) for (const m of t.measurements || []) for (const k of Object.keys(m.metrics || {})) names.add(k);
    const list = [...names].sort((a, b) => {
      const rank = (n) => (n === objective ? 0 : n.startsWith("val_") ? 1 : n.startsWith("train_") ? 2 : 3);
      return rank(a) - rank(b) || a.localeCompare(b);
    });
    if (!list.includes(objective)) list.unshift("value");
    return list;
  }
  function trialTooltip(t, extra) {
    let s = "<b>trial " + t.number + "</b> · " + esc(t.state);
    if (extra) s += "<br>" + extra;
    if (t.value !== null && t.value !== undefined) s += "<br>value " + esc(fmt(t.value));
    const p = Object.entries(t.params || {});
    if (p.length) s += "<br>" + p.map(([k, v]) => esc(k) + " = <b>" + esc(fmt(v)) + "</b>").join("<br>");
    if (t.reason) s += "<br><i>" + esc(t.reason.slice(0, 200)) + "</i>";
    return s;
  }
  function tooltipBase() {
    return { trigger: "item", className: "hpo-tooltip", confine: true, enterable: false };
  }
  function goTrial(studyId, number) { location.href = "/studies/" + studyId + "/trials/" + number; }

  // ---- page: the study list ----
  function studyListPage() {
    setCrumbs([{ text: "studies" }]);
    document.title = "hpo: studies";
    const body = el("tbody");
    app.replaceChildren(el("h1", { text: "Studies" }),
      el("div", { class: "panel" }, el("table", { id: "studies" },
        el("thead", {}, el("tr", {}, ...["id", "name", "state", "progress", "running", "best", "metric", "task", "sampler", "pruner"].map((h) => el("th", { text: h })))),
        body)));
    poll(async () => {
      const studies = await getJson("/api/studies");
      body.replaceChildren(...studies.map((s) => {
        const pct = s.max_trials ? Math.min(100, (100 * s.finished_trials) / s.max_trials) : 0;
        const bar = el("span", { class: "progress" }, el("div", { style: "width:" + pct + "%" }));
        return el("tr", { "data-study": s.id },
          el("td", { class: "num" }, el("a", { href: "/studies/" + s.id, text: s.id })),
          el("td", {}, el("a", { href: "/studies/" + s.id, text: s.name })),
          el("td", {}, stateBadge(s.state)),
          el("td", {}, bar, s.finished_trials + " / " + s.max_trials),
          el("td", { class: "num", text: s.counts.running }),
          el("td", { class: "num", text: s.best ? fmt(s.best.value) + " (trial " + s.best.trial + ")" : "–" }),
          el("td", { text: s.metric + " (" + s.direction + ")" }),
          el("td", { text: s.task + (s.dataset ? ": " + s.dataset : "") }),
          el("td", { text: s.sampler }),
          el("td", { text: s.pruner || "none" }));
      }));
      if (!studies.length) body.replaceChildren(el("tr", {}, el("td", { colspan: 10, class: "muted", text: "No studies yet: hpoctl create SPEC.json" })));
    });
  }

  // ---- page: one study ----
  function studyPage(studyId) {
    setCrumbs([{ text: "studies", href: "/" }, { text: "study " + studyId }]);
    const stateBoxes = {};
    const filters = el("span", {}, "show: ");
    for (const s of STATES) {
      const box = el("input", { type: "checkbox", id: "filter-" + s, "data-state": s });
      box.checked = true;
      box.addEventListener("change", render);
      stateBoxes[s] = box;
      filters.append(el("label", { for: "filter-" + s }, box, stateBadge(s)));
    }
    const metricSelect = el("select", { id: "metric" });
    metricSelect.addEventListener("change", () => { dash.metric = metricSelect.value; render(); });
    const cards = el("div", { class: "cards", id: "cards" });
    const title = el("h1", { text: "Study " + studyId });
    const mk = (id, cls) => el("div", { id, class: "chart" + (cls ? " " + cls : "") });
    const nodes = { history: mk("history"), curves: mk("curves", "tall"), parallel: mk("parallel", "tall"),
                    importance: mk("importance", "short"), recall: mk("recall"), confusion: mk("confusion", "tall") };
    const trialsBody = el("tbody");
    const diagnosis = el("div", { id: "diagnosis" }, el("p", { class: "muted", text: "…" }));
    const bestTitle = el("h2", { text: "Best trial: per-class validation recall" });
    const confTitle = el("h2", { text: "Best trial: confusion matrix (validation)" });
    app.replaceChildren(title, cards,
      el("div", { class: "controls" }, filters, el("label", {}, "curves show ", metricSelect)),
      el("div", { class: "grid" },
        el("div", { class: "panel" }, el("h2", { text: "Optimization history" }), nodes.history),
        el("div", { class: "panel" }, el("h2", { text: "Learning curves (× where a pruned trial was stopped)" }), nodes.curves),
        el("div", { class: "panel wide" }, el("h2", { text: "Parallel coordinates" }), nodes.parallel),
        el("div", { class: "panel" }, el("h2", { text: "Parameter importance (from the diagnosis)" }), nodes.importance),
        el("div", { class: "panel" }, el("h2", { text: "Diagnosis" }), diagnosis),
        el("div", { class: "panel" }, bestTitle, nodes.recall),
        el("div", { class: "panel" }, confTitle, nodes.confusion),
        el("div", { class: "panel wide" }, el("h2", { text: "Trials" }),
          el("table", { id: "trials" }, el("thead", {}, el("tr", {}, ...["#", "state", "value", "best step", "epochs", "parameters", "reason", "worker"].map((h) => el("th", { text: h })))), trialsBody))));
    const charts = {};
    for (const [k, n] of Object.entries(nodes)) charts[k] = chart(k, n);
    for (const k of ["history", "curves", "parallel"]) {
      if (!charts[k]) continue;
      charts[k].on("click", (p) => {
        const n = p.data && p.data.trial !== undefined ? p.data.trial : undefined;
        if (n !== undefined) goTrial(studyId, n);
      });
    }

    let study = null, trials = [], findings = [], lastDiagnosis = 0, diagnosisKey = "";

    function visible(t) { return stateBoxes[t.state] ? stateBoxes[t.state].checked : true; }

    // The spec's max_minutes: what is left of it (it starts with the first trial).
    function budgetText(st) {
      const of = st.max_minutes + " min";
      if (st.time_budget_end == null) return of + ", from the first trial";
      const left = st.time_budget_end - Date.now() / 1000;
      return left > 0 ? (left / 60).toFixed(1) + " of " + of + " left" : of + ", used up";
    }

    function render() {
      if (!study) return;
      dash.states = STATES.filter((s) => stateBoxes[s].checked);
      const shown = trials.filter(visible);
      const maximize = study.direction === "maximize";
      // Cards.
      const c = study.counts;
      cards.replaceChildren(...[
        ["state", study.state], ["trials", study.finished_trials + " / " + study.max_trials + " finished"],
        ["running", c.running], ["completed", c.completed], ["pruned", c.pruned], ["failed", c.failed],
        ["best", study.best ? fmt(study.best.value) + " (trial " + study.best.trial + ")" : "–"],
        ["objective", study.metric + ", " + study.direction], ["sampler / pruner", study.sampler + " / " + (study.pruner || "none")],
        ...(study.max_minutes ? [["time budget", budgetText(study)]] : []),
      ].map(([k, v]) => el("div", { class: "card" }, el("div", { class: "k", text: k }), el("div", { class: "v", text: v }))));
      title.textContent = "Study " + study.id + ": " + study.name;
      document.title = "hpo: " + study.name;

      // Metric choice.
      const names = metricNames(trials, study.metric);
      if (!dash.metric || !names.includes(dash.metric)) dash.metric = names.includes(study.metric) ? study.metric : names[0];
      if ([...metricSelect.options].map((o) => o.value).join() !== names.join()) {
        metricSelect.replaceChildren(...names.map((n) => el("option", { value: n, text: n === "value" ? "value (objective)" : n })));
      }
      metricSelect.value = dash.metric;
      const metric = dash.metric;

      // Optimization history: each finished trial's value, and the best so far.
      if (charts.history) {
        const points = { completed: [], pruned: [], running: [], failed: [] };
        const best = [];
        let bestSoFar = null;
        for (const t of trials) {
          if (t.state === "completed" && t.value !== null) {
            if (bestSoFar === null || (maximize ? t.value > bestSoFar : t.value < bestSoFar)) bestSoFar = t.value;
          }
          if (bestSoFar !== null && (t.state === "completed" || t.state === "pruned")) best.push([t.number, bestSoFar]);
          if (!visible(t) || t.value === null || !points[t.state]) continue;
          points[t.state].push({ value: [t.number, t.value], trial: t.number });
        }
        charts.history.setOption({
          animation: false, tooltip: Object.assign(tooltipBase(), { formatter: (p) => (p.data && p.data.trial !== undefined ? trialTooltip(trials[p.data.trial]) : "best so far " + esc(fmt(p.value[1]))) }),
          legend: { bottom: 0 }, grid: { left: 60, right: 20, top: 30, bottom: 60 },
          xAxis: { type: "value", name: "trial", nameLocation: "middle", nameGap: 25, minInterval: 1 },
          yAxis: { type: "value", name: study.metric, scale: true },
          series: [
            ...Object.entries(points).map(([s, data]) => ({ id: "h-" + s, name: s, type: "scatter", data, symbolSize: 9, itemStyle: { color: COLORS[s] } })),
            { id: "h-best", name: "best so far", type: "line", step: "end", data: best, showSymbol: false, lineStyle: { color: "#111827", width: 2 }, itemStyle: { color: "#111827" } },
          ],
        }, { replaceMerge: ["series"] });
      }

      // Learning curves: the chosen metric per epoch, one line per trial; pruned trials end in a cross.
      if (charts.curves) {
        const series = [];
        const stops = [];
        const bestTrial = study.best ? study.best.trial : -1;
        for (const t of shown) {
          const data = [];
          for (const m of t.measurements || []) {
            const v = metricOf(m, metric);
            if (v !== null) data.push({ value: [m.step, v], trial: t.number });
          }
          if (!data.length) continue;
          const isBest = t.number === bestTrial;
          series.push({ id: "c-" + t.number, name: "trial " + t.number, type: "line", data, showSymbol: true, symbolSize: 5,
                        z: isBest ? 5 : 2, emphasis: { focus: "series" },
                        lineStyle: { width: isBest ? 3 : 1.5, color: COLORS[t.state], opacity: isBest ? 1 : 0.75 },
                        itemStyle: { color: COLORS[t.state] } });
          if (t.state === "pruned") stops.push({ value: data[data.length - 1].value, trial: t.number });
        }
        series.push({ id: "c-pruned", name: "pruned here", type: "scatter", data: stops, symbol: CROSS, symbolSize: 12, z: 6,
                      itemStyle: { color: COLORS.pruned } });
        charts.curves.setOption({
          animation: false,
          tooltip: Object.assign(tooltipBase(), { formatter: (p) => {
            const t = trials[p.data.trial];
            return trialTooltip(t, esc(metric) + " " + esc(fmt(p.value[1])) + " at epoch " + p.value[0] + (p.seriesId === "c-pruned" ? " (pruned here)" : ""));
          } }),
          grid: { left: 60, right: 20, top: 35, bottom: 40 },
          xAxis: { type: "value", name: "epoch", nameLocation: "middle", nameGap: 25, minInterval: 1 },
          yAxis: { type: "value", name: metric, scale: true },
          series,
        }, { replaceMerge: ["series"] });
        dash.curvePoints = series.filter((s) => s.type === "line").reduce((n, s) => n + s.data.length, 0);
      }

      // Parallel coordinates: one axis per parameter plus the objective, coloured by the objective.
      if (charts.parallel) {
        const axes = study.params.map((p, i) => {
          if (p.type === "categorical") return { dim: i, name: p.name, type: "category", data: p.choices.map(String) };
          return { dim: i, name: p.name, type: p.log ? "log" : "value", min: p.low, max: p.high };
        });
        const vdim = axes.length;
        axes.push({ dim: vdim, name: study.metric, type: "value", scale: true, nameTextStyle: { fontWeight: "bold" } });
        const rows = shown.filter((t) => t.value !== null).map((t) => ({
          value: study.params.map((p) => {
            const v = t.params[p.name];
            return v === undefined ? null : p.type === "categorical" ? String(v) : v;
          }).concat([t.value]),
          trial: t.number,
          lineStyle: t.state === "pruned" ? { type: "dashed" } : undefined,
        }));
        const values = rows.map((r) => r.value[vdim]);
        charts.parallel.setOption({
          animation: false,
          tooltip: Object.assign(tooltipBase(), { formatter: (p) => trialTooltip(trials[p.data.trial]) }),
          parallel: { left: 60, right: 90, top: 40, bottom: 30 },
          parallelAxis: axes,
          visualMap: values.length ? { type: "continuous", dimension: vdim, min: Math.min(...values), max: Math.max(...values),
                                       inRange: { color: maximize ? ["#cbd5e1", "#1d4ed8"] : ["#1d4ed8", "#cbd5e1"] },
                                       right: 0, top: "middle", text: ["high", "low"] } : undefined,
          series: [{ id: "parallel", type: "parallel", data: rows, lineStyle: { width: 2, opacity: 0.7 },
                     emphasis: { lineStyle: { width: 4, opacity: 1 } } }],
        }, { replaceMerge: ["series", "parallelAxis", "visualMap"] });
      }

      // Trials table.
      trialsBody.replaceChildren(...shown.map((t) => el("tr", { "data-trial": t.number, "data-state": t.state },
        el("td", { class: "num" }, el("a", { href: "/studies/" + study.id + "/trials/" + t.number, text: t.number })),
        el("td", {}, stateBadge(t.state)),
        el("td", { class: "num", text: fmt(t.value) }),
        el("td", { class: "num", text: t.best_step >= 0 ? t.best_step : "–" }),
        el("td", { class: "num", text: t.steps }),
        el("td", { class: "params", text: paramsText(t.params) }),
        el("td", { class: "reason", text: t.reason || "" }),
        el("td", { class: "muted", text: t.worker || "" }))));

      renderDiagnosis();
      renderBest();
      dash.study = study;
      dash.trials = trials;
      dash.updates++;
    }

    function renderDiagnosis() {
      diagnosis.replaceChildren(...(findings.length ? findings.map((f, i) => el("div", { class: "finding" },
        el("div", { class: "cause", text: (i + 1) + ". " + f.cause }),
        el("div", { text: "evidence: " + f.evidence }),
        f.suggestion ? el("div", { class: "try", text: "try: " + f.suggestion }) : null))
        : [el("p", { class: "muted", text: "Nothing to report yet (the diagnosis needs completed trials)." })]));
      if (!charts.importance) return;
      // The diagnosis's fANOVA importance: figures "importance/NAME" (mean over the forest's trees),
      // "importance_std/NAME" (their spread across the trees), "trees" and "completed_trials".
      const imp = findings.find((f) => f.cause === "parameter importance");
      const figs = imp ? imp.figures : {};
      const entries = Object.entries(figs).filter(([k, v]) => k.startsWith("importance/") && v !== null)
        .map(([k, v]) => ({ name: k.slice("importance/".length), value: v, sd: figs["importance_std/" + k.slice("importance/".length)] || 0 }))
        .sort((a, b) => a.value - b.value);
      const few = imp && figs.completed_trials < 8;
      charts.importance.setOption({
        animation: false,
        tooltip: { trigger: "item", formatter: (p) => esc(p.name) + ": <b>" + p.value.toFixed(2) + " ± " + p.data.sd.toFixed(2) + "</b> (sd over " + figs.trees + " trees, " + figs.completed_trials + " trials)" },
        title: entries.length ? undefined : { text: "from 3 completed trials on", left: "center", top: "middle", textStyle: { color: "#9ca3af", fontSize: 13 } },
        grid: { left: 120, right: 70, top: 10, bottom: 30 },
        xAxis: { type: "value", max: 1, name: entries.length ? "fANOVA share of variance, ± sd over " + figs.trees + " trees, " + figs.completed_trials + " trials" + (few ? " (too few: low confidence)" : "") : "share of variance", nameLocation: "middle", nameGap: 22 },
        yAxis: { type: "category", data: entries.map((e) => e.name) },
        series: [{ id: "importance", type: "bar", data: entries, itemStyle: { color: few ? "#9ca3af" : "#2563eb" },
                   label: { show: true, position: "right", fontSize: 10, formatter: (p) => p.value.toFixed(2) + " ± " + p.data.sd.toFixed(2) } }],
      }, { replaceMerge: ["series", "title"] });
    }

    function renderBest() {
      const best = study.best ? trials[study.best.trial] : null;
      const cls = best && best.classes;
      bestTitle.textContent = best ? "Best trial " + best.number + ": per-class validation recall" : "Best trial: per-class validation recall";
      confTitle.textContent = best ? "Best trial " + best.number + ": confusion matrix (validation)" : "Best trial: confusion matrix (validation)";
      if (!charts.recall || !charts.confusion) return;
      if (!cls || !cls.n) {
        const empty = { title: { text: best ? "trial " + best.number + " reported no per-class figures" : "no completed trial yet", left: "center", top: "middle", textStyle: { color: "#9ca3af", fontSize: 13 } }, series: [] };
        charts.recall.setOption(empty, { replaceMerge: ["series", "title", "xAxis", "yAxis", "visualMap"] });
        charts.confusion.setOption(empty, { replaceMerge: ["series", "title", "xAxis", "yAxis", "visualMap"] });
        return;
      }
      const names = classNames(best, cls.n);
      charts.recall.setOption({
        animation: false, title: { show: false }, tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
        grid: { left: 50, right: 20, top: 20, bottom: 70 },
        xAxis: { type: "category", data: names, axisLabel: { rotate: 35, interval: 0 } },
        yAxis: { type: "value", min: 0, max: 1, name: "recall" },
        series: [{ id: "recall", name: "validation recall", type: "bar", data: cls.val_recall, itemStyle: { color: "#2563eb" } },
                 ...(cls.train_recall.length ? [{ id: "train-recall", name: "training recall", type: "bar", data: cls.train_recall, itemStyle: { color: "#93c5fd" } }] : [])],
      }, { replaceMerge: ["series", "title"] });
      const cells = [];
      let max = 1;
      cls.val_confusion.forEach((row, r) => row.forEach((v, p) => { cells.push([p, r, v]); max = Math.max(max, v); }));
      charts.confusion.setOption({
        animation: false, title: { show: false },
        tooltip: { formatter: (p) => "true " + esc(names[p.value[1]]) + ", predicted " + esc(names[p.value[0]]) + ": <b>" + p.value[2] + "</b>" },
        grid: { left: 95, right: 20, top: 10, bottom: 90 },
        xAxis: { type: "category", data: names, name: "predicted", nameLocation: "middle", nameGap: 70, axisLabel: { rotate: 35, interval: 0 } },
        yAxis: { type: "category", data: names, name: "true", nameLocation: "middle", nameGap: 75, inverse: true, axisLabel: { interval: 0 } },
        visualMap: { min: 0, max, show: false, inRange: { color: ["#f8fafc", "#1d4ed8"] } },
        series: [{ id: "confusion", type: "heatmap", data: cells, label: { show: cls.n <= 12, fontSize: 10 } }],
      }, { replaceMerge: ["series", "title", "visualMap"] });
    }

    poll(async () => {
      const [s, t] = await Promise.all([getJson("/api/studies/" + studyId), getJson("/api/studies/" + studyId + "/trials")]);
      study = s;
      trials = t;
      // The diagnosis is heavier: ask again when a trial finished, at most every 5 s.
      const key = s.finished_trials + "/" + (s.best ? s.best.trial : "");
      if (key !== diagnosisKey && Date.now() - lastDiagnosis > 5000) {
        lastDiagnosis = Date.now();
        diagnosisKey = key;
        findings = (await getJson("/api/studies/" + studyId + "/diagnosis")).findings;
      }
      render();
    });
  }

  function classNames(trial, n) {
    const names = (trial.data && trial.data.class_names) || [];
    return Array.from({ length: n }, (_, i) => (names[i] !== undefined && names[i] !== "" ? names[i] : String(i)));
  }

  // ---- page: one trial ----
  function trialPage(studyId, number) {
    setCrumbs([{ text: "studies", href: "/" }, { text: "study " + studyId, href: "/studies/" + studyId }, { text: "trial " + number }]);
    const title = el("h1", { text: "Trial " + number });
    const cards = el("div", { class: "cards" });
    const valNode = el("div", { id: "val-curves", class: "chart" });
    const trainNode = el("div", { id: "train-curves", class: "chart" });
    const recallNode = el("div", { id: "recall", class: "chart" });
    const confNode = el("div", { id: "confusion", class: "chart tall" });
    const paramsBody = el("tbody");
    const finalBody = el("tbody");
    const dataBox = el("div");
    app.replaceChildren(title, cards, el("div", { class: "grid" },
      el("div", { class: "panel" }, el("h2", { text: "Validation" }), valNode),
      el("div", { class: "panel" }, el("h2", { text: "Training" }), trainNode),
      el("div", { class: "panel" }, el("h2", { text: "Parameters" }), el("table", { id: "params" }, paramsBody)),
      el("div", { class: "panel" }, el("h2", { text: "Final metrics" }), el("table", { id: "final" }, finalBody), dataBox),
      el("div", { class: "panel" }, el("h2", { text: "Per-class validation recall" }), recallNode),
      el("div", { class: "panel" }, el("h2", { text: "Confusion matrix (validation)" }), confNode)));
    const val = chart("val", valNode), train = chart("train", trainNode), recall = chart("recall", recallNode), conf = chart("confusion", confNode);

    function curves(c, t, prefix) {
      if (!c) return;
      const names = new Set();
      // Throughput is not a learning curve (it is on the trial's cards instead).
      for (const m of t.measurements) for (const k of Object.keys(m.metrics || {})) if (k.startsWith(prefix) && !k.endsWith("_per_second")) names.add(k);
      const list = [...names].sort();
      // Losses on their own axis: they are not on the scale of accuracies.
      const isLoss = (n) => /loss/.test(n);
      c.setOption({
        animation: false, legend: { bottom: 0, type: "scroll" }, tooltip: { trigger: "axis" },
        grid: { left: 60, right: 60, top: 30, bottom: 70 },
        xAxis: { type: "value", name: "epoch", nameLocation: "middle", nameGap: 25, minInterval: 1 },
        yAxis: [{ type: "value", scale: true, name: "accuracy / other" }, { type: "value", scale: true, name: "loss" }],
        series: list.map((n) => ({ id: n, name: n, type: "line", yAxisIndex: isLoss(n) ? 1 : 0,
          data: t.measurements.filter((m) => m.metrics[n] !== undefined && m.metrics[n] !== null).map((m) => [m.step, m.metrics[n]]) })),
      }, { replaceMerge: ["series"] });
    }

    poll(async () => {
      const t = await getJson("/api/studies/" + studyId + "/trials/" + number);
      dash.trial = t;
      title.textContent = "Trial " + t.number + " of study " + t.study.id + ": " + t.study.name;
      document.title = "hpo: trial " + t.number;
      cards.replaceChildren(...[
        ["state", t.state], ["value", fmt(t.value)], ["best epoch", t.best_step >= 0 ? t.best_step : "–"], ["epochs", t.steps],
        ["worker", t.worker || "–"], ["retry of", t.retry_of === null ? "–" : t.retry_of],
        ["training images/s", (() => { const m = t.measurements[t.measurements.length - 1]; const v = m && m.metrics.train_images_per_second; return v ? Math.round(v) : "–"; })()],
      ].map(([k, v]) => el("div", { class: "card" }, el("div", { class: "k", text: k }), el("div", { class: "v", text: v }))));
      if (t.reason) cards.append(el("div", { class: "card reason" }, el("div", { class: "k", text: "reason" }), el("div", { text: t.reason })));
      curves(val, t, "val_");
      curves(train, t, "train_");
      paramsBody.replaceChildren(...Object.entries(t.params).map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", { class: "num", text: fmt(v, 6) }))));
      const fm = Object.entries(t.final_metrics);
      finalBody.replaceChildren(...(fm.length ? fm.map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", { class: "num", text: fmt(v) })))
        : [el("tr", {}, el("td", { class: "muted", text: "none yet" }))]));
      if (t.data) {
        dataBox.replaceChildren(el("p", { class: "muted", text: "data: " + t.data.format + ", " + t.data.train_images + " training / " + t.data.val_images +
          " validation / " + t.data.test_images + " test images, " + t.data.width + "x" + t.data.height + "x" + t.data.channels +
          (t.data.skipped_files ? ", " + t.data.skipped_files + " files skipped" : "") }));
      }
      const cls = t.classes;
      if (cls && cls.n && recall && conf) {
        const names = classNames(t, cls.n);
        recall.setOption({ animation: false, tooltip: { trigger: "axis" }, grid: { left: 50, right: 20, top: 20, bottom: 70 },
          xAxis: { type: "category", data: names, axisLabel: { rotate: 35, interval: 0 } }, yAxis: { type: "value", min: 0, max: 1 },
          series: [{ id: "recall", name: "validation recall", type: "bar", data: cls.val_recall }] });
        const cells = [];
        let max = 1;
        cls.val_confusion.forEach((row, r) => row.forEach((v, p) => { cells.push([p, r, v]); max = Math.max(max, v); }));
        conf.setOption({ animation: false,
          tooltip: { formatter: (p) => "true " + esc(names[p.value[1]]) + ", predicted " + esc(names[p.value[0]]) + ": <b>" + p.value[2] + "</b>" },
          grid: { left: 95, right: 20, top: 10, bottom: 90 },
          xAxis: { type: "category", data: names, name: "predicted", nameLocation: "middle", nameGap: 70, axisLabel: { rotate: 35, interval: 0 } },
          yAxis: { type: "category", data: names, name: "true", nameLocation: "middle", nameGap: 75, inverse: true, axisLabel: { interval: 0 } },
          visualMap: { min: 0, max, show: false, inRange: { color: ["#f8fafc", "#1d4ed8"] } },
          series: [{ id: "confusion", type: "heatmap", data: cells, label: { show: cls.n <= 12, fontSize: 10 } }] });
      }
    });
  }

  // ---- routing ----
  const path = location.pathname.replace(/\/+$/, "") || "/";
  let m;
  if (path === "/") studyListPage();
  else if ((m = path.match(/^\/studies\/(\d+)$/))) studyPage(m[1]);
  else if ((m = path.match(/^\/studies\/(\d+)\/trials\/(\d+)$/))) trialPage(m[1], m[2]);
  else showError("No such page.");
})();
