"use strict";
// The run page's browser: filters and pagination over DATA.docs, built with DOM calls (no innerHTML).
(function () {
  const DATA = JSON.parse(document.getElementById("run-data").textContent);
  const PAGE_SIZE = 50;
  const state = { task: "", wrong: false, failures: false, specialist: "", prompt: "", page: 0 };
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return node;
  }

  function fmt(x, digits) {
    if (x === null || x === undefined) return "–";
    if (typeof x !== "number") return String(x);
    return digits === 0 ? String(Math.round(x)) : x.toFixed(digits === undefined ? 3 : digits);
  }

  function header() {
    const run = DATA.run;
    const args = Object.entries(run.model_args).map(([k, v]) => k + "=" + v).join(", ");
    const versions = Object.entries(run.versions).map(([k, v]) => k + " " + v).join(", ");
    $("run-meta").textContent =
      "model " + run.model + (args ? " (" + args + ")" : "") +
      " · scoring " + run.scoring + (run.samples > 1 ? ", " + run.samples + " samples" : "") + " · run " + run.date +
      (versions ? " · " + versions : "") + " · " + run.results_file;
  }

  function summary() {
    const keys = [];
    for (const t of DATA.tasks) for (const k of Object.keys(t.counts)) if (!keys.includes(k)) keys.push(k);
    const table = $("summary");
    table.appendChild(el("tr", {}, el("th", {}, "task"), el("th", {}, "metric"), el("th", {}, "value"),
      el("th", {}, "95% CI"), el("th", {}, "docs"), ...keys.map((k) => el("th", {}, k))));
    for (const t of DATA.tasks) {
      const ci = t.ci_low === null ? "–" : "[" + fmt(t.ci_low) + ", " + fmt(t.ci_high) + "]";
      table.appendChild(el("tr", { "data-task": t.task }, el("td", {}, t.task), el("td", {}, t.metric),
        el("td", { class: "num" }, fmt(t.value)), el("td", { class: "num" }, ci),
        el("td", { class: "num" }, t.n_docs),
        ...keys.map((k) => el("td", { class: "num" }, fmt(t.counts[k], k === "cost_usd" ? 4 : k === "flip_rate" ? 3 : 0)))));
    }
    const conv = $("conventions");
    for (const t of DATA.tasks) if (t.conventions) conv.appendChild(el("p", {}, el("b", {}, t.task + ": "), t.conventions));
    conv.appendChild(el("p", {}, "Pointwise docs are 'far off' when the percentile of the judge's score differs from " +
      "the human score's percentile by more than " + DATA.far_off + "."));
  }

  function options() {
    const tasks = $("f-task");
    for (const t of DATA.tasks) tasks.appendChild(el("option", { value: t.task }, t.task));
    const codes = new Set();
    for (const d of DATA.docs) for (const s of d.specialists) codes.add(s.code);
    const sel = $("f-specialist");
    for (const c of [...codes].sort()) sel.appendChild(el("option", { value: c }, c));
  }

  function matches(d) {
    if (state.task && d.task !== state.task) return false;
    if (state.wrong && !d.wrong) return false;
    if (state.failures && d.status === "ok") return false;
    if (state.specialist && !d.specialists.some((s) => s.code === state.specialist)) return false;
    if (state.prompt) {
      const q = state.prompt.toLowerCase();
      if (!d.request.toLowerCase().includes(q) && (d.group || "").toLowerCase() !== q) return false;
    }
    return true;
  }

  function figure(index, caption) {
    const url = index === null || index === undefined ? null : DATA.images[index];
    const body = url ? el("img", { src: url, alt: caption }) : el("div", { class: "missing-image" }, "no image");
    return el("figure", {}, body, el("figcaption", {}, caption));
  }

  function verdict(d, paradigm) {
    const judge = d.pred === null ? "none (" + d.status + ")" : paradigm === "pairwise"
      ? (d.pred === 0 ? "tie" : "Image " + d.pred) : "score " + fmt(d.pred, Number.isInteger(d.pred) ? 0 : 2);
    const human = paradigm === "pairwise" ? "Image " + d.truth : "score " + fmt(d.truth);
    const verdictText = d.status !== "ok" ? "failure: " + d.status : paradigm === "pairwise"
      ? (d.wrong ? "wrong" : "right") : "percentile gap " + fmt(d.gap) + (d.wrong ? " (far off)" : "");
    const parts = [el("b", {}, "judge: "), judge, " · ", el("b", {}, "human: "), human, " · ", verdictText];
    if (d.flipped !== null && d.flipped !== undefined) parts.push(" · order flipped the answer: " + (d.flipped ? "yes" : "no"));
    if (d.snapshot) parts.push(" · " + d.snapshot + (d.cached ? " (cached)" : ""));
    // scoring=expected: the verdict's probability distribution (value: p), or why the doc fell back
    if (d.probs) parts.push(" · p: " + Object.entries(d.probs).map(([k, p]) => k + ": " + fmt(p, 2)).join(", "));
    if (d.p_first !== null && d.p_first !== undefined) parts.push(" · p(Image 1) " + fmt(d.p_first, 3));
    if (d.expected_fallback) parts.push(" · integer verdict kept (expected_fallbacks): " + d.expected_fallback);
    return el("div", { class: "verdict" }, ...parts);
  }

  function specialists(d) {
    if (!d.specialists.length) return el("div", { class: "specialists meta" }, d.tools.length ? "tools: " + d.tools.join(", ") : "no specialist");
    const table = el("table", { class: "specialists" }, el("tr", {}, el("th", {}, "specialist"), el("th", {}, "image"),
      el("th", {}, "value"), el("th", {}, "output")));
    for (const s of d.specialists) {
      table.appendChild(el("tr", { "data-code": s.code }, el("td", {}, s.code), el("td", {}, s.candidate === null ? "–" : s.candidate),
        el("td", { class: "num" }, fmt(s.value, 3)), el("td", {}, s.text || "")));
    }
    return table;
  }

  function card(d) {
    const task = DATA.tasks.find((t) => t.task === d.task);
    const paradigm = task ? task.paradigm : "pairwise";
    const cls = "doc" + (d.wrong ? " wrong" : "") + (d.status !== "ok" ? " failed" : "");
    const badge = d.status !== "ok" ? el("span", { class: "badge fail" }, d.status)
      : el("span", { class: "badge " + (d.wrong ? "bad" : "ok") }, d.wrong ? (paradigm === "pairwise" ? "wrong" : "far off") : "ok");
    const figs = [];
    if (d.images.source_image !== undefined) figs.push(figure(d.images.source_image, "source"));
    if (d.images.image_1 !== undefined) figs.push(figure(d.images.image_1, paradigm === "pairwise" ? "image 1" : "image"));
    if (d.images.image_2 !== undefined) figs.push(figure(d.images.image_2, "image 2"));
    return el("article", { class: cls, "data-task": d.task, "data-id": d.id, "data-status": d.status },
      el("h3", {}, d.task + " / " + d.id, badge, d.group ? el("span", { class: "badge" }, "group " + d.group) : null),
      el("div", { class: "request" }, d.request || "(request not logged)"),
      el("div", { class: "images" }, ...figs),
      verdict(d, paradigm),
      d.selection ? el("div", { class: "meta selection" }, "tool choice (auto): " +
        (d.tools.length ? d.tools.join(", ") : "none") + " · " + d.selection) : null,
      specialists(d),
      d.analysis ? el("div", { class: "analysis" }, d.analysis) : null,
      d.error ? el("div", { class: "error" }, "error: " + d.error) : null,
      el("details", {}, el("summary", {}, "raw answer"), el("pre", { class: "raw" }, d.raw || "(none)")));
  }

  function render() {
    const shown = DATA.docs.filter(matches);
    const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
    state.page = Math.min(state.page, pages - 1);
    const start = state.page * PAGE_SIZE;
    const slice = shown.slice(start, start + PAGE_SIZE);
    const box = $("docs");
    box.replaceChildren(...slice.map(card));
    const count = $("count");
    count.dataset.matching = String(shown.length);
    count.textContent = shown.length
      ? "docs " + (start + 1) + "–" + (start + slice.length) + " of " + shown.length +
        " (" + DATA.docs.length + " in the run) · page " + (state.page + 1) + " of " + pages
      : "no doc matches (" + DATA.docs.length + " in the run)";
    for (const id of ["prev", "prev2"]) $(id).disabled = state.page === 0;
    for (const id of ["next", "next2"]) $(id).disabled = state.page >= pages - 1;
  }

  function bind() {
    const update = (key, value) => { state[key] = value; state.page = 0; render(); };
    $("f-task").addEventListener("change", (e) => update("task", e.target.value));
    $("f-wrong").addEventListener("change", (e) => update("wrong", e.target.checked));
    $("f-failures").addEventListener("change", (e) => update("failures", e.target.checked));
    $("f-specialist").addEventListener("change", (e) => update("specialist", e.target.value));
    $("f-prompt").addEventListener("input", (e) => update("prompt", e.target.value.trim()));
    const go = (delta) => { state.page += delta; render(); window.scrollTo(0, $("browser").offsetTop); };
    for (const id of ["prev", "prev2"]) $(id).addEventListener("click", () => go(-1));
    for (const id of ["next", "next2"]) $(id).addEventListener("click", () => go(1));
  }

  header();
  summary();
  options();
  bind();
  render();
})();
