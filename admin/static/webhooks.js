// The Webhooks section of a project: its webhooks with their recent deliveries, the
// "Add webhook" dialog, the signing secret shown once, "Send test event" and delete.
//
// The secret exists only in the create answer and, while its dialog is open, as the text of
// #webhook-secret; closing the dialog empties that element and nothing else keeps it.

import { api } from "./api.js";
import { openDialog, openForm, removalDialog } from "./dialogs.js";
import {
  $,
  cell,
  clearError,
  clearFieldErrorsOnChange,
  copyText,
  entryList,
  loaded,
  showError,
  showFieldError,
  tableHead,
  text,
  whileBusy,
} from "./dom.js";
import { sendChecked } from "./fields.js";
import { timeElement } from "./format.js";
import { field } from "./schema.js";

// Deliveries shown per webhook, and how long a pending one is watched after a test.
const RECENT = 5;
const WATCH_MS = 1000;
const WATCH_TIMES = 20;

// The columns of a webhook's deliveries table.
const COLUMNS = ["Event", "Type", "Status", "Attempt", "Result", "Duration", "Next attempt"];

const webhookItems = entryList($("webhooks-list"), $("webhooks-empty"), $("webhooks-status"));
let projectOf = () => null; // the project on screen
let stillCurrent = () => true;

// ------------------------------------------------------------------ rows

function stateBadge(delivery) {
  const words = { delivered: "Delivered", failed: "Failed", pending: "Pending" };
  const kinds = { delivered: "badge-active", failed: "badge-expired", pending: "badge-pending" };
  const pending = delivery.state === "pending" && delivery.attempt > 0 ? "Retrying" : null;
  return text("span", pending ?? words[delivery.state] ?? delivery.state, `badge ${kinds[delivery.state] ?? ""}`);
}

function resultOf(delivery) {
  if (delivery.status_code !== null) return text("span", `HTTP ${delivery.status_code}`);
  if (delivery.error) return text("span", delivery.error, "muted");
  return text("span", "Not sent yet", "muted");
}

function deliveryRow(delivery) {
  const row = document.createElement("tr");
  row.setAttribute("role", "row");
  row.append(
    cell("Event", text("code", delivery.event_id, "masked")),
    cell("Type", text("span", delivery.type)),
    cell("Status", stateBadge(delivery)),
    cell("Attempt", text("span", String(delivery.attempt))),
    cell("Result", resultOf(delivery)),
    cell(
      "Duration",
      text("span", delivery.duration_ms === null ? "—" : `${Math.round(delivery.duration_ms)} ms`),
    ),
    cell("Next attempt", timeElement(delivery.next_attempt_at, "—")),
  );
  return row;
}

function deliveriesTable(webhook) {
  const wrap = document.createElement("div");
  wrap.className = "table-wrap";
  const table = document.createElement("table");
  table.className = "tokens deliveries";
  table.setAttribute("role", "table");
  table.setAttribute("aria-label", `Recent deliveries to ${webhook.url}`);
  const body = document.createElement("tbody");
  body.setAttribute("role", "rowgroup");
  table.append(tableHead(COLUMNS), body);
  wrap.append(table);
  return { wrap, table, body };
}

function webhookItem(webhook) {
  const item = document.createElement("li");
  item.className = "webhook";
  item.dataset.webhookId = webhook.id;

  const url = text("code", webhook.url, "webhook-url");
  url.id = `webhook-url-${webhook.id}`;
  const events = webhook.events.length ? webhook.events.join(", ") : "All events";
  const meta = document.createElement("p");
  meta.className = "muted project-meta";
  meta.append(`${events} · added `, timeElement(webhook.created_at));

  const test = text("button", "Send test event", "button");
  test.type = "button";
  test.setAttribute("aria-describedby", url.id);
  const remove = text("button", "Delete", "button button-danger-outline");
  remove.type = "button";
  remove.setAttribute("aria-describedby", url.id);
  const actions = document.createElement("div");
  actions.className = "actions";
  actions.append(test, remove);

  const heading = text("h3", "Recent deliveries", "subheading");
  const status = text("p", "", "status");
  status.setAttribute("role", "status");
  const error = text("p", "", "error");
  error.setAttribute("role", "alert");
  error.hidden = true;
  const empty = text("p", "No deliveries yet.", "empty");
  const { wrap, table, body } = deliveriesTable(webhook);
  table.hidden = true;

  item.append(url, meta, actions, status, error, heading, empty, wrap);
  const view = { item, body, table, empty, error, status };
  test.addEventListener("click", () => sendTest(webhook, view, test));
  remove.addEventListener("click", () => confirmDelete(webhook, item));
  loadDeliveries(webhook, view);
  return item;
}

// ------------------------------------------------------------------ loading

export async function load(projectId, isCurrent) {
  stillCurrent = isCurrent;
  const list = $("webhooks-list");
  list.replaceChildren();
  $("webhooks-empty").hidden = true;
  clearError($("webhooks-error"));
  const answer = await loaded(() => api.listWebhooks(projectId), $("webhooks-error"), isCurrent);
  if (!answer) return;
  list.append(...answer.webhooks.map(webhookItem));
  webhookItems.refresh();
}

