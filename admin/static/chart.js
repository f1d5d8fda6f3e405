// Usage as pictures, drawn as SVG by this small module (no library, nothing inline: the
// colours come from app.css). Every picture names its numbers for screen readers: the bar
// chart comes with a table of the same days, the sparkline with an aria-label.

const SVG = "http://www.w3.org/2000/svg";
const number = new Intl.NumberFormat("en-US");

function node(name, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  element.append(...children);
  return element;
}

function tooltip(text) {
  const title = node("title");
  title.textContent = text;
  return title;
}

// Refused by the gateway for the token's own reasons: rate limit or quota (429), scope or
// address (403).
export function refused(row) {
  return row.rate_limited + row.forbidden;
}

export function formatCount(n) {
  return number.format(n);
}

function busiest(rows) {
  return rows.reduce((best, row) => (row.proxied > best.proxied ? row : best), rows[0]);
}

// One sentence with the numbers a sighted reader takes from the picture.
export function summary(rows, what = "Last 30 days") {
  const proxied = rows.reduce((sum, row) => sum + row.proxied, 0);
  const refusedTotal = rows.reduce((sum, row) => sum + refused(row), 0);
  let text = `${what}: ${formatCount(proxied)} proxied, ${formatCount(refusedTotal)} refused`;
  const peak = rows.length ? busiest(rows) : null;
  if (peak && peak.proxied > 0) text += `; busiest day ${peak.date} with ${formatCount(peak.proxied)} proxied`;
  return `${text}.`;
}

// A bar per day, proxied below and refused stacked on top, on a shared scale.
export function barChart(rows, { id = "usage", width = 600, height = 160 } = {}) {
  const top = Math.max(1, ...rows.map((row) => row.proxied + refused(row)));
  const slot = width / Math.max(1, rows.length);
  const bar = Math.max(1, slot * 0.7);
  const label = summary(rows);
  const chart = node("svg", {
    class: "bar-chart",
    viewBox: `0 0 ${width} ${height}`,
    preserveAspectRatio: "none",
    role: "img",
    "aria-label": label,
    "aria-describedby": `${id}-table`,
  });
  chart.append(node("line", { class: "axis", x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5 }));
  rows.forEach((row, i) => {
    const x = i * slot + (slot - bar) / 2;
    const proxiedHeight = (row.proxied / top) * (height - 2);
    const refusedHeight = (refused(row) / top) * (height - 2);
    const tip = `${row.date}: ${formatCount(row.proxied)} proxied, ${formatCount(refused(row))} refused`;
    const group = node("g", { class: "day" }, tooltip(tip));
    group.append(
      node("rect", { class: "bar-proxied", x, width: bar, y: height - proxiedHeight, height: proxiedHeight }),
      node("rect", {
        class: "bar-refused",
        x,
        width: bar,
        y: height - proxiedHeight - refusedHeight,
        height: refusedHeight,
      }),
    );
    chart.append(group);
  });
  const figure = document.createElement("figure");
  figure.className = "usage-figure";
  const legend = document.createElement("figcaption");
  legend.className = "legend";
  for (const [name, text] of [["proxied", "Proxied"], ["refused", "Refused (429, 403)"]]) {
    const key = document.createElement("span");
    key.className = `key key-${name}`;
    key.textContent = text;
    legend.append(key);
  }
  figure.append(chart, legend, dataTable(rows, `${id}-table`));
  return figure;
}

// What stands in the chart's place while its days load: the same box (an empty chart and
// its legend), so that nothing below moves when the chart arrives; hidden from screen
// readers, which hear the real one.
export function chartPlaceholder() {
  const figure = barChart([], { id: "usage-placeholder" });
  figure.setAttribute("aria-hidden", "true");
  figure.querySelector("table").remove();
  return figure;
}

// The chart's numbers as a table: read by screen readers, hidden on screen.
function dataTable(rows, id) {
  const table = document.createElement("table");
  table.id = id;
  table.className = "visually-hidden";
  const caption = document.createElement("caption");
  caption.textContent = "Requests per UTC day";
  const head = document.createElement("tr");
  for (const text of ["Date", "Proxied", "Refused"]) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = text;
    head.append(th);
  }
  const body = document.createElement("tbody");
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const text of [row.date, formatCount(row.proxied), formatCount(refused(row))]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    body.append(tr);
  }
  const thead = document.createElement("thead");
  thead.append(head);
  table.append(caption, thead, body);
  return table;
}

// A small line of the proxied count per day, its numbers in the aria-label.
export function sparkline(rows, { width = 56, height = 20 } = {}) {
  const top = Math.max(1, ...rows.map((row) => row.proxied));
  const step = rows.length > 1 ? width / (rows.length - 1) : width;
  const points = rows
    .map((row, i) => `${(i * step).toFixed(1)},${(height - 1 - (row.proxied / top) * (height - 2)).toFixed(1)}`)
    .join(" ");
  const line = node("svg", {
    class: "sparkline",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": summary(rows, "Proxied per day, last 30 days"),
  });
  line.append(node("polyline", { points, class: "spark" }));
  return line;
}
