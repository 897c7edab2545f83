// Human formatting of the numbers; the exact value always stays in data-value.
const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
const plain = new Intl.NumberFormat("en", { maximumFractionDigits: 2 });
// name -> {label, format, points, lowerBetter}: the metric registry, handed over by the page.
let metrics = {};

export function setMetrics(registry) {
  metrics = registry || {};
}

export function formatMetric(metric, value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const format = (metrics[metric] || {}).format;
  if (format === "percent") return `${Math.round(value)}%`;
  if (format === "duration") return formatDuration(value);
  if (format === "decimal") return plain.format(value);
  return Math.abs(value) >= 10000 ? compact.format(value) : plain.format(value);
}

export function formatDuration(seconds) {
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

export function formatAge(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ago`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h}h ago` : `${Math.floor(h / 24)}d ago`;
}

export function formatChange(metric, change) {
  if (change === null || change === undefined) return { text: "", cls: "" };
  const spec = metrics[metric] || {};
  const unit = spec.points ? " pt" : "%";
  const arrow = change > 0 ? "↑" : change < 0 ? "↓" : "";
  // A rising bounce rate is bad news; everything else rising is good.
  const good = spec.lowerBetter ? change < 0 : change > 0;
  return { text: `${arrow}${Math.abs(change)}${unit}`, cls: change === 0 ? "flat" : good ? "up" : "down" };
}

const regionNames = typeof Intl.DisplayNames === "function" ? new Intl.DisplayNames(["en"], { type: "region" }) : null;

export function countryName(code) {
  if (!code) return "Unknown";
  try {
    return regionNames ? regionNames.of(code) || code : code;
  } catch {
    return code;
  }
}

export function flag(code) {
  if (!code || code.length !== 2) return "";
  return String.fromCodePoint(...[...code.toUpperCase()].map((c) => 0x1f1a5 + c.charCodeAt(0)));
}
