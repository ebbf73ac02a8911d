// The Gongji dashboard page: one EventSource on /events; every message is a full snapshot of the
// figures (gongji.dashboard.domain.Board.snapshot), drawn with plotly.js served by the dashboard.
// Labels in Chinese by default, English at a click (remembered in localStorage); the period panel
// shows the live figures or the ledger's for today or this month (/period.json).
"use strict";

const FUND_COLORS = { "310100": "#0f766e", "330100": "#4f46e5", "320100": "#d97706", "610100": "#e11d48" };
const FONT = { family: "system-ui, -apple-system, 'Segoe UI', 'Noto Sans', 'Noto Sans CJK SC', 'WenQuanYi Micro Hei', sans-serif",
  size: 12, color: "#344054" };
const CONFIG = { displayModeBar: false, responsive: true };

// Every label the page shows, in both languages; elements carry data-i18n="key".
const TEXT = {
  zh: {
    subtitle: "职工医保门诊共济保障 · 实时结算", connecting: "连接中…", live: "实时", reconnecting: "重新连接中…",
    kpi_rate: "每秒结算", kpi_rate_note: "近 5 秒，按发布时间", kpi_settlements: "结算笔数（扣除冲销）",
    kpi_fund: "基金支付", kpi_acct: "个人账户支付", kpi_mulaid: "家庭共济", kpi_cap: "达年度限额",
    settlements_note: "{settled} 笔结算 · {reversed} 笔冲销 · {refused} 笔拒付 · {dead} 条死信",
    fund_note: "医疗费总额 {fees}", mulaid_note: "{n} 笔由家庭账户共济", cap_note: "{reached} / {persons} 人（普通门诊）",
    rate_title: "每秒结算", rate_note: "近两分钟", per_second: "每秒",
    period_title: "本期", period_live: "近 15 分钟（实时）", period_today: "今日", period_month: "本月",
    period_live_note: "实时：{since} 起", period_ledger_note: "账本：{from} 至 {to}",
    period_unavailable: "账本不可用：{reason}", period_loading: "读取账本中…",
    f_claims: "结算笔数（扣除冲销）", f_reversals: "其中冲销", f_medfee: "医疗费总额", f_fund: "基金支付",
    f_acct: "个人账户（含共济）", f_cash: "现金支付", f_cross: "异地就医笔数", f_cross_fund: "异地就医基金支付",
    funds_title: "各基金支付", net_note: "扣除冲销", fund_paid: "基金支付",
    regions_title: "按参保地", regions_note: "基金支付，分基金", levels_title: "按机构等级",
    flows_title: "异地就医", flows_note: "参保地 → 就医地，扣除冲销", flows_none: "目前均在参保地就医",
    insured_in: "参保地 ", treated_in: "就医地 ", col_flow: "参保地 → 就医地", col_claims: "笔数",
    col_medfee: "医疗费", col_fund: "基金支付",
    accounts_title: "个人负担由谁支付", accounts_note: "个人账户、家庭共济、现金",
    acct: "个人账户", mulaid: "家庭共济", cash: "现金", no_personal: "暂无个人支付",
    rejections_title: "拒付", no_rejections: "暂无拒付", dead_title: "死信", dead_note: "按原因", no_dead: "暂无死信",
    lag_title: "消费积压", lag_note: "各服务落后消息数", measuring: "测量中…", no_offsets: "（无位移）",
    signals_title: "最新欺诈与监管信号", no_signals: "暂无信号。", signals_since: "启动以来 {n} 条 · {rules}",
    counted: "计 {count}（阈值 {threshold}）", region: "地区 {code}", evidence: "{n} 笔结算为证", window: "时段 {start}",
    statements_title: "清算单", no_statements: "尚无已关账月份。", col_month: "月份", col_regions: "地区",
    col_net: "应收（前者）", no_settlements: "暂无结算",
    since: "自 {time} 起计（启动时回看 {minutes} 分钟）", updated: "更新于 {time} · 看板 {instance}",
    footer_note: "仅显示假名标识 · 只读", settlements_word: "笔结算",
    fund_310100: "统筹基金", fund_330100: "大额医疗补助", fund_320100: "公务员医疗补助", fund_610100: "医疗救助",
    "Level 3 hospitals": "三级医院", "Level 2 hospitals": "二级医院", "Level 1 & grassroots": "一级及基层",
    "Retail pharmacies": "零售药店", "Unknown (not in registry yet)": "未知（尚未登记）",
    fraud: "欺诈", supervision: "监管", relief_review: "救助评估", high: "高", medium: "中", low: "低",
    person: "人员", institution: "机构",
  },
  en: {
    subtitle: "employee medical insurance · outpatient mutual aid · live settlement", connecting: "connecting…",
    live: "live", reconnecting: "reconnecting…",
    kpi_rate: "Settlements / second", kpi_rate_note: "last 5 s, by publish time", kpi_settlements: "Settlements, net",
    kpi_fund: "Fund paid", kpi_acct: "Personal accounts", kpi_mulaid: "Family mutual aid", kpi_cap: "Reached annual cap",
    settlements_note: "{settled} settled · {reversed} reversed · {refused} refused · {dead} dead letters",
    fund_note: "of {fees} medical fees", mulaid_note: "{n} claims helped by a family account",
    cap_note: "{reached} of {persons} persons (general outpatient)",
    rate_title: "Settlements per second", rate_note: "last two minutes", per_second: "per second",
    period_title: "Period", period_live: "Last 15 min (live)", period_today: "Today", period_month: "This month",
    period_live_note: "live since {since}", period_ledger_note: "ledger: {from} to {to}",
    period_unavailable: "ledger unavailable: {reason}", period_loading: "reading the ledger…",
    f_claims: "Settlements, net of reversals", f_reversals: "of which reversed", f_medfee: "Medical fees",
    f_fund: "Fund paid", f_acct: "Personal accounts (incl. family)", f_cash: "Cash", f_cross: "Cross-region settlements",
    f_cross_fund: "Cross-region fund paid",
    funds_title: "Fund paid by fund", net_note: "net of reversals", fund_paid: "fund paid",
    regions_title: "By insured region", regions_note: "fund paid, by fund", levels_title: "By institution level",
    flows_title: "Cross-region care", flows_note: "insured region → region of treatment, net",
    flows_none: "everyone treated in their own region so far", insured_in: "insured in ", treated_in: "treated in ",
    col_flow: "insured → treated", col_claims: "claims", col_medfee: "medical fees", col_fund: "fund paid",
    accounts_title: "Who paid the personal part", accounts_note: "account, family account, cash",
    acct: "Personal account", mulaid: "Family mutual aid", cash: "Cash", no_personal: "no personal payments yet",
    rejections_title: "Rejections", no_rejections: "no rejections", dead_title: "Dead letters", dead_note: "by reason",
    no_dead: "no dead letters", lag_title: "Consumer lag", lag_note: "messages behind, per service",
    measuring: "measuring…", no_offsets: " (no offsets)",
    signals_title: "Latest fraud & supervision signals", no_signals: "No signals yet.",
    signals_since: "{n} since start · {rules}", counted: "{count} counted ({threshold})", region: "region {code}",
    evidence: "{n} claim(s) as evidence", window: "window {start}",
    statements_title: "Clearing statements", no_statements: "No month closed yet.", col_month: "month",
    col_regions: "regions", col_net: "net to first", no_settlements: "no settlements yet",
    since: "counting since {time} (last {minutes} min on start)", updated: "updated {time} · dashboard {instance}",
    footer_note: "pseudonymous ids only · read-only", settlements_word: "settlements",
    fund_310100: "Pooling fund", fund_330100: "Large-amount aid", fund_320100: "Civil-servant subsidy",
    fund_610100: "Medical assistance",
    fraud: "fraud", supervision: "supervision", relief_review: "relief review", high: "high", medium: "medium", low: "low",
    person: "person", institution: "institution",
  },
};
const LANG_KEY = "gongji.dashboard.lang";
let lang = TEXT[localStorage.getItem(LANG_KEY)] ? localStorage.getItem(LANG_KEY) : "zh";
let count, yuan, compact;
let last = null;  // the latest snapshot, drawn again when the language changes