// Show the newest deliveries; true while the newest is still pending.
async function loadDeliveries(webhook, view) {
  let answer;
  try {
    answer = await api.listDeliveries(webhook.project_id, webhook.id, RECENT);
  } catch (failure) {
    if (view.item.isConnected) showError(view.error, failure);
    return false;
  }
  clearError(view.error);
  view.body.replaceChildren(...answer.deliveries.map(deliveryRow));
  view.table.hidden = answer.deliveries.length === 0;
  view.empty.hidden = answer.deliveries.length !== 0;
  const newest = answer.deliveries[0];
  return Boolean(newest && newest.state === "pending");
}

async function sendTest(webhook, view, button) {
  clearError(view.error);
  view.status.textContent = "";
  try {
    await whileBusy(button, () => api.testWebhook(webhook.project_id, webhook.id));
  } catch (failure) {
    showError(view.error, failure);
    return;
  }
  view.status.textContent = "Test event sent.";
  // Watch it until it is delivered (or failed, or waiting for a retry later).
  for (let time = 0; time < WATCH_TIMES && view.item.isConnected && stillCurrent(); time += 1) {
    if (!(await loadDeliveries(webhook, view))) return;
    await new Promise((resolve) => setTimeout(resolve, WATCH_MS));
  }
}

// ------------------------------------------------------------------ add, and the secret once

function fillEvents() {
  const choices = field("WebhookCreate", "events").items?.enum ?? [];
  const box = $("webhook-events");
  box.replaceChildren(
    ...choices.map((type) => {
      const label = document.createElement("label");
      label.className = "choice";
      const input = document.createElement("input");
      input.type = "checkbox";
      input.name = "events";
      input.value = type;
      label.append(input, " ", text("code", type));
      return label;
    }),
  );
  $("webhook-events-field").hidden = choices.length === 0;
}

async function submitCreate(event) {
  event.preventDefault();
  const project = projectOf();
  const form = $("webhook-form");
  const error = $("webhook-form-error");
  const url = $("webhook-url");
  if (!project) return;
  if (!url.value.trim()) {
    showFieldError(error, url, "The webhook needs a URL.");
    return;
  }
  const events = [...form.querySelectorAll("input[name=events]:checked")].map((box) => box.value);
  const send = () => api.createWebhook(project.id, { url: url.value.trim(), events });
  const created = await sendChecked(form, error, "WebhookCreate", ["url"], send);
  if (!created) return;
  form.reset();
  $("dialog-webhook").close();
  revealSecret(created, project.id);
}

// Show the secret once. Only the DOM holds it from here on; `created` loses it at once.
function revealSecret(created, projectId) {
  const secret = $("webhook-secret");
  secret.textContent = created.secret;
  delete created.secret;
  $("webhook-secret-status").textContent = "";
  openDialog($("dialog-webhook-secret"), {
    returnFocus: () => $("create-webhook"),
    onClose: () => {
      secret.textContent = "";
      $("webhook-secret-status").textContent = "";
      window.getSelection()?.removeAllRanges();
      const project = projectOf();
      if (project && project.id === projectId) {
        webhookItems.add(webhookItem(created), "Webhook added.");
      }
    },
  });
  $("webhook-secret-copy").focus();
}

async function copySecret() {
  const secret = $("webhook-secret");
  if (!secret.textContent) return;
  $("webhook-secret-status").textContent = (await copyText(secret))
    ? "Copied to the clipboard."
    : "Copying is blocked here: the secret is selected, press Ctrl+C (⌘C on a Mac).";
}

// ------------------------------------------------------------------ delete

let askDelete = () => {}; // (subject, returnFocus): see init

function confirmDelete(webhook, item) {
  $("webhook-delete-url").textContent = webhook.url;
  askDelete({ webhook, item }, () => $("create-webhook"));
}

const deleting = {
  remove: ({ webhook }) => api.deleteWebhook(webhook.project_id, webhook.id),
  removed: ({ item }) => webhookItems.drop(item, "Webhook deleted."),
};

// ------------------------------------------------------------------ wiring

export function init(currentProject) {
  projectOf = currentProject;
  fillEvents();
  clearFieldErrorsOnChange($("webhook-form"), $("webhook-form-error"));
  $("create-webhook").addEventListener("click", () =>
    openForm($("dialog-webhook"), $("webhook-form-error")),
  );
  $("webhook-form").addEventListener("submit", submitCreate);
  $("webhook-secret-copy").addEventListener("click", copySecret);
  // Emptied at once: the close event, which empties it too, comes a task later.
  $("webhook-secret-done").addEventListener("click", () => {
    $("webhook-secret").textContent = "";
    $("dialog-webhook-secret").close();
  });
  askDelete = removalDialog($("dialog-webhook-delete"), $("webhook-delete-error"), deleting);
}
