// lmforge ui: the page. Plain JavaScript, no framework, nothing loaded from elsewhere.
"use strict";

const I18N = {
  en: {
    tab_runs: "Runs", tab_train: "Train", tab_play: "Playground", filter: "Filter runs",
    compare: "Compare selected", refresh: "Refresh", comparison: "Comparison",
    report: "Report", col_run: "run", col_command: "command", col_task: "task",
    col_model: "model", col_metrics: "metrics", col_status: "status", col_started: "started",
    col_parents: "parents", open: "report", runs_count: "{n} runs", command: "Command",
    run_name: "Run name", preview: "Preview", start: "Start", stop: "Stop",
    equivalent_command: "Equivalent command", live_run: "Run", model: "Model",
    predict: "Predict", explain: "Explain", send: "Send", clear: "Clear",
    decoding: "Decoding", message: "Type a message", section_top: "general",
    st_finished: "finished", st_running: "running", st_failed: "failed",
    st_stopped: "stopped", st_incomplete: "incomplete", st_unknown: "unknown",
    no_models: "no fine-tuned runs under the root", step: "step {s} / {m}",
    attributions: "Word attributions", answer: "answer", text: "text",
  },
  zh: {
    tab_runs: "运行", tab_train: "训练", tab_play: "试用", filter: "筛选运行",
    compare: "比较所选", refresh: "刷新", comparison: "比较", report: "报告",
    col_run: "运行", col_command: "命令", col_task: "任务", col_model: "模型",
    col_metrics: "指标", col_status: "状态", col_started: "开始时间", col_parents: "上游",
    open: "报告", runs_count: "共 {n} 个运行", command: "命令", run_name: "运行名称",
    preview: "预览", start: "开始", stop: "停止", equivalent_command: "等价命令",
    live_run: "运行", model: "模型", predict: "预测", explain: "解释", send: "发送",
    clear: "清空", decoding: "解码设置", message: "输入消息", section_top: "通用",
    st_finished: "已完成", st_running: "运行中", st_failed: "失败", st_stopped: "已停止",
    st_incomplete: "未完成", st_unknown: "未知", no_models: "根目录下没有微调过的运行",
    step: "第 {s} / {m} 步", attributions: "词归因", answer: "答案", text: "文本",
  },
};

const state = {
  lang: localStorage.getItem("lmforge-ui-lang") || "en",
  runs: [], sort: { key: "started", dir: -1 }, selected: new Set(), info: {},
  live: localStorage.getItem("lmforge-ui-live") || "", timer: null, model: null, chat: [],
};

function t(key, vars) {
  let text = (I18N[state.lang] || I18N.en)[key] || I18N.en[key] || key;
  for (const [k, v] of Object.entries(vars || {})) text = text.replace(`{${k}}`, v);
  return text;
}

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

const $ = (sel) => document.querySelector(sel);

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", "X-Lmforge-UI": "1" },
  };
  const response = await fetch(path, options);
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return response;
}
const getJSON = async (path) => (await api(path)).json();

function applyLanguage() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.querySelectorAll("[data-i18n-placeholder]").forEach((el) => {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  });
  $("#lang").textContent = state.lang === "zh" ? "English" : "中文";
  renderRuns();
}

// ---- Tabs ----
function showTab(name) {
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".tab").forEach((s) => { s.hidden = s.id !== `tab-${name}`; });
  location.hash = name;
  if (name === "train" && !$("#train-form").childElementCount) loadForm();
  if (name === "play" && !$("#play-model").childElementCount) loadModels();
}

// ---- Runs ----
function metricText(metrics) {
  return Object.entries(metrics || {}).map(([k, v]) => `${k}=${Number(v).toPrecision(4)}`).join(" ");
}

function sortValue(run, key) {
  if (key === "metric") { const v = Object.values(run.metrics || {})[0]; return v === undefined ? -Infinity : v; }
  return String(run[key] ?? "");
}