function t(key, values) {
  const text = (TEXT[lang][key] !== undefined ? TEXT[lang][key] : key);
  return values ? text.replace(/\{(\w+)\}/g, (_, name) => values[name]) : text;
}

function setLanguage(next) {
  lang = next;
  localStorage.setItem(LANG_KEY, lang);
  const locale = lang === "zh" ? "zh-CN" : "en-US";
  count = new Intl.NumberFormat(locale);
  yuan = new Intl.NumberFormat(locale, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  compact = new Intl.NumberFormat(locale, { notation: "compact", maximumFractionDigits: 2 });
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = lang === "zh" ? "共济 Gongji · 实时结算" : "Gongji 共济 · live settlement";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  document.getElementById("lang").textContent = lang === "zh" ? "EN" : "中文";
  const state = document.getElementById("status").dataset.state;
  setText("status-text", t(state === "connecting" ? "connecting" : state));
  if (last) render(last);
  drawPeriod();
}

function money(v) { return "¥" + (Math.abs(v) >= 1e6 ? compact.format(v) : yuan.format(v)); }
function kpiMoney(v) { return "¥" + (Math.abs(v) >= 1e5 ? compact.format(v) : yuan.format(v)); }  // fits a KPI tile
function clock(t) { return t ? new Date(t * 1000).toLocaleTimeString("en-GB") : "–"; }
function setText(id, text) { const el = document.getElementById(id); if (el.textContent !== text) el.textContent = text; }
function fundName(f) { return t("fund_" + f.code); }

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
    fill: "tozeroy", fillcolor: "rgba(15,118,110,0.12)", hovertemplate: "%{x|%H:%M:%S}: %{y} " + t("settlements_word") + "<extra></extra>" }],
    layout({ yaxis: { gridcolor: "#eef1f6", zeroline: false, rangemode: "tozero", title: { text: t("per_second") } },
             xaxis: { gridcolor: "#eef1f6", tickformat: "%H:%M:%S" } }));
}

