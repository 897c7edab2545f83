// View state <-> URL: ?period=7d&compare=1&f=visit:country==DE&from=…&to=…
export const PERIODS = ["realtime", "day", "24h", "7d", "30d", "month", "6mo", "12mo", "custom"];
const DATE = /^\d{4}-\d{2}-\d{2}$/;

export function readState(search) {
  const params = new URLSearchParams(search);
  let period = params.get("period") || "day";
  if (!PERIODS.includes(period)) period = "day";
  const from = params.get("from") || "";
  const to = params.get("to") || "";
  if (period === "custom" && !(DATE.test(from) && DATE.test(to) && from <= to)) period = "day";
  const filters = [];
  for (const raw of params.getAll("f")) {
    const at = raw.indexOf("==");
    if (at > 0) filters.push({ dimension: raw.slice(0, at), value: raw.slice(at + 2) });
  }
  const tabs = {};
  for (const raw of params.getAll("tab")) {
    const at = raw.indexOf(":");
    if (at > 0) tabs[raw.slice(0, at)] = raw.slice(at + 1);
  }
  return { period, from, to, compare: params.get("compare") === "1", filters, tabs, metric: params.get("metric") || "visitors" };
}

export function writeState(state) {
  const params = new URLSearchParams();
  params.set("period", state.period);
  if (state.period === "custom") {
    params.set("from", state.from);
    params.set("to", state.to);
  }
  if (state.compare) params.set("compare", "1");
  for (const f of state.filters) params.append("f", `${f.dimension}==${f.value}`);
  for (const [panel, dimension] of Object.entries(state.tabs)) params.append("tab", `${panel}:${dimension}`);
  if (state.metric && state.metric !== "visitors") params.set("metric", state.metric);
  const url = `${location.pathname}?${params.toString()}`;
  if (url !== location.pathname + location.search) history.replaceState(null, "", url);
}

export function dateRange(state) {
  if (state.period === "custom") return [state.from, state.to];
  return state.period;
}

export function v2Filters(state) {
  return state.filters.map((f) => ["is", f.dimension, [f.value]]);
}

export function timeDimension(state) {
  switch (state.period) {
    case "realtime":
      return "time:minute";
    case "day":
    case "24h":
      return "time:hour";
    case "6mo":
    case "12mo":
      return "time:month";
    case "custom": {
      const days = (Date.parse(state.to) - Date.parse(state.from)) / 86400000;
      if (days < 1) return "time:hour";
      return days > 92 ? "time:month" : "time:day";
    }
    default:
      return "time:day";
  }
}
