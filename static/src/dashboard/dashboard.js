import { runQueries } from "./api.js";
import { renderError, renderRows, renderStream, rowLabel } from "./breakdown.js";
import { MainChart } from "./chart.js";
import { formatAge, formatChange, formatMetric, setMetrics } from "./format.js";
import { Freshness } from "./freshness.js";
import { LiveSocket, LiveStatus } from "./socket.js";
import { MINUTE, floorMinute, parseBucket, wallTime } from "./time.js";
import { dateRange, readState, timeDimension, v2Filters, writeState } from "./url.js";

const RENDER_INTERVAL = 500; // at most two UI updates per second
const REFETCH_MIN_INTERVAL = 5000; // exact numbers follow the optimistic ones at most every 5 s
const REFETCH_DELAY = 1500;
const STREAM_LIMIT = 50;
const PROPS_PREFIX = "event:props:";

export class Dashboard {
  constructor(root, config) {
    this.root = root;
    this.config = config;
    // From the field registry (analytics.fields), in the page's config: the top row's metrics,
    // those that never shrink over a range that includes now, the dimensions' labels.
    this.topMetrics = config.top;
    this.growing = config.growing;
    this.labels = config.dimensionLabels;
    setMetrics(config.metrics);
    this.state = readState(location.search);
    this.top = {};
    this.points = [];
    this.stream = [];
    this.streamSeq = 0;
    this.generation = 0;
    this.deltaCount = 0;
    this.lastFetch = 0;
    this.lastRender = 0;
    this.dirty = false;
    this.status = new LiveStatus(document.getElementById("live-status"), document.getElementById("live-age"), formatAge);
    this.freshness = new Freshness(document.getElementById("freshness"), formatAge, () => Date.now() + this.status.clockOffset);
    this.chart = new MainChart(document.getElementById("main-chart"), document.getElementById("chart-legend"));
    this.panels = [...root.querySelectorAll("[data-panel]")];
    this.bindControls();
    this.syncControls();
    this.load({ withRecent: true });
    this.socket = new LiveSocket(config.socketPath, {
      onMessage: (m) => this.onMessage(m),
      onState: (s) => this.status.setState(s),
      onReconnect: () => this.load({ withRecent: true }),
    });
    // The realtime chart scrolls with the clock, client-side: no request involved.
    setInterval(() => this.tick(), 10000);
    setInterval(() => this.renderStreamAges(), 5000);
  }

  // ---- controls and URL state ----------------------------------------------------------------

  bindControls() {
    document.getElementById("controls").addEventListener("submit", (e) => e.preventDefault());
    const period = document.getElementById("period");
    const custom = document.getElementById("custom-range");
    period.addEventListener("change", () => {
      if (period.value === "custom") {
        custom.hidden = false;
        document.getElementById("from").focus();
        return;
      }
      custom.hidden = true;
      this.update({ period: period.value });
    });
    document.getElementById("apply-custom").addEventListener("click", () => {
      const from = document.getElementById("from").value;
      const to = document.getElementById("to").value;
      if (from && to && from <= to) this.update({ period: "custom", from, to });
    });
    document.getElementById("compare").addEventListener("change", (e) => this.update({ compare: e.target.checked }));
    for (const panel of this.panels) {
      const tabs = [...panel.querySelectorAll("[role=tab]")];
      for (const tab of tabs) {
        tab.addEventListener("click", () => this.selectTab(panel, tab.dataset.dimension));
        tab.addEventListener("keydown", (e) => {
          const i = tabs.indexOf(tab);
          const next = e.key === "ArrowRight" ? tabs[(i + 1) % tabs.length] : e.key === "ArrowLeft" ? tabs[(i - 1 + tabs.length) % tabs.length] : null;
          if (next) {
            e.preventDefault();
            next.focus();
            this.selectTab(panel, next.dataset.dimension);
          }
        });
      }
    }
  }

  syncControls() {
    const { state } = this;
    document.getElementById("period").value = state.period;
    document.getElementById("custom-range").hidden = state.period !== "custom";
    document.getElementById("from").value = state.from;
    document.getElementById("to").value = state.to;
    document.getElementById("compare").checked = state.compare;
    document.getElementById("compare").disabled = state.period === "realtime";
    for (const panel of this.panels) {
      const chosen = this.tabOf(panel);
      for (const tab of panel.querySelectorAll("[role=tab]")) {
        const selected = tab.dataset.dimension === chosen;
        tab.setAttribute("aria-selected", String(selected));
        tab.tabIndex = selected ? 0 : -1;
      }
    }
    this.renderChips();
    writeState(state);
  }

  tabOf(panel) {
    const id = panel.dataset.panel;
    const tabs = [...panel.querySelectorAll("[role=tab]")].map((t) => t.dataset.dimension);
    return tabs.includes(this.state.tabs[id]) ? this.state.tabs[id] : tabs[0];
  }