function drawFunds(s) {
  const total = s.funds.reduce((a, f) => a + Math.max(f.amount, 0), 0);
  if (!total) { draw("chart-funds", [], empty(t("no_settlements"))); return; }
  draw("chart-funds", [{ type: "pie", hole: 0.58, sort: false, labels: s.funds.map(f => fundName(f) + " " + f.code),
    values: s.funds.map(f => Math.max(f.amount, 0)), marker: { colors: s.funds.map(f => FUND_COLORS[f.code]) },
    textinfo: "percent", textposition: "inside", insidetextorientation: "horizontal", hovertemplate: "%{label}<br>¥%{value:,.2f}<extra></extra>" }],
    layout({ showlegend: true, legend: { orientation: "v", x: 1, y: 0.5, font: { size: 11 } }, margin: { l: 4, r: 4, t: 12, b: 12 },
      uniformtext: { minsize: 10, mode: "hide" },
      annotations: [{ text: "<b>" + money(total) + "</b><br><span style='font-size:11px;color:#667085'>" + t("fund_paid") + "</span>",
        showarrow: false, font: { size: 15 } }] }));
}

function stackedByFund(id, rows, labelOf, funds, emptyText) {
  if (!rows.length) { draw(id, [], empty(emptyText)); return; }
  const traces = funds.map(f => ({ type: "bar", name: fundName(f), y: rows.map(labelOf), x: rows.map(r => r.by_fund[f.code]),
    orientation: "h", marker: { color: FUND_COLORS[f.code] },
    customdata: rows.map(r => r.claims), hovertemplate: fundName(f) + ": ¥%{x:,.2f}<br>%{customdata} " + t("settlements_word") + "<extra>%{y}</extra>" }));
  draw(id, traces, layout({ barmode: "relative", showlegend: true, legend: { orientation: "h", y: -0.18, font: { size: 11 } },
    margin: { l: 8, r: 12, t: 4, b: 30 }, xaxis: { gridcolor: "#eef1f6", tickprefix: "¥", automargin: true },
    yaxis: { automargin: true, autorange: "reversed" } }));
}

