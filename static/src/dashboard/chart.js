import * as d3 from "d3";
import { formatMetric } from "./format.js";

const SERIES = [
  { key: "visitors", label: "Visitors", cls: "s-visitors" },
  { key: "pageviews", label: "Pageviews", cls: "s-pageviews" },
];
const PREVIOUS = { key: "previous", label: "Visitors, previous period", cls: "s-previous" };

// The main chart: visitors (area) and pageviews (line) over the range; updated in place with transitions.
export class MainChart {
  constructor(container, legend) {
    this.container = container;
    this.legend = legend;
    this.margin = { top: 12, right: 16, bottom: 26, left: 44 };
    this.height = 240;
    this.points = [];
    this.domain = null;
    this.bucket = "time:day";
    this.svg = d3.select(container).append("svg").attr("role", "img").attr("class", "chart-svg");
    this.title = this.svg.append("title");
    this.gx = this.svg.append("g").attr("class", "axis x");
    this.gy = this.svg.append("g").attr("class", "axis y");
    this.grid = this.svg.append("g").attr("class", "grid");
    this.area = this.svg.append("path").attr("class", "area s-visitors");
    this.lines = this.svg.append("g");
    this.dots = this.svg.append("g").attr("class", "dots");
    this.focus = this.svg.append("g").attr("class", "focus").style("display", "none");
    this.focus.append("line").attr("class", "focus-line");
    this.tip = d3.select(container).append("div").attr("class", "chart-tip").attr("hidden", true);
    this.svg.on("pointermove", (e) => this.hover(e)).on("pointerleave", () => this.hideTip());
    this.renderLegend(false);
    new ResizeObserver(() => this.render(false)).observe(container);
  }

  renderLegend(withPrevious) {
    d3.select(this.legend)
      .selectAll("span")
      .data(withPrevious ? [...SERIES, PREVIOUS] : SERIES)
      .join("span")
      .attr("class", (d) => `legend-item ${d.cls}`)
      .html((d) => `<i aria-hidden="true"></i>${d.label}`);
  }

  set(points, { bucket, domain }) {
    this.points = points;
    this.bucket = bucket;
    this.domain = domain || null;
    this.render(true);
  }

  // Shift the window of a realtime chart to end at `end` (wall ms), dropping what scrolled out.
  scroll(domain) {
    this.domain = domain;
    this.points = this.points.filter((p) => p.t >= domain[0] - 60000);
    this.render(true);
  }

