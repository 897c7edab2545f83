// The site's freshness: when the worker last applied its events, and their lag then (the time
// from the collector's receipt of the newest to their application). The page starts from the
// server's record (analytics.ingest.freshness); each live delta arrives right after its batches
// were applied, and its batch ids (UUIDv7) name when they were received.

const STALE_MS = 5 * 60 * 1000; // no events applied for this long: shown in the warning colour

// The time of receipt a collector's batch id names (the first 48 bits of a UUIDv7), or null.
export function receivedAt(batchIds) {
  let newest = null;
  for (const id of batchIds || []) {
    if (!/^[0-9a-f]{32}$/.test(id) || id[12] !== "7") continue;
    const ms = parseInt(id.slice(0, 12), 16);
    if (newest === null || ms > newest) newest = ms;
  }
  return newest;
}

export function formatLag(ms) {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60000)} min`;
}

export class Freshness {
  constructor(element, formatAge, now) {
    this.element = element;
    this.formatAge = formatAge;
    this.now = now; // () => the server's clock, in ms
    const applied = Number(element?.dataset.applied || 0);
    this.applied = applied || null;
    this.lag = this.applied ? Number(element.dataset.lag || 0) : null;
    this.render();
    if (element) this.timer = setInterval(() => this.render(), 1000);
  }

  // A live delta: its batches were applied a moment ago.
  appliedNow(batchIds) {
    this.applied = this.now();
    const received = receivedAt(batchIds);
    if (received !== null) this.lag = Math.max(0, this.applied - received);
    this.render();
  }

  render() {
    if (!this.element) return;
    const text = this.element.querySelector(".freshness-text");
    if (this.applied === null) {
      this.element.dataset.state = "none";
      text.textContent = "no events applied yet";
      return;
    }
    const age = this.now() - this.applied;
    this.element.dataset.state = age > STALE_MS ? "stale" : "fresh";
    this.element.dataset.applied = String(this.applied);
    const lag = this.lag === null ? "" : ` · lag ${formatLag(this.lag)}`;
    text.textContent = `updated ${this.formatAge(age)}${lag}`;
  }
}