function drawFlows(s) {
  const flows = s.flows.filter(f => f.claims > 0);
  if (!flows.length) { draw("chart-flows", [], empty(t("flows_none"))); return; }
  const left = [...new Set(flows.map(f => f.insured))], right = [...new Set(flows.map(f => f.treated))];
  const labels = left.map(l => t("insured_in") + l).concat(right.map(r => t("treated_in") + r));
  draw("chart-flows", [{ type: "sankey", arrangement: "snap",
    node: { label: labels, pad: 14, thickness: 14, color: left.map(() => "#13315c").concat(right.map(() => "#0f766e")) },
    link: { source: flows.map(f => left.indexOf(f.insured)), target: flows.map(f => left.length + right.indexOf(f.treated)),
      value: flows.map(f => f.claims), color: flows.map(f => ["rgba(79,70,229,0.35)", "rgba(15,118,110,0.35)", "rgba(217,119,6,0.35)"][left.indexOf(f.insured) % 3]),
      customdata: flows.map(f => money(f.fund_paid)),
      hovertemplate: "%{source.label} → %{target.label}<br>%{value} " + t("settlements_word") + ", " + t("fund_paid") + " %{customdata}<extra></extra>" } }],
    layout({ margin: { l: 8, r: 8, t: 8, b: 8 } }));
}

// The cross-region flows as a table: claims net of reversals, medical fees and fund paid per pair.
function drawFlowTable(flows) {
  const box = document.getElementById("flows");
  const head = el("tr");
  head.append(el("th", "", t("col_flow")), el("th", "num", t("col_claims")), el("th", "num", t("col_medfee")),
    el("th", "num", t("col_fund")));
  const rows = [head];
  for (const f of flows) {
    const row = el("tr");
    row.dataset.flow = f.insured + ">" + f.treated;
    row.append(el("td", "", f.insured + " → " + f.treated), el("td", "num", count.format(f.claims)),
      el("td", "num", money(f.medfee)), el("td", "num", money(f.fund_paid)));
    rows.push(row);
  }
  if (!flows.length) { const row = el("tr"), cell = el("td", "empty", t("flows_none")); cell.colSpan = 4; row.append(cell); rows.push(row); }
  box.replaceChildren(...rows);
}

function drawAccounts(s) {
  const m = s.money, parts = [[t("acct"), m.acct_pay, "#0f766e"], [t("mulaid"), m.acct_mulaid_pay, "#4f46e5"],
    [t("cash"), m.psn_cash_pay, "#94a3b8"]];
  if (!parts.some(p => p[1])) { draw("chart-accounts", [], empty(t("no_personal"))); return; }
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
  if (!s.lag.length) { draw("chart-lag", [], empty(t("measuring"))); return; }
  const rows = s.lag.map(r => ({ label: r.service + (r.lag === null ? t("no_offsets") : ""), lag: r.lag || 0, group: r.group }));
  draw("chart-lag", [{ type: "bar", x: rows.map(r => r.label), y: rows.map(r => r.lag),
    marker: { color: rows.map(r => r.lag > 1000 ? "#e11d48" : r.lag > 100 ? "#d97706" : "#16a34a") },
    text: rows.map(r => count.format(r.lag)), textposition: "outside", cliponaxis: false, customdata: rows.map(r => r.group),
    hovertemplate: "%{x} (group %{customdata}): %{y} behind<extra></extra>" }],
    layout({ margin: { l: 40, r: 12, t: 20, b: 30 }, yaxis: { gridcolor: "#eef1f6", rangemode: "tozero" } }));
}

function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; }