function renderRuns() {
  const body = $("#runs tbody");
  if (!body) return;
  const needle = $("#filter").value.trim().toLowerCase();
  const { key, dir } = state.sort;
  const rows = state.runs.filter((r) => !needle || [r.run, r.command, r.task, r.model, r.status,
    metricText(r.metrics)].join(" ").toLowerCase().includes(needle));
  rows.sort((a, b) => { const x = sortValue(a, key), y = sortValue(b, key); return (x < y ? -1 : x > y ? 1 : 0) * dir; });
  body.innerHTML = rows.map((r) => `<tr data-run="${esc(r.run)}">
    <td><input type="checkbox" class="pick" ${state.selected.has(r.run) ? "checked" : ""}></td>
    <td>${esc(r.run)}</td><td>${esc(r.command)}</td><td>${esc(r.task)}</td><td>${esc(r.model)}</td>
    <td class="metrics">${esc(metricText(r.metrics))}</td>
    <td><span class="status st-${esc(r.status)}">${esc(t("st_" + r.status))}</span></td>
    <td>${esc(r.started)}</td>
    <td>${(r.parents || []).map((p) => p.run ? `<a href="#" class="parent" data-goto="${esc(p.run)}" title="${esc(p.key)}">${esc(p.run)}</a>`
      : `<span class="muted" title="${esc(p.key)}">${esc(p.path)}</span>`).join(" ")}</td>
    <td><a href="#" class="open" data-open="${esc(r.run)}">${esc(t("open"))}</a></td></tr>`).join("");
  document.querySelectorAll("#runs th[data-sort]").forEach((th) => {
    th.classList.toggle("asc", th.dataset.sort === key && dir === 1);
    th.classList.toggle("desc", th.dataset.sort === key && dir === -1);
  });
  $("#count").textContent = t("runs_count", { n: rows.length });
  $("#compare").disabled = state.selected.size < 2;
}

async function loadRuns() {
  state.runs = await getJSON("/api/runs");
  renderRuns();
}

async function compareSelected() {
  const query = [...state.selected].map((r) => "run=" + encodeURIComponent(r)).join("&");
  const data = await getJSON(`/api/compare?${query}`);
  const keys = [...new Set(data.rows.flatMap((r) => Object.keys(r.metrics || {})))];
  $("#compare-metrics").innerHTML = `<table><tr><th></th>${data.rows.map((r) => `<th>${esc(r.run)}</th>`).join("")}</tr>${
    keys.map((k) => `<tr><td>${esc(k)}</td>${data.rows.map((r) => `<td>${r.metrics[k] === undefined ? "—" : esc(Number(r.metrics[k]).toPrecision(4))}</td>`).join("")}</tr>`).join("")}</table>`;
  $("#compare-charts").innerHTML = data.charts.join("");  // SVG drawn (and escaped) by the server
  $("#compare-view").hidden = false;
  $("#compare-view").scrollIntoView();
}

function openReport(run) {
  $("#report-name").textContent = run;
  $("#report-frame").src = "/api/report?run=" + encodeURIComponent(run);
  $("#report-view").hidden = false;
  $("#report-view").scrollIntoView();
}

function gotoRun(run) {
  $("#filter").value = "";
  renderRuns();
  const row = [...document.querySelectorAll("#runs tbody tr")].find((tr) => tr.dataset.run === run);
  document.querySelectorAll("#runs tr.hl").forEach((tr) => tr.classList.remove("hl"));
  if (row) { row.classList.add("hl"); row.scrollIntoView({ block: "center" }); }
}

// ---- Train ----
function formValues() {
  const values = {};
  document.querySelectorAll("#train-form [data-key]").forEach((el) => {
    const value = el.type === "checkbox" ? (el.checked ? "true" : "false") : el.value;
    if (value !== el.dataset.default) values[el.dataset.key] = value;
    el.closest(".opt").classList.toggle("changed", value !== el.dataset.default);
  });
  return values;
}