  selectTab(panel, dimension) {
    this.state.tabs[panel.dataset.panel] = dimension;
    this.syncControls();
    this.load({ only: [panel] });
  }

  update(changes) {
    Object.assign(this.state, changes);
    if (this.state.period === "realtime") this.state.compare = false;
    this.syncControls();
    this.load({});
  }

  addFilter(dimension, value) {
    if (value === null || value === undefined) return;
    const filters = this.state.filters.filter((f) => f.dimension !== dimension);
    filters.push({ dimension, value: String(value) });
    this.update({ filters });
  }

  renderChips() {
    const list = document.getElementById("filters");
    list.replaceChildren();
    for (const f of this.state.filters) {
      const li = document.createElement("li");
      li.className = "chip";
      li.dataset.dimension = f.dimension;
      li.dataset.value = f.value;
      const dim = f.dimension.startsWith(PROPS_PREFIX)
        ? `${this.labels[PROPS_PREFIX]} ${f.dimension.slice(PROPS_PREFIX.length)}`
        : this.labels[f.dimension] || f.dimension;
      const text = document.createElement("span");
      text.textContent = `${dim} is ${rowLabel(f.dimension, f.value)}`;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "chip-remove";
      remove.textContent = "×";
      remove.setAttribute("aria-label", `Remove filter ${dim} is ${f.value}`);
      remove.addEventListener("click", () => this.update({ filters: this.state.filters.filter((x) => x !== f) }));
      li.append(text, remove);
      list.append(li);
    }
  }

  // ---- data ------------------------------------------------------------------------------------

  base() {
    return { date_range: dateRange(this.state), filters: v2Filters(this.state) };
  }

  panelQuery(panel) {
    const dimension = this.tabOf(panel);
    const base = this.base();
    if (dimension === "props") return { id: `panel:${panel.dataset.panel}`, props: true, query: { ...base, metrics: ["visitors", "events"], pagination: { limit: 8 } } };
    const metrics = dimension.startsWith("event:") && dimension !== "event:page" ? ["visitors", "events"] : ["visitors"];
    const filters = dimension === "event:name" ? [...base.filters, ["is_not", "event:name", ["pageview"]]] : base.filters;
    return { id: `panel:${panel.dataset.panel}`, query: { ...base, filters, metrics, dimensions: [dimension], pagination: { limit: 9 } } };
  }

  async load({ only = null, withRecent = false, quiet = false }) {
    const generation = ++this.generation;
    const deltasAtStart = this.deltaCount;
    const queries = [];
    const base = this.base();
    const bucket = timeDimension(this.state);
    if (!only) {
      queries.push({ id: "top", query: { ...base, metrics: this.topMetrics }, compare: this.state.compare });
      queries.push({ id: "now", query: { date_range: "now", metrics: ["visitors"], filters: base.filters } });
      queries.push({ id: "chart", query: { ...base, metrics: ["visitors", "pageviews"], dimensions: [bucket], include: { time_labels: true } }, compare: this.state.compare });
    }
    for (const panel of only || this.panels) queries.push(this.panelQuery(panel));
    if (withRecent) queries.push({ id: "recent", recent: 30 });
    this.lastFetch = Date.now();
    if (!quiet) this.root.classList.add("loading");
    let answer;
    try {
      answer = await runQueries(this.config.queryUrl, queries);
    } catch (error) {
      this.root.classList.remove("loading");
      this.showError(String(error.message || error));
      return;
    }
    if (generation !== this.generation && !only) return; // a newer view superseded this one
    this.root.classList.remove("loading");
    this.hideError();
    const { byId, serverTime, live } = answer;
    if (serverTime) this.status.setServerTime(serverTime);
    const notLive = document.getElementById("not-live");
    if (notLive) notLive.hidden = live;
    // A delta that arrived while the queries ran may or may not be in their answer: counters that
    // only grow keep the larger value, and one more refetch settles the exact figures.
    // Only for a refetch of the same view (user-initiated loads change the view and start afresh).
    const raced = quiet && this.deltaCount !== deltasAtStart && this.state.filters.length === 0;
    if (byId.top) this.setTop(byId.top, raced);
    if (raced && this.includesNow()) this.scheduleRefetch();
    if (byId.now && byId.now.result) this.setMetric("visitors_now", firstMetric(byId.now.result));
    if (byId.chart) this.setChart(byId.chart, bucket);
    for (const panel of only || this.panels) this.setPanel(panel, byId[`panel:${panel.dataset.panel}`]);
    if (byId.recent && byId.recent.result) {
      const known = new Set(this.stream.map((e) => e.key));
      const fresh = byId.recent.result.events.map((e) => ({ ...e, key: `${e.ts}|${e.name}|${e.pathname}|${e.browser}|${e.country}` })).filter((e) => !known.has(e.key));
      this.stream = [...this.stream, ...fresh].sort((a, b) => b.ts - a.ts).slice(0, STREAM_LIMIT);
      if (this.stream.length) this.status.seen(this.stream[0].ts);
      this.renderStreamAges();
    }
  }

