// The Gongji dashboard page: one EventSource on /events; every message is a full snapshot of the
// figures (gongji.dashboard.domain.Board.snapshot), drawn with plotly.js served by the dashboard.
"use strict";

const FUND_COLORS = { "310100": "#0f766e", "330100": "#4f46e5", "320100": "#d97706", "610100": "#e11d48" };
const FONT = { family: "system-ui, -apple-system, 'Segoe UI', 'Noto Sans', sans-serif", size: 12, color: "#344054" };
const CONFIG = { displayModeBar: false, responsive: true };
const count = new Intl.NumberFormat("en-US");
const yuan = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 2 });

function money(v) { return "¥" + (Math.abs(v) >= 1e6 ? compact.format(v) : yuan.format(v)); }
function clock(t) { return t ? new Date(t * 1000).toLocaleTimeString("en-GB") : "–"; }
function setText(id, text) { const el = document.getElementById(id); if (el.textContent !== text) el.textContent = text; }

function layout(extra) {
  return Object.assign({
    font: FONT, margin: { l: 48, r: 12, t: 8, b: 36 }, paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)", showlegend: false,
    xaxis: { gridcolor: "#eef1f6", zeroline: false, automargin: true },
    yaxis: { gridcolor: "#eef1f6", zeroline: false, automargin: true },
  }, extra || {});
}

function empty(text) {
  return layout({ xaxis: { visible: false }, yaxis: { visible: false },
    annotations: [{ text: text, showarrow: false, font: { color: "#98a2b3", size: 13 }, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }] });
}

function draw(id, data, lay) { Plotly.react(id, data, lay, CONFIG); }

function drawRate(s) {
  // From the first second with a settlement (at least the last 30 s): a fresh stream fills the chart.
  const series = s.rate.series, first = series.findIndex(p => p[1] > 0);
  const shown = series.slice(Math.max(0, Math.min(first < 0 ? series.length : first, series.length - 30)));
  const x = shown.map(p => new Date(p[0] * 1000));
  const y = shown.map(p => p[1]);
  draw("chart-rate", [{ x: x, y: y, type: "scatter", mode: "lines", line: { color: "#0f766e", width: 2, shape: "spline", smoothing: 0.6 },
    fill: "tozeroy", fillcolor: "rgba(15,118,110,0.12)", hovertemplate: "%{x|%H:%M:%S}: %{y} settlements<extra></extra>" }],
    layout({ yaxis: { gridcolor: "#eef1f6", zeroline: false, rangemode: "tozero", title: { text: "per second" } },
             xaxis: { gridcolor: "#eef1f6", tickformat: "%H:%M:%S" } }));
}

function drawFunds(s) {
  const total = s.funds.reduce((a, f) => a + Math.max(f.amount, 0), 0);
  if (!total) { draw("chart-funds", [], empty("no fund payments yet")); return; }
  draw("chart-funds", [{ type: "pie", hole: 0.58, sort: false, labels: s.funds.map(f => f.name + " " + f.code),
    values: s.funds.map(f => Math.max(f.amount, 0)), marker: { colors: s.funds.map(f => FUND_COLORS[f.code]) },
    textinfo: "percent", textposition: "inside", insidetextorientation: "horizontal", hovertemplate: "%{label}<br>¥%{value:,.2f}<extra></extra>" }],
    layout({ showlegend: true, legend: { orientation: "v", x: 1, y: 0.5, font: { size: 11 } }, margin: { l: 4, r: 4, t: 12, b: 12 },
      uniformtext: { minsize: 10, mode: "hide" },
      annotations: [{ text: "<b>" + money(total) + "</b><br><span style='font-size:11px;color:#667085'>fund paid</span>",
        showarrow: false, font: { size: 15 } }] }));
}

function stackedByFund(id, rows, labelOf, funds, emptyText) {
  if (!rows.length) { draw(id, [], empty(emptyText)); return; }
  const traces = funds.map(f => ({ type: "bar", name: f.name, y: rows.map(labelOf), x: rows.map(r => r.by_fund[f.code]),
    orientation: "h", marker: { color: FUND_COLORS[f.code] },
    customdata: rows.map(r => r.settlements), hovertemplate: f.name + ": ¥%{x:,.2f}<br>%{customdata} settlements<extra>%{y}</extra>" }));
  draw(id, traces, layout({ barmode: "relative", showlegend: true, legend: { orientation: "h", y: -0.18, font: { size: 11 } },
    margin: { l: 8, r: 12, t: 4, b: 30 }, xaxis: { gridcolor: "#eef1f6", tickprefix: "¥", automargin: true },
    yaxis: { automargin: true, autorange: "reversed" } }));
}

