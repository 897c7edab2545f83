import { getJSON } from "./api.js";
import { sparkline } from "./chart.js";
import { formatAge, formatMetric } from "./format.js";
import { LiveSocket, LiveStatus } from "./socket.js";

const RENDER_INTERVAL = 500;
const REFETCH_MIN_INTERVAL = 10000;

// The sites overview: a sparkline and visitors now per site, all sites on one WebSocket.
export class Overview {
  constructor(root) {
    this.root = root;
    this.cards = new Map([...root.querySelectorAll("[data-domain]")].map((el) => [el.dataset.domain, el]));
    this.sites = new Map();
    this.pending = new Map();
    this.lastFetch = 0;
    this.lastRender = 0;
    this.status = new LiveStatus(document.getElementById("live-status"), document.getElementById("live-age"), formatAge);
    this.load();
    if (!this.cards.size) return;
    this.socket = new LiveSocket("/ws/sites/", {
      onMessage: (m) => this.onMessage(m),
      onState: (s) => this.status.setState(s),
      onReconnect: () => this.load(),
    });
  }

  async load() {
    this.lastFetch = Date.now();
    let data;
    try {
      data = await getJSON("/sites/summary.json");
    } catch {
      return;
    }
    for (const site of data.sites) {
      this.sites.set(site.domain, site);
      this.render(site.domain);
    }
  }

  render(domain) {
    const card = this.cards.get(domain);
    const site = this.sites.get(domain);
    if (!card || !site) return;
    const now = card.querySelector("[data-metric=visitors_now]");
    now.dataset.value = String(site.visitors_now ?? "");
    now.querySelector(".metric-value").textContent = formatMetric("visitors", site.visitors_now);
    const total = card.querySelector("[data-metric=visitors]");
    const visitors = site.totals ? site.totals[0] : null;
    total.dataset.value = String(visitors ?? "");
    total.textContent = site.error ? site.error : `${formatMetric("visitors", visitors)} visitors in 24 h`;
    sparkline(card.querySelector(".sparkline"), (site.series || []).map((p) => p.visitors));
  }

  onMessage(message) {
    if (message.type === "hello") {
      this.status.setServerTime(message.server_time);
      return;
    }
    if (message.type !== "delta") return;
    this.status.seen(message.newest_ts);
    const site = this.sites.get(message.domain);
    if (!site) return;
    if (typeof message.visitors_now === "number") site.visitors_now = message.visitors_now;
    // Optimistic until the next refetch: a batch's distinct visitors may have been counted already.
    const series = site.series || [];
    const added = (message.counts && message.counts.visitors) || 0;
    if (series.length) series[series.length - 1].visitors += added;
    if (site.totals) site.totals[0] += added;
    this.pending.set(message.domain, true);
    this.scheduleRender();
    this.scheduleRefetch();
  }

  scheduleRender() {
    if (this.renderTimer) return;
    this.renderTimer = setTimeout(() => {
      this.renderTimer = null;
      this.lastRender = Date.now();
      for (const domain of this.pending.keys()) this.render(domain);
      this.pending.clear();
    }, Math.max(0, this.lastRender + RENDER_INTERVAL - Date.now()));
  }

  scheduleRefetch() {
    if (this.refetchTimer) return;
    this.refetchTimer = setTimeout(() => {
      this.refetchTimer = null;
      this.load();
    }, Math.max(2000, this.lastFetch + REFETCH_MIN_INTERVAL - Date.now()));
  }
}