  showError(message) {
    let box = this.root.querySelector(".dash-error");
    if (!box) {
      box = document.createElement("p");
      box.className = "dash-error";
      box.setAttribute("role", "alert");
      this.root.querySelector(".top-row").before(box);
    }
    box.textContent = `Could not load the figures: ${message}`;
  }

  hideError() {
    const box = this.root.querySelector(".dash-error");
    if (box) box.remove();
  }

  setTop(entry, raced = false) {
    if (entry.error || !entry.result) {
      for (const metric of this.topMetrics) this.setMetric(metric, null, null);
      this.showError(entry.error || "no result");
      return;
    }
    const row = (entry.result.results || [])[0] || { metrics: [] };
    const names = (entry.result.query && entry.result.query.metrics) || this.topMetrics;
    this.topMetrics.forEach((metric) => {
      const i = names.indexOf(metric);
      const change = row.comparison && i >= 0 ? row.comparison.change[i] : undefined;
      let value = i >= 0 ? row.metrics[i] : null;
      if (raced && this.growing.includes(metric) && typeof this.top[metric] === "number") value = Math.max(value, this.top[metric]);
      this.setMetric(metric, value, this.state.compare ? change : undefined);
    });
  }

  setMetric(metric, value, change) {
    this.top[metric] = value;
    const el = this.root.querySelector(`[data-metric="${metric}"]`);
    if (!el) return;
    const before = el.dataset.value;
    el.dataset.value = value === null || value === undefined ? "" : String(value);
    el.querySelector(".metric-value").textContent = formatMetric(metric, value);
    if (before !== el.dataset.value && before !== "") {
      el.classList.remove("bump");
      void el.offsetWidth; // restart the highlight animation
      el.classList.add("bump");
    }
    const changeEl = el.querySelector(".metric-change");
    if (changeEl && change !== undefined) {
      const { text, cls } = formatChange(metric, change);
      changeEl.textContent = text;
      changeEl.className = `metric-change ${cls}`;
      changeEl.title = text ? "against the previous period" : "";
    } else if (changeEl && !this.state.compare) {
      changeEl.textContent = "";
    }
  }

  setChart(entry, bucket) {
    if (entry.error || !entry.result) {
      this.chart.set([], { bucket });
      return;
    }
    const tz = this.config.timezone;
    const byTime = new Map();
    for (const r of entry.result.results || []) {
      const t = parseBucket(String(r.dimensions[0]), tz);
      const previous = r.comparison ? r.comparison.metrics[0] : null;
      if (t !== null) byTime.set(t, { t, visitors: r.metrics[0] || 0, pageviews: r.metrics[1] || 0, previous });
    }
    for (const label of (entry.result.meta && entry.result.meta.time_labels) || []) {
      const t = parseBucket(String(label), tz);
      if (t !== null && !byTime.has(t)) byTime.set(t, { t, visitors: 0, pageviews: 0 });
    }
    let domain = null;
    if (this.state.period === "realtime") {
      domain = this.realtimeDomain();
      for (let t = floorMinute(domain[0]); t <= domain[1]; t += MINUTE) if (!byTime.has(t)) byTime.set(t, { t, visitors: 0, pageviews: 0 });
    }
    this.points = [...byTime.values()].sort((a, b) => a.t - b.t);
    this.bucket = bucket;
    this.chart.set(this.points, { bucket, domain });
  }

  realtimeDomain() {
    const now = wallTime(Date.now() + this.status.clockOffset, this.config.timezone);
    return [now - 30 * MINUTE, now];
  }

  setPanel(panel, entry) {
    const list = panel.querySelector(".rows");
    const dimension = this.tabOf(panel);
    if (!entry) return;
    if (entry.error) {
      renderError(list, entry.error);
      return;
    }
    if (dimension === "props") {
      const rows = [];
      for (const [key, result] of Object.entries(entry.result.props || {})) {
        for (const r of (result.results || []).slice(0, 4)) rows.push({ key: r.dimensions[0], value: r.metrics[0], prop: key });
      }
      renderRows(list, rows.map((r) => ({ ...r, key: `${r.prop}: ${r.key}`, raw: r.key })), {
        dimension: "props", metric: "visitors", emptyText: "No custom properties in this range",
        onPick: (r) => this.addFilter(`${PROPS_PREFIX}${r.prop}`, r.raw),
      });
      return;
    }
    const rows = (entry.result.results || []).map((r) => ({ key: r.dimensions[0], value: r.metrics[0] }));
    renderRows(list, rows, { dimension, metric: "visitors", onPick: (r) => this.addFilter(dimension, r.key) });
  }

