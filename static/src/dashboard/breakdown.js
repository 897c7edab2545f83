import * as d3 from "d3";
import { countryName, flag, formatMetric } from "./format.js";

export function rowLabel(dimension, value) {
  if (value === null || value === undefined || value === "") {
    return dimension === "visit:source" || dimension === "visit:referrer" ? "Direct / None" : "(none)";
  }
  if (dimension === "visit:country") return `${flag(value)} ${countryName(value)}`;
  return String(value);
}

// A ranked bar list. Each row is a button: clicking (or Enter/Space) filters the dashboard by it.
export function renderRows(list, rows, { dimension, metric, onPick, emptyText }) {
  const sel = d3.select(list);
  const max = d3.max(rows, (r) => r.value) || 1;
  sel.selectAll("li.empty").remove();
  const items = sel.selectAll("li.row").data(rows, (r) => `${dimension}|${r.key}`);
  items.exit().transition().duration(200).style("opacity", 0).remove();
  const entered = items.enter().append("li").attr("class", "row").style("opacity", 0);
  const button = entered.append("button").attr("type", "button").attr("class", "row-button");
  button.append("span").attr("class", "bar").style("width", "0%");
  button.append("span").attr("class", "row-label");
  button.append("span").attr("class", "row-value");
  entered.transition().duration(300).style("opacity", 1);
  const merged = entered.merge(items).order();
  merged.attr("data-dimension", dimension).attr("data-key", (r) => r.key ?? "").attr("data-value", (r) => r.value);
  merged.select("button")
    .attr("title", (r) => (onPick ? `Filter by ${rowLabel(dimension, r.key)}` : null))
    .attr("aria-label", (r) => `${rowLabel(dimension, r.key)}: ${r.value} ${metric}${onPick ? ", filter by it" : ""}`)
    .attr("disabled", onPick ? null : true)
    .on("click", (_, r) => onPick && onPick(r));
  merged.select(".bar").transition().duration(450).style("width", (r) => `${(r.value / max) * 100}%`);
  merged.select(".row-label").text((r) => rowLabel(dimension, r.key));
  merged.select(".row-value").text((r) => formatMetric(metric, r.value));
  if (!rows.length) sel.append("li").attr("class", "empty muted").text(emptyText || "No data yet");
}

export function renderError(list, message) {
  const sel = d3.select(list);
  sel.selectAll("*").remove();
  sel.append("li").attr("class", "empty muted").text(message);
}

// The live stream: newest first, at most `limit` rows, new rows fade in.
export function renderStream(list, events, now, formatAge) {
  const sel = d3.select(list);
  if (events.length) sel.selectAll("li.empty").remove();
  const items = sel.selectAll("li.stream-row").data(events, (e) => e.key);
  items.exit().remove();
  const entered = items.enter().append("li").attr("class", "stream-row fresh");
  entered.append("span").attr("class", "stream-name");
  entered.append("span").attr("class", "stream-path");
  entered.append("span").attr("class", "stream-meta muted");
  entered.append("time").attr("class", "stream-age muted");
  const merged = entered.merge(items).order();
  merged.select(".stream-name").text((e) => (e.name === "pageview" ? "Pageview" : e.name));
  merged.select(".stream-path").text((e) => e.pathname || "/");
  merged.select(".stream-meta").text((e) => {
    const parts = [e.country ? `${flag(e.country)} ${e.country}` : "", e.browser, e.device, e.referrer_source];
    const props = e.props && Object.keys(e.props).length ? Object.entries(e.props).map(([k, v]) => `${k}=${v}`).join(" ") : "";
    return [...parts, props].filter(Boolean).join(" · ");
  });
  merged.select(".stream-age").attr("datetime", (e) => new Date(e.ts).toISOString()).text((e) => formatAge(now - e.ts));
  if (!events.length && !sel.select("li.empty").size()) sel.append("li").attr("class", "empty muted").text("Waiting for events…");
}