function drawFlows(s) {
  if (!s.flows.length) { draw("chart-flows", [], empty("everyone treated in their own region so far")); return; }
  const left = [...new Set(s.flows.map(f => f.insured))], right = [...new Set(s.flows.map(f => f.treated))];
  const labels = left.map(l => "insured in " + l).concat(right.map(r => "treated in " + r));
  draw("chart-flows", [{ type: "sankey", arrangement: "snap",
    node: { label: labels, pad: 18, thickness: 16, color: left.map(() => "#13315c").concat(right.map(() => "#0f766e")) },
    link: { source: s.flows.map(f => left.indexOf(f.insured)), target: s.flows.map(f => left.length + right.indexOf(f.treated)),
      value: s.flows.map(f => Math.max(f.settlements, 0.0001)), color: s.flows.map((f, i) => ["rgba(79,70,229,0.35)", "rgba(15,118,110,0.35)", "rgba(217,119,6,0.35)"][left.indexOf(f.insured) % 3]),
      customdata: s.flows.map(f => money(f.fund_paid)),
      hovertemplate: "%{source.label} → %{target.label}<br>%{value} settlements, fund %{customdata}<extra></extra>" } }],
    layout({ margin: { l: 8, r: 8, t: 8, b: 8 } }));
}

function drawAccounts(s) {
  const m = s.money, parts = [["Personal account", m.acct_pay, "#0f766e"], ["Family mutual aid", m.acct_mulaid_pay, "#4f46e5"],
    ["Cash", m.psn_cash_pay, "#94a3b8"]];
  if (!parts.some(p => p[1])) { draw("chart-accounts", [], empty("no personal payments yet")); return; }
  draw("chart-accounts", [{ type: "bar", x: parts.map(p => p[0]), y: parts.map(p => p[1]), marker: { color: parts.map(p => p[2]) },
    text: parts.map(p => money(p[1])), textposition: "outside", cliponaxis: false, hovertemplate: "%{x}: ¥%{y:,.2f}<extra></extra>" }],
    layout({ yaxis: { gridcolor: "#eef1f6", tickprefix: "¥", rangemode: "tozero" }, margin: { l: 56, r: 12, t: 22, b: 30 } }));
}

function hbars(id, rows, label, value, color, emptyText) {
  if (!rows.length) { draw(id, [], empty(emptyText)); return; }
  draw(id, [{ type: "bar", orientation: "h", y: rows.map(label), x: rows.map(value), marker: { color: color },
    text: rows.map(r => count.format(value(r))), textposition: "auto", hovertemplate: "%{y}: %{x}<extra></extra>" }],
    layout({ margin: { l: 8, r: 12, t: 4, b: 24 }, yaxis: { automargin: true, autorange: "reversed" },
      xaxis: { gridcolor: "#eef1f6", rangemode: "tozero" } }));
}

function drawLag(s) {
  if (!s.lag.length) { draw("chart-lag", [], empty("measuring…")); return; }
  const rows = s.lag.map(r => ({ label: r.service + (r.lag === null ? " (no offsets)" : ""), lag: r.lag || 0, group: r.group }));
  draw("chart-lag", [{ type: "bar", x: rows.map(r => r.label), y: rows.map(r => r.lag),
    marker: { color: rows.map(r => r.lag > 1000 ? "#e11d48" : r.lag > 100 ? "#d97706" : "#16a34a") },
    text: rows.map(r => count.format(r.lag)), textposition: "outside", cliponaxis: false, customdata: rows.map(r => r.group),
    hovertemplate: "%{x} (group %{customdata}): %{y} behind<extra></extra>" }],
    layout({ margin: { l: 40, r: 12, t: 20, b: 30 }, yaxis: { gridcolor: "#eef1f6", rangemode: "tozero" } }));
}

function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; }