function renderForm(spec) {
  $("#train-name").value = spec.name;
  $("#train-form").innerHTML = spec.sections.map((section) => `<fieldset><details open>
    <summary>${esc(section.section || t("section_top"))}</summary>${section.options.map((o) => {
      const id = "opt-" + o.key.replace(/\W/g, "_");
      const input = o.kind === "bool"
        ? `<input type="checkbox" id="${id}" data-key="${esc(o.key)}" data-default="${esc(o.default)}" ${o.default === "true" ? "checked" : ""}>`
        : `<input id="${id}" data-key="${esc(o.key)}" data-default="${esc(o.default)}" value="${esc(o.default)}" ${o.kind === "int" || o.kind === "float" ? 'inputmode="decimal"' : ""}>`;
      return `<div class="opt"><label for="${id}" title="${esc(o.help)}">${esc(o.key)}</label>${input}<small>${esc(o.help)}</small></div>`;
    }).join("")}</details></fieldset>`).join("");
}

async function loadForm() {
  if (!$("#train-command").childElementCount) {
    $("#train-command").innerHTML = state.info.commands.map((c) => `<option>${esc(c)}</option>`).join("");
  }
  renderForm(await getJSON("/api/form/" + encodeURIComponent($("#train-command").value)));
  await preview();
}

function trainBody() {
  return { command: $("#train-command").value, name: $("#train-name").value.trim(), values: formValues() };
}

async function preview() {
  const ticket = (state.previewTicket = (state.previewTicket || 0) + 1);
  $("#train-error").hidden = true;
  try {
    const data = await (await api("/api/preview", trainBody())).json();
    if (ticket !== state.previewTicket) return true;  // a later preview is on its way
    $("#preview-command").textContent = data.command;
    $("#preview-yaml").textContent = data.yaml;
    return true;
  } catch (err) {
    if (ticket !== state.previewTicket) return false;
    $("#train-error").textContent = err.message;
    $("#train-error").hidden = false;
    return false;
  }
}

async function startRun() {
  if (!(await preview())) return;
  try {
    const data = await (await api("/api/start", trainBody())).json();
    watchRun(data.run);
    $("#train-name").value = (await getJSON("/api/form/" + encodeURIComponent($("#train-command").value))).name;
  } catch (err) {
    $("#train-error").textContent = err.message;
    $("#train-error").hidden = false;
  }
}

function watchRun(run) {
  state.live = run;
  localStorage.setItem("lmforge-ui-live", run);
  $("#live").hidden = false;
  clearTimeout(state.timer);
  pollRun();
}

async function pollRun() {
  if (!state.live) return;
  let data;
  const known = state.chartsVersion && state.chartsRun === state.live ? state.chartsVersion : "";
  try { data = await getJSON(`/api/run?run=${encodeURIComponent(state.live)}&known=${encodeURIComponent(known)}`); } catch (err) {
    $("#live").hidden = true; localStorage.removeItem("lmforge-ui-live"); state.live = ""; return;
  }
  $("#live-name").textContent = data.run;
  $("#live-status").textContent = t("st_" + data.status);
  $("#live-status").className = "status st-" + data.status;
  // Only what changed is touched: a watched run costs the page (and the machine) little.
  if ($("#live-log").textContent !== data.log) {
    $("#live-log").textContent = data.log;
    $("#live-log").scrollTop = $("#live-log").scrollHeight;
  }
  if (data.charts) {
    $("#live-charts").innerHTML = data.charts.slice(0, 2).join("");
    state.chartsVersion = data.charts_version;
    state.chartsRun = state.live;
  }
  $("#stop").hidden = data.status !== "running";
  const p = data.progress || {};
  $("#live-progress").value = p.step && p.max_steps ? p.step / p.max_steps : (data.status === "finished" ? 1 : 0);
  $("#live-step").textContent = p.step ? t("step", { s: p.step, m: p.max_steps || "?" }) : "";
  if (data.status === "running") state.timer = setTimeout(pollRun, state.info.poll_ms || 1000);
  else loadRuns();
}

// ---- Playground ----
async function loadModels() {
  const models = await getJSON("/api/models");
  $("#play-model").innerHTML = models.length
    ? models.map((m) => `<option value="${esc(m.run)}">${esc(m.run)} (${esc(m.task)})</option>`).join("")
    : `<option value="">${esc(t("no_models"))}</option>`;
  if (models.length) await pickModel();
}

