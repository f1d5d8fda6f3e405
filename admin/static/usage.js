// A project's usage: the 30-day bar chart on the project page and a sparkline per token row.

import { api } from "./api.js";
import { $, clearError, loaded } from "./dom.js";
import { barChart, chartPlaceholder, formatCount, sparkline } from "./chart.js";

// The chart and its totals line keep their room while loading (a placeholder of the same
// size), so the Access Tokens card below never jumps under a pointer about to click.
export async function load(projectId, isCurrent) {
  const place = $("usage-chart");
  const totals = $("usage-totals");
  const error = $("usage-error");
  clearError(error);
  place.replaceChildren(chartPlaceholder());
  totals.textContent = "Loading…";
  const report = await loaded(() => api.usage(projectId), error, isCurrent);
  if (!report) {
    if (isCurrent()) {
      place.replaceChildren();
      totals.textContent = "";
    }
    return;
  }
  place.replaceChildren(barChart(report.rows));
  const { proxied, upstream_errors, rate_limited, forbidden } = report.totals;
  totals.textContent =
    `${formatCount(proxied)} proxied · ${formatCount(upstream_errors)} upstream errors · ` +
    `${formatCount(rate_limited)} rate limited · ${formatCount(forbidden)} forbidden`;
}

// The Access Tokens table's "30 days" cell: the total at once, the sparkline once the
// token's days arrive.
export function tokenCell(token) {
  const holder = document.createElement("span");
  holder.className = "usage-cell";
  const total = document.createElement("span");
  total.className = "usage-total";
  total.textContent = formatCount(token.usage_30d ? token.usage_30d.proxied : 0);
  holder.append(total);
  api
    .usage(token.project_id, { token_id: token.id })
    .then((report) => holder.prepend(sparkline(report.rows)))
    .catch(() => {}); // the total stays; the table is still usable without the picture
  return holder;
}