  // ---- live ------------------------------------------------------------------------------------

  includesNow() {
    if (this.state.period !== "custom") return true;
    const today = new Date(wallTime(Date.now(), this.config.timezone)).toISOString().slice(0, 10);
    return this.state.to >= today;
  }

  onMessage(message) {
    if (message.type === "hello") {
      this.status.setServerTime(message.server_time);
      return;
    }
    if (message.type !== "delta") return;
    this.deltaCount += 1;
    this.status.seen(message.newest_ts);
    this.freshness.appliedNow(message.batch_ids);
    for (const e of message.events || []) {
      this.stream.unshift({ ...e, key: `${e.ts}|${e.name}|${e.pathname}|${e.browser}|${e.country}|${++this.streamSeq}` });
    }
    this.stream = this.stream.slice(0, STREAM_LIMIT);
    const unfiltered = this.state.filters.length === 0;
    if (unfiltered && typeof message.visitors_now === "number") this.pendingNow = message.visitors_now;
    if (unfiltered && this.includesNow()) this.applyCounts(message);
    this.scheduleRender();
    if (this.includesNow()) this.scheduleRefetch();
  }

  // Optimistic, exact-where-possible updates; visitors, bounce rate and duration wait for the refetch.
  applyCounts(delta) {
    const counts = delta.counts || {};
    const add = (metric, n) => {
      if (typeof this.top[metric] === "number" && n) this.top[metric] += n;
    };
    add("pageviews", counts.pageviews || 0);
    add("visits", counts.visits || 0);
    if (this.top.visits > 0 && typeof this.top.pageviews === "number") this.top.views_per_visit = Math.round((this.top.pageviews / this.top.visits) * 100) / 100;
    if (!this.points.length && this.state.period !== "realtime") return;
    const tz = this.config.timezone;
    let listed = 0;
    for (const e of delta.events || []) {
      if (e.name !== "pageview") continue;
      listed += 1;
      this.bucketFor(wallTime(e.ts, tz)).pageviews += 1;
    }
    const newest = this.bucketFor(wallTime(delta.newest_ts || Date.now(), tz));
    newest.pageviews += Math.max(0, (counts.pageviews || 0) - listed);
    newest.visitors += counts.visitors || 0;
  }

  bucketFor(wall) {
    if (this.state.period === "realtime") {
      const t = floorMinute(wall);
      let p = this.points.find((q) => q.t === t);
      if (!p) {
        p = { t, visitors: 0, pageviews: 0 };
        this.points.push(p);
        this.points.sort((a, b) => a.t - b.t);
      }
      return p;
    }
    let found = this.points[0];
    for (const p of this.points) if (p.t <= wall) found = p;
    return found;
  }

  scheduleRender() {
    if (this.renderTimer) return;
    const wait = Math.max(0, this.lastRender + RENDER_INTERVAL - Date.now());
    this.renderTimer = setTimeout(() => {
      this.renderTimer = null;
      this.lastRender = Date.now();
      this.renderLive();
    }, wait);
  }

  renderLive() {
    if (this.pendingNow !== undefined) {
      this.setMetric("visitors_now", this.pendingNow);
      this.pendingNow = undefined;
    }
    if (this.state.filters.length === 0 && this.includesNow()) {
      for (const metric of ["pageviews", "visits", "views_per_visit"]) if (typeof this.top[metric] === "number") this.setMetric(metric, this.top[metric]);
      const domain = this.state.period === "realtime" ? this.realtimeDomain() : null;
      this.chart.set(this.points, { bucket: this.bucket, domain });
    }
    this.renderStreamAges();
  }

  scheduleRefetch() {
    if (this.refetchTimer) return;
    // Jitter spreads the refetches of many open dashboards of one busy site.
    const wait = Math.max(REFETCH_DELAY, this.lastFetch + REFETCH_MIN_INTERVAL - Date.now()) + Math.random() * 1500;
    this.refetchTimer = setTimeout(() => {
      this.refetchTimer = null;
      this.load({ quiet: true });
    }, wait);
  }

  renderStreamAges() {
    renderStream(document.getElementById("stream"), this.stream, Date.now() + this.status.clockOffset, formatAge);
  }

  tick() {
    if (this.state.period !== "realtime") return;
    const domain = this.realtimeDomain();
    this.bucketFor(domain[1]);
    this.chart.scroll(domain);
    this.points = this.chart.points;
  }
}

function firstMetric(result) {
  const row = (result.results || [])[0];
  return row ? row.metrics[0] : 0;
}