async function pickModel() {
  const run = $("#play-model").value;
  $("#play-error").hidden = true;
  $("#play-result").innerHTML = $("#play-explain").innerHTML = "";
  let model;
  try { model = await getJSON("/api/model?run=" + encodeURIComponent(run)); } catch (err) { return showPlayError(err); }
  if ($("#play-model").value !== run) return;  // another model was picked meanwhile
  state.model = model;
  state.model.run = run;
  $("#play-model").dataset.loaded = run;
  $("#play-task").textContent = `${state.model.task} · ${state.model.backend}`;
  $("#play-predict").hidden = state.model.generative;
  $("#play-chat").hidden = !state.model.generative;
  $("#explain").hidden = $("#explain-method").hidden = !state.model.explains;
  $("#play-fields").innerHTML = state.model.fields.map((f) => `<label>${esc(f)}<textarea data-field="${esc(f)}"></textarea></label>`).join("");
  state.chat = [];
  $("#chat-log").innerHTML = "";
}

function showPlayError(err) { $("#play-error").textContent = err.message; $("#play-error").hidden = false; }

function record() {
  const out = {};
  document.querySelectorAll("#play-fields [data-field]").forEach((el) => { out[el.dataset.field] = el.value; });
  return out;
}

function highlight(text, spans) {
  let html = "", at = 0;
  for (const s of [...spans].sort((a, b) => a.start - b.start)) {
    if (s.start < at || s.start < 0) continue;
    html += esc(text.slice(at, s.start)) + `<mark>${esc(text.slice(s.start, s.end))}${s.label ? `<sub>${esc(s.label)}</sub>` : ""}</mark>`;
    at = s.end;
  }
  return html + esc(text.slice(at));
}

function renderPrediction(row, rec) {
  let html = "";
  if (row.label !== undefined) html += `<p><strong class="pred-label">${esc(row.label)}</strong> <span class="muted">${esc(Number(row.score).toFixed(4))}</span></p>`;
  if (Array.isArray(row.top_k)) {
    html += `<div class="bars">${row.top_k.map((p) => `<div><span>${esc(p.label)}</span><span class="bar-fill" style="width:${(100 * p.score).toFixed(1)}%"></span><span class="prob">${esc(Number(p.score).toFixed(4))}</span></div>`).join("")}</div>`;
  }
  if (Array.isArray(row.entities) && typeof row.text === "string") html += `<p class="spans">${highlight(row.text, row.entities)}</p>`;
  if (row.answer !== undefined && Number.isInteger(row.start) && row.start >= 0) {
    const end = row.end ?? row.start + String(row.answer).length;
    const field = state.model.fields.find((f) => (rec[f] || "").slice(row.start, end) === row.answer) || state.model.fields[state.model.fields.length - 1];
    html += `<p>${esc(t("answer"))}: <strong>${esc(row.answer)}</strong> (${esc(Number(row.score).toFixed(4))})</p><p class="spans">${highlight(rec[field] || "", [{ start: row.start, end }])}</p>`;
  }
  html += `<details><summary>JSON</summary><pre>${esc(JSON.stringify(row, null, 2))}</pre></details>`;
  $("#play-result").innerHTML = html;
}

async function predict() {
  $("#play-error").hidden = true;
  const rec = record();
  try {
    const row = await (await api("/api/predict", { run: state.model.run, record: rec })).json();
    renderPrediction(row, rec);
  } catch (err) { showPlayError(err); }
}