  render(animate) {
    const width = Math.max(280, this.container.clientWidth || 600);
    const { top, right, bottom, left } = this.margin;
    const w = width - left - right;
    const h = this.height - top - bottom;
    this.svg.attr("viewBox", `0 0 ${width} ${this.height}`).attr("width", width).attr("height", this.height);
    const points = this.points;
    const extent = this.domain || d3.extent(points, (p) => p.t);
    const x = d3.scaleUtc().domain(extent[0] === undefined ? [Date.now() - 864e5, Date.now()] : extent).range([left, left + w]);
    const max = Math.max(4, d3.max(points, (p) => Math.max(p.visitors, p.pageviews, p.previous || 0)) || 0);
    const withPrevious = points.some((p) => typeof p.previous === "number");
    this.renderLegend(withPrevious);
    const y = d3.scaleLinear().domain([0, max]).nice(4).range([top + h, top]);
    const yTicks = y.ticks(4).filter(Number.isInteger);
    this.x = x;
    const t = animate ? this.svg.transition().duration(450).ease(d3.easeCubicOut) : null;
    const apply = (sel) => (t ? sel.transition(t) : sel);
    const room = Math.max(2, Math.floor(w / 90));
    // Ticks on the buckets themselves (thinned to fit), so a label never repeats a day or a month.
    const step = Math.ceil(points.length / room) || 1;
    const tickValues = this.domain ? null : points.filter((_, i) => i % step === 0).map((p) => new Date(p.t));
    const fmt = this.bucket === "time:month" ? d3.utcFormat("%b %Y") : this.bucket === "time:day" ? d3.utcFormat("%b %d") : d3.utcFormat("%H:%M");
    apply(this.gx.attr("transform", `translate(0,${top + h})`)).call(d3.axisBottom(x).ticks(room).tickValues(tickValues).tickFormat(fmt).tickSizeOuter(0));
    apply(this.gy.attr("transform", `translate(${left},0)`)).call(d3.axisLeft(y).tickValues(yTicks).tickFormat(d3.format("~s")));
    this.grid.selectAll("line").data(yTicks).join("line")
      .attr("x1", left).attr("x2", left + w).attr("y1", (d) => y(d)).attr("y2", (d) => y(d));
    const curve = d3.curveMonotoneX;
    const area = d3.area().x((p) => x(p.t)).y0(y(0)).y1((p) => y(p.visitors)).curve(curve);
    apply(this.area.datum(points)).attr("d", points.length ? area(points) : null);
    const line = (key) => d3.line().x((p) => x(p.t)).y((p) => y(p[key])).curve(curve);
    const previousLine = d3.line().defined((p) => typeof p.previous === "number").x((p) => x(p.t)).y((p) => y(p.previous)).curve(curve);
    this.previous = this.previous || this.svg.insert("path", "g").attr("class", "line s-previous");
    apply(this.previous).attr("d", withPrevious ? previousLine(points) : null);
    this.lines.selectAll("path").data(SERIES).join("path")
      .attr("class", (s) => `line ${s.cls}`)
      .call((sel) => apply(sel).attr("d", (s) => (points.length ? line(s.key)(points) : null)));
    this.dots.selectAll("circle").data(points.length <= 40 ? points : [], (p) => p.t).join("circle")
      .attr("r", 2.5).attr("class", "s-pageviews")
      .call((sel) => apply(sel).attr("cx", (p) => x(p.t)).attr("cy", (p) => y(p.pageviews)));
    const totalViews = d3.sum(points, (p) => p.pageviews);
    const totalVisitors = d3.sum(points, (p) => p.visitors);
    this.container.dataset.points = String(points.length);
    this.container.dataset.total = String(totalViews);
    this.title.text(`Chart of visitors and pageviews: ${points.length} points, ${totalViews} pageviews, ${totalVisitors} visitor-buckets.`);
    this.layout = { top, h };
  }

  hover(event) {
    if (!this.x || !this.points.length) return;
    const [mx] = d3.pointer(event);
    const t = this.x.invert(mx).getTime();
    const i = d3.bisector((p) => p.t).center(this.points, t);
    const p = this.points[i];
    if (!p) return;
    const px = this.x(p.t);
    this.focus.style("display", null).select("line").attr("x1", px).attr("x2", px).attr("y1", this.layout.top).attr("y2", this.layout.top + this.layout.h);
    const fmt = this.bucket === "time:month" ? d3.utcFormat("%B %Y") : this.bucket === "time:day" ? d3.utcFormat("%a %b %d") : d3.utcFormat("%b %d %H:%M");
    this.tip.attr("hidden", null).style("left", `${Math.min(px, this.container.clientWidth - 150)}px`)
      .html(`<strong>${fmt(new Date(p.t))}</strong><br>${formatMetric("visitors", p.visitors)} visitors<br>${formatMetric("pageviews", p.pageviews)} pageviews`);
  }

  hideTip() {
    this.focus.style("display", "none");
    this.tip.attr("hidden", true);
  }
}

// A tiny sparkline (visitors per hour) for the sites overview.
export function sparkline(element, values) {
  const width = 160;
  const height = 36;
  const svg = d3.select(element).selectAll("svg").data([null]).join("svg").attr("viewBox", `0 0 ${width} ${height}`).attr("width", width).attr("height", height);
  const x = d3.scaleLinear().domain([0, Math.max(1, values.length - 1)]).range([1, width - 1]);
  const y = d3.scaleLinear().domain([0, d3.max(values) || 1]).range([height - 2, 2]);
  const area = d3.area().x((_, i) => x(i)).y0(height - 1).y1((v) => y(v)).curve(d3.curveMonotoneX);
  const line = d3.line().x((_, i) => x(i)).y((v) => y(v)).curve(d3.curveMonotoneX);
  svg.selectAll("path.area").data([values]).join("path").attr("class", "area s-visitors").transition().duration(400).attr("d", area);
  svg.selectAll("path.line").data([values]).join("path").attr("class", "line s-visitors").transition().duration(400).attr("d", line);
  element.dataset.values = values.join(",");
}