function drawSignals(s) {
  const box = document.getElementById("signals");
  setText("signals-note", s.counts.fraud_signals ? t("signals_since", { n: count.format(s.counts.fraud_signals),
    rules: s.signal_rules.map(r => r.rule + " " + r.count).join(", ") }) : "fraud.signals");
  const ids = lang + s.signals.map(x => x.signal_id).join(",");
  if (box.dataset.ids === ids) return;
  box.dataset.ids = ids;
  box.replaceChildren();
  if (!s.signals.length) { box.appendChild(el("div", "empty", t("no_signals"))); return; }
  for (const x of s.signals) {
    const card = el("div", "signal sev-" + x.severity);
    card.dataset.id = x.signal_id;
    const top = el("div", "top");
    top.append(el("span", "rule", x.rule_id), el("span", "tag " + x.severity, t(x.severity)), el("span", "tag " + x.category, t(x.category)),
      el("span", "tag", t(x.subject_type) + " " + x.subject_id));
    const meta = [t("counted", { count: x.count, threshold: x.threshold })];
    if (x.amount !== null) meta.push(money(x.amount));
    if (x.admdvs) meta.push(t("region", { code: x.admdvs }));
    meta.push(t("evidence", { n: x.evidence }), t("window", { start: (x.window_start || "").slice(0, 16).replace("T", " ") }));
    card.append(top, el("div", "reason", x.reason), el("div", "meta", meta.join(" · ")));
    box.appendChild(card);
  }
}

function drawStatements(s) {
  const box = document.getElementById("statements");
  const ids = lang + s.statements.map(x => x.statement_id + x.net_to_a).join(",");
  if (box.dataset.ids === ids) return;
  box.dataset.ids = ids;
  box.replaceChildren();
  if (!s.statements.length) { box.appendChild(el("div", "empty", t("no_statements"))); return; }
  const table = el("table"), head = el("tr");
  head.append(el("th", "", t("col_month")), el("th", "", t("col_regions")), el("th", "num", t("col_net")));
  table.appendChild(head);
  for (const x of s.statements) {
    const row = el("tr");
    row.append(el("td", "", x.ym), el("td", "", x.region_a + " ⇄ " + x.region_b), el("td", "num", money(x.net_to_a)));
    table.appendChild(row);
  }
  box.appendChild(table);
}

function render(s) {
  last = s;
  const c = s.counts, m = s.money;
  setText("kpi-rate", count.format(Math.round(s.rate.now * 10) / 10));
  setText("kpi-settlements", count.format(c.net_settlements));
  setText("kpi-settlements-note", t("settlements_note", { settled: count.format(c.settlements),
    reversed: count.format(c.reversals), refused: count.format(c.rejections), dead: count.format(c.dead_letters) }));
  setText("kpi-fund", kpiMoney(m.fund_pay_sumamt));
  setText("kpi-fund-note", t("fund_note", { fees: money(m.medfee_sumamt) }));
  setText("kpi-acct", kpiMoney(m.acct_pay));
  setText("kpi-mulaid", kpiMoney(m.acct_mulaid_pay));
  setText("kpi-mulaid-note", t("mulaid_note", { n: count.format(c.mulaid_claims) }));
  setText("kpi-cap", (s.cap.share * 100).toFixed(1) + "%");
  setText("kpi-cap-note", t("cap_note", { reached: count.format(s.cap.reached), persons: count.format(s.cap.persons) }));
  drawRate(s); drawFunds(s);
  stackedByFund("chart-regions", s.regions, r => r.label, s.funds, t("no_settlements"));
  stackedByFund("chart-levels", s.levels, r => t(r.level), s.funds, t("no_settlements"));
  drawFlows(s); drawAccounts(s);
  hbars("chart-rejections", s.rejections, r => r.code, r => r.count, "#f59e0b", t("no_rejections"));
  hbars("chart-dead", s.dead_letters, r => r.reason, r => r.count, "#64748b", t("no_dead"));
  drawLag(s); drawSignals(s); drawStatements(s);
  if (period === "live") drawPeriod();
  setText("since", t("since", { time: clock(s.since), minutes: Math.round(s.lookback_seconds / 60) }));
  setText("updated", t("updated", { time: clock(s.generated_at), instance: s.instance }));
  document.body.dataset.instance = s.instance;
  document.body.dataset.updates = String(Number(document.body.dataset.updates) + 1);
}

// ---------------------------------------------------------------- the period panel
// "live": the figures above (the last 15 minutes, from the topics); "today", "month": the ledger's
// (PostgreSQL, every booked settlement and reversal of the period), asked for every LEDGER_EVERY ms.
const PERIOD_KEY = "gongji.dashboard.period", LEDGER_EVERY = 10000;
let period = ["live", "today", "month"].includes(localStorage.getItem(PERIOD_KEY)) ? localStorage.getItem(PERIOD_KEY) : "live";
let ledger = null, ledgerTimer = null;

