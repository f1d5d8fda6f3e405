// Activity: the audit log (GET /v1/audit), newest first. A project page shows its project's
// events to everyone who may read the project; the admin role also has a page for all of them.

import { api } from "./api.js";
import { $, clearError, isCurrent, loaded, showPage } from "./dom.js";
import { timeElement } from "./format.js";

const SHOWN = 50; // the newest events; the API pages further back with its cursor

const ACTIONS = {
  "project.created": "created the project",
  "project.updated": "changed the project",
  "project.deleted": "deleted the project",
  "token.created": "created a token",
  "token.rotated": "rotated a token",
  "token.revoked": "revoked a token",
  "token.leaked": "revoked a leaked token",
  "admin_key.created": "created an admin key",
  "admin_key.revoked": "revoked an admin key",
  "webhook.created": "added a webhook",
  "webhook.deleted": "deleted a webhook",
  "portal_session.created": "opened a portal link",
};

const ACTORS = { cli: "The command line", leak_report: "A leak report" };

function actorText(actor) {
  if (actor.type === "bootstrap") return "The admin token";
  if (actor.type === "portal") return "A portal session";
  if (actor.type === "admin_key") return `Admin key “${actor.name ?? actor.id}”`;
  return ACTORS[actor.type] ?? actor.type;
}

function changesText(changes) {
  if (!changes) return "";
  const shown = (value) => (value === null ? "default" : String(value));
  return Object.entries(changes)
    .map(([name, [before, after]]) => `${name}: ${shown(before)} → ${shown(after)}`)
    .join(", ");
}

function eventItem(event) {
  const item = document.createElement("li");
  const what = document.createElement("span");
  what.className = "activity-what";
  what.textContent = `${actorText(event.actor)} ${ACTIONS[event.action] ?? event.action}`;
  const meta = document.createElement("p");
  meta.className = "muted";
  const details = [event.target_id ? `id ${event.target_id}` : "", changesText(event.changes)];
  if (event.ip) details.push(`from ${event.ip}`);
  meta.append(timeElement(event.at), ...details.filter(Boolean).map((text) => ` · ${text}`));
  item.append(what, meta);
  return item;
}

// Fill `list` with the newest events matching `params`; `stillCurrent` drops a late answer.
export async function fill(prefix, params, stillCurrent) {
  const list = $(prefix === "project-activity" ? "project-activity" : "activity-list");
  const error = $(`${prefix}-error`);
  const empty = $(`${prefix}-empty`);
  list.replaceChildren();
  clearError(error);
  empty.hidden = true;
  const request = () => api.listAudit({ ...params, limit: String(SHOWN) });
  const page = await loaded(request, error, stillCurrent);
  if (!page) return;
  list.replaceChildren(...page.events.map(eventItem));
  empty.hidden = page.events.length > 0;
}

// The admin role's page: every project's events.
export async function show({ focus = false } = {}) {
  const generation = showPage("view-activity", "Activity", $("activity-title"), focus);
  await fill("activity", {}, () => isCurrent(generation));
}