async function explain() {
  $("#play-error").hidden = true;
  const method = $("#explain-method").value;
  try {
    const row = await (await api("/api/explain", { run: state.model.run, record: record(), method })).json();
    const scores = (row.methods[method] || {}).word_scores || [];
    const values = scores.map((s) => (typeof s === "number" ? s : (s.score ?? s[1] ?? 0)));
    const top = Math.max(1e-9, ...values.map(Math.abs));
    $("#play-explain").innerHTML = `<h3>${esc(t("attributions"))} (${esc(method)})</h3><p class="attr">${row.words.map((w, i) => {
      const v = values[i] || 0, a = Math.abs(v) / top;
      const color = v >= 0 ? `rgba(31,136,61,${a.toFixed(2)})` : `rgba(207,34,46,${a.toFixed(2)})`;
      return `<span style="background:${color}" title="${esc(v.toFixed(4))}">${esc(w)}</span>`;
    }).join(" ")}</p>`;
  } catch (err) { showPlayError(err); }
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  $("#chat-log").appendChild(div);
  return div;
}

async function send() {
  const text = $("#chat-input").value.trim();
  if (!text) return;
  $("#chat-input").value = "";
  $("#play-error").hidden = true;
  state.chat.push({ role: "user", content: text });
  addMessage("user", text);
  const out = addMessage("assistant", "");
  const body = {
    run: state.model.run, max_new_tokens: Number($("#dec-max").value),
    temperature: Number($("#dec-temp").value), top_p: Number($("#dec-top").value),
    do_sample: $("#dec-sample").checked,
  };
  if (state.model.chat) body.messages = state.chat; else body.prompt = text;
  $("#send").disabled = true;
  try {
    const reader = (await api("/api/chat", body)).body.getReader();
    const decoder = new TextDecoder();
    let reply = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      reply += decoder.decode(value, { stream: true });
      out.textContent = reply;
      out.dataset.pieces = String(Number(out.dataset.pieces || 0) + 1);
    }
    state.chat.push({ role: "assistant", content: reply.trim() });
    out.dataset.done = "1";
  } catch (err) { showPlayError(err); }
  $("#send").disabled = false;
}

// ---- Wiring ----
async function main() {
  state.info = await getJSON("/api/info");
  $("#root").textContent = state.info.root;
  document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  $("#lang").addEventListener("click", () => {
    state.lang = state.lang === "zh" ? "en" : "zh";
    localStorage.setItem("lmforge-ui-lang", state.lang);
    applyLanguage();
  });
  $("#filter").addEventListener("input", renderRuns);
  $("#refresh").addEventListener("click", loadRuns);
  $("#compare").addEventListener("click", compareSelected);
  document.querySelectorAll("#runs th[data-sort]").forEach((th) => th.addEventListener("click", () => {
    state.sort = { key: th.dataset.sort, dir: state.sort.key === th.dataset.sort ? -state.sort.dir : 1 };
    renderRuns();
  }));
  $("#runs tbody").addEventListener("click", (ev) => {
    const el = ev.target;
    if (el.classList.contains("pick")) {
      const run = el.closest("tr").dataset.run;
      if (el.checked) state.selected.add(run); else state.selected.delete(run);
      $("#compare").disabled = state.selected.size < 2;
    } else if (el.dataset.open) { ev.preventDefault(); openReport(el.dataset.open); }
    else if (el.dataset.goto) { ev.preventDefault(); gotoRun(el.dataset.goto); }
  });
  $("#train-command").addEventListener("change", loadForm);
  $("#train-form").addEventListener("change", preview);
  $("#train-name").addEventListener("change", preview);
  $("#preview").addEventListener("click", preview);
  $("#start").addEventListener("click", startRun);
  $("#stop").addEventListener("click", async () => { await api("/api/stop", { run: state.live }); pollRun(); });
  $("#play-model").addEventListener("change", pickModel);
  $("#predict").addEventListener("click", predict);
  $("#explain").addEventListener("click", explain);
  $("#send").addEventListener("click", send);
  $("#chat-clear").addEventListener("click", () => { state.chat = []; $("#chat-log").innerHTML = ""; });
  applyLanguage();
  await loadRuns();
  document.body.dataset.readyAt = String(performance.now());  // the table is drawn
  document.body.dataset.ready = "1";
  const tab = location.hash.slice(1);
  if (["train", "play"].includes(tab)) showTab(tab);
  if (state.live) watchRun(state.live);
}

main().catch((err) => { document.body.insertAdjacentHTML("afterbegin", `<div class="error">${esc(err.message)}</div>`); });