function liveFigures(s) {
  const c = s.counts, m = s.money, flows = s.flows;
  return { claims: c.net_settlements, reversals: c.reversals, medfee: m.medfee_sumamt, fund_paid: m.fund_pay_sumamt,
    acct: m.acct_pay + m.acct_mulaid_pay, cash: m.psn_cash_pay, flows: flows };
}

function drawPeriod() {
  for (const b of document.querySelectorAll(".period")) b.setAttribute("aria-selected", String(b.dataset.period === period));
  const box = document.getElementById("period-figures");
  box.dataset.period = period;
  let f = null;
  if (period === "live") {
    if (last) { f = liveFigures(last); setText("period-note", t("period_live_note", { since: clock(last.since) })); }
  } else if (ledger && ledger.period === period && !ledger.error) {
    f = ledger;
    setText("period-note", t("period_ledger_note", { from: ledger.from, to: ledger.to }));
  } else {
    setText("period-note", ledger && ledger.period === period ? t("period_unavailable", { reason: ledger.error }) : t("period_loading"));
  }
  box.dataset.ready = String(f !== null);
  const rows = f ? [["f_claims", count.format(f.claims)], ["f_reversals", count.format(f.reversals)],
    ["f_medfee", money(f.medfee)], ["f_fund", money(f.fund_paid)], ["f_acct", money(f.acct)], ["f_cash", money(f.cash)],
    ["f_cross", count.format(f.flows.reduce((a, x) => a + x.claims, 0))],
    ["f_cross_fund", money(f.flows.reduce((a, x) => a + x.fund_paid, 0))]] : [];
  box.replaceChildren(...rows.map(([key, value]) => {
    const row = el("tr"); row.dataset.figure = key; row.append(el("th", "", t(key)), el("td", "num", value)); return row;
  }));
  drawFlowTable(f ? f.flows : []);
}

function askLedger() {
  const asked = period;
  clearTimeout(ledgerTimer);
  if (asked === "live") return;
  fetch("/period.json?period=" + asked, { cache: "no-store" })
    .then(r => r.json().then(body => ({ ok: r.ok, body: body })))
    .then(({ ok, body }) => { if (period === asked) { ledger = ok ? body : { period: asked, error: body.error || "?" }; drawPeriod(); } })
    .catch(error => { if (period === asked) { ledger = { period: asked, error: String(error) }; drawPeriod(); } })
    .finally(() => { if (period === asked) ledgerTimer = setTimeout(askLedger, LEDGER_EVERY); });
}

function choosePeriod(next) {
  period = next;
  localStorage.setItem(PERIOD_KEY, period);
  drawPeriod();
  askLedger();
}

function status(state) {
  const el = document.getElementById("status");
  el.dataset.state = state;
  setText("status-text", t(state));
}

// EventSource reconnects by itself (the server asks for 1 s); should the browser give up (an
// answer that is not an event stream, e.g. while the service restarts), open a new one, unless the
// dashboard no longer takes our session (expired, logged out, credentials changed): then the page
// is loaded again, which shows the login form.
function connect() {
  const source = new EventSource("/events");
  source.addEventListener("snapshot", ev => { status("live"); render(JSON.parse(ev.data)); });
  source.onopen = () => status("live");
  source.onerror = () => {
    status("reconnecting");
    if (source.readyState !== EventSource.CLOSED) return;
    fetch("/snapshot.json", { method: "HEAD", cache: "no-store" })
      .then(r => { if (r.status === 401) location.reload(); else setTimeout(connect, 1000); })
      .catch(() => setTimeout(connect, 1000));
  };
}

document.getElementById("lang").addEventListener("click", () => setLanguage(lang === "zh" ? "en" : "zh"));
for (const b of document.querySelectorAll(".period")) b.addEventListener("click", () => choosePeriod(b.dataset.period));
setLanguage(lang);
choosePeriod(period);
connect();