function drawSignals(s) {
  const box = document.getElementById("signals");
  setText("signals-note", s.counts.fraud_signals ? count.format(s.counts.fraud_signals) + " since start · "
    + s.signal_rules.map(r => r.rule + " " + r.count).join(", ") : "fraud.signals");
  const ids = s.signals.map(x => x.signal_id).join(",");
  if (box.dataset.ids === ids) return;
  box.dataset.ids = ids;
  box.replaceChildren();
  if (!s.signals.length) { box.appendChild(el("div", "empty", "No signals yet.")); return; }
  for (const x of s.signals) {
    const card = el("div", "signal sev-" + x.severity);
    card.dataset.id = x.signal_id;
    const top = el("div", "top");
    top.append(el("span", "rule", x.rule_id), el("span", "tag " + x.severity, x.severity), el("span", "tag " + x.category, x.category.replace("_", " ")),
      el("span", "tag", x.subject_type + " " + x.subject_id));
    const meta = [x.count + " counted (" + x.threshold + ")"];
    if (x.amount !== null) meta.push(money(x.amount));
    if (x.admdvs) meta.push("region " + x.admdvs);
    meta.push(x.evidence + " claim(s) as evidence", "window " + (x.window_start || "").slice(0, 16).replace("T", " "));
    card.append(top, el("div", "reason", x.reason), el("div", "meta", meta.join(" · ")));
    box.appendChild(card);
  }
}

function drawStatements(s) {
  const box = document.getElementById("statements");
  const ids = s.statements.map(x => x.statement_id + x.net_to_a).join(",");
  if (box.dataset.ids === ids) return;
  box.dataset.ids = ids;
  box.replaceChildren();
  if (!s.statements.length) { box.appendChild(el("div", "empty", "No month closed yet.")); return; }
  const table = el("table"), head = el("tr");
  head.append(el("th", "", "month"), el("th", "", "regions"), el("th", "num", "net to first"));
  table.appendChild(head);
  for (const x of s.statements) {
    const row = el("tr");
    row.append(el("td", "", x.ym), el("td", "", x.region_a + " ⇄ " + x.region_b), el("td", "num", money(x.net_to_a)));
    table.appendChild(row);
  }
  box.appendChild(table);
}

function render(s) {
  const c = s.counts, m = s.money;
  setText("kpi-rate", count.format(Math.round(s.rate.now * 10) / 10));
  setText("kpi-settlements", count.format(c.settlements));
  setText("kpi-settlements-note", count.format(c.reversals) + " reversed · " + count.format(c.rejections) + " refused · "
    + count.format(c.dead_letters) + " dead letters");
  setText("kpi-fund", money(m.fund_pay_sumamt));
  setText("kpi-fund-note", "of " + money(m.medfee_sumamt) + " medical fees");
  setText("kpi-acct", money(m.acct_pay));
  setText("kpi-mulaid", money(m.acct_mulaid_pay));
  setText("kpi-mulaid-note", count.format(c.mulaid_claims) + " claims helped by a family account");
  setText("kpi-cap", (s.cap.share * 100).toFixed(1) + "%");
  setText("kpi-cap-note", count.format(s.cap.reached) + " of " + count.format(s.cap.persons) + " persons (general outpatient)");
  drawRate(s); drawFunds(s);
  stackedByFund("chart-regions", s.regions, r => r.label, s.funds, "no settlements yet");
  stackedByFund("chart-levels", s.levels, r => r.level, s.funds, "no settlements yet");
  drawFlows(s); drawAccounts(s);
  hbars("chart-rejections", s.rejections, r => r.code, r => r.count, "#f59e0b", "no rejections");
  hbars("chart-dead", s.dead_letters, r => r.reason, r => r.count, "#64748b", "no dead letters");
  drawLag(s); drawSignals(s); drawStatements(s);
  setText("since", "counting since " + clock(s.since) + " (last " + Math.round(s.lookback_seconds / 60) + " min on start)");
  setText("updated", "updated " + clock(s.generated_at) + " · dashboard " + s.instance);
  document.body.dataset.instance = s.instance;
  document.body.dataset.updates = String(Number(document.body.dataset.updates) + 1);
}

function status(state, text) {
  const el = document.getElementById("status");
  el.dataset.state = state;
  setText("status-text", text);
}

// EventSource reconnects by itself (the server asks for 1 s); should the browser give up (an
// answer that is not an event stream, e.g. while the service restarts), open a new one, unless the
// dashboard no longer takes our session (expired, logged out, credentials changed): then the page
// is loaded again, which shows the login form.
function connect() {
  const source = new EventSource("/events");
  source.addEventListener("snapshot", ev => { status("live", "live"); render(JSON.parse(ev.data)); });
  source.onopen = () => status("live", "live");
  source.onerror = () => {
    status("reconnecting", "reconnecting…");
    if (source.readyState !== EventSource.CLOSED) return;
    fetch("/snapshot.json", { method: "HEAD", cache: "no-store" })
      .then(r => { if (r.status === 401) location.reload(); else setTimeout(connect, 1000); })
      .catch(() => setTimeout(connect, 1000));
  };
}
connect();
