// The Access Tokens section: the table (newest first, "Load more" with the API cursor, a
// status filter), the "Create token" dialog (with scopes and allowed addresses), the
// one-time reveal dialog, the rotate dialog (its successor revealed the same way) and the
// revoke confirmation.
//
// The raw token exists only in the create answer and, while the reveal dialog is open, as the
// text of #reveal-token. It is never copied into a variable that outlives the create handler,
// an input value, storage or the URL, and closing the dialog empties that element. Escape
// before the token was copied asks first (a second Escape, or "Close without copying", closes).

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
  tableHead,
  whileBusy,
} from "./dom.js";
import { sendChecked } from "./fields.js";
import { timeElement } from "./format.js";
import { field, limitInput } from "./schema.js";
import * as usage from "./usage.js";

const SVG = "http://www.w3.org/2000/svg";
// The table's columns (its last one, the row's buttons, is added by tableHead).
const COLUMNS = ["Description", "Token", "Created", "Expires", "Last used", "Status", "30 days"];
const BIN = "M4 7h16M10 11v6M14 11v6M5 7l1 13h12l1-13M9 7V4h6v3";
const ROTATE = "M20 11a8 8 0 1 0-2.3 5.7M20 4v7h-7";

const tokenRows = entryList(
  $("tokens-body"),
  $("tokens-empty"),
  $("tokens-status"),
  $("tokens-table"),
);
let projectOf = () => null; // the project on screen
let nextCursor = null;
let stillCurrent = () => true;

// ------------------------------------------------------------------ rows

// A line icon drawn by the path `d`, hidden from screen readers (its button is labelled).
function icon(d) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", "icon");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", d);
  path.setAttribute("fill", "none");
  path.setAttribute("stroke", "currentColor");
  path.setAttribute("stroke-width", "2");
  path.setAttribute("stroke-linecap", "round");
  path.setAttribute("stroke-linejoin", "round");
  svg.append(path);
  return svg;
}

function descriptionOf(token) {
  return token.description || "No description";
}

const SOON_MS = 7 * 24 * 3600 * 1000; // the "Expires soon" badge, as the API's expiring

function badge(className, text) {
  const span = document.createElement("span");
  span.className = `badge ${className}`;
  span.textContent = text;
  return span;
}

function expiresSoon(token) {
  if (token.status !== "active" || !token.expires_at) return false;
  return new Date(token.expires_at).getTime() - Date.now() <= SOON_MS;
}

// Active, Expired, Expires soon; a rotated token in its grace: "Rotating until …" and a
// link to the token that replaces it.
function statusOf(token) {
  if (token.status === "expired") return [badge("badge-expired", "Expired")];
  if (token.replaced_by) {
    const until = document.createElement("span");
    until.className = "rotating";
    const successor = document.createElement("button");
    successor.type = "button";
    successor.className = "link";
    successor.textContent = "its successor";
    successor.addEventListener("click", () => showToken(token.replaced_by));
    until.append("until ", timeElement(token.expires_at), " · ", successor);
    return [badge("badge-rotating", "Rotating"), until];
  }
  if (expiresSoon(token)) return [badge("badge-soon", "Expires soon")];
  return [badge("badge-active", "Active")];
}

// Bring a token's row into view (a successor is newer, so it is on the page already).
function showToken(tokenId) {
  const row = [...$("tokens-body").children].find((r) => r.dataset.tokenId === tokenId);
  if (!row) {
    $("tokens-status").textContent = "Its successor is not in this list (see All tokens).";
    return;
  }
  row.scrollIntoView({ block: "center" });
  row.classList.add("highlight");
  setTimeout(() => row.classList.remove("highlight"), 2000);
  row.querySelector("button")?.focus();
}

// What the token may do, under its description: "GET /v1/validate · * /v1/status", and
// "From 203.0.113.0/24"; nothing when it may do anything from anywhere.
function limitsOf(token) {
  const lines = [];
  if (token.scopes && token.scopes.length) {
    const scopes = document.createElement("p");
    scopes.className = "limits";
    scopes.textContent = `Only ${token.scopes.join(" · ")}`;
    lines.push(scopes);
  }
  if (token.allowed_ips && token.allowed_ips.length) {
    const from = document.createElement("p");
    from.className = "limits";
    from.textContent = `From ${token.allowed_ips.join(", ")}`;
    lines.push(from);
  }
  return lines;
}

// A row's icon button: "Revoke" or "Rotate", described by the row's masked token.
function iconButton(label, className, d, masked, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = `button button-icon ${className}`;
  button.setAttribute("aria-label", label);
  button.setAttribute("aria-describedby", masked.id);
  button.title = `${label} token`;
  button.append(icon(d));
  button.addEventListener("click", onClick);
  return button;
}

function tokenRow(token) {
  const row = document.createElement("tr");
  row.setAttribute("role", "row");
  row.dataset.tokenId = token.id;

  const description = document.createElement("span");
  description.textContent = descriptionOf(token);
  if (!token.description) description.className = "muted";

  const masked = document.createElement("code");
  masked.className = "masked";
  masked.id = `masked-${token.id}`;
  masked.textContent = token.masked;

  const revoke = () => confirmRevoke(token, row);
  const actions = [iconButton("Revoke", "button-danger-quiet revoke", BIN, masked, revoke)];
  if (!token.replaced_by && token.status === "active") {
    const rotate = () => confirmRotate(token, row);
    actions.unshift(iconButton("Rotate", "button-quiet rotate", ROTATE, masked, rotate));
  }

  row.append(
    cell("Description", description, ...limitsOf(token)),
    cell("Token", masked),
    cell("Created", timeElement(token.created_at)),
    cell("Expires", timeElement(token.expires_at)),
    cell("Last used", timeElement(token.last_used_at)),
    cell("Status", ...statusOf(token)),
    cell("30 days", usage.tokenCell(token)),
    cell("Actions", ...actions),
  );
  return row;
}

function setCursor(cursor) {
  nextCursor = cursor;
  $("load-more").hidden = !cursor;
}

// ------------------------------------------------------------------ loading

// The status filter's query: "" (all), active, expired, or expiring (within 7 days).
function filter() {
  const status = $("tokens-filter").value;
  if (!status) return {};
  return status === "expiring" ? { status, within: "7d" } : { status };
}

export async function load(projectId, isCurrent) {
  stillCurrent = isCurrent;
  const body = $("tokens-body");
  body.replaceChildren();
  setCursor(null);
  $("tokens-table").hidden = true;
  $("tokens-empty").hidden = true;
  clearError($("tokens-error"));
  clearError($("load-more-error"));
  const request = () => api.listTokens(projectId, null, filter());
  const page = await loaded(request, $("tokens-error"), isCurrent);
  if (!page) return;
  body.append(...page.tokens.map(tokenRow));
  setCursor(page.next_cursor);
  tokenRows.refresh();
}

async function loadMore() {
  const project = projectOf();
  const error = $("load-more-error");
  clearError(error);
  if (!project || !nextCursor) return;
  const request = () => api.listTokens(project.id, nextCursor, filter());
  const page = await loaded(() => whileBusy($("load-more"), request), error, stillCurrent);
  if (!page) return;
  const shown = new Set([...$("tokens-body").children].map((row) => row.dataset.tokenId));
  const rows = page.tokens.filter((token) => !shown.has(token.id)).map(tokenRow);
  $("tokens-body").append(...rows);
  setCursor(page.next_cursor);
  tokenRows.refresh();
  // The button vanishes after the last page: keep keyboard users where the new rows start.
  if (!nextCursor) {
    if (rows.length) rows[0].querySelector("button").focus();
    else $("create-token").focus();
  }
}

// ------------------------------------------------------------------ create and reveal

// "30d" reads "30 days"; a preset the console does not know yet reads as the API names it.
const PRESET_LABELS = { "180d": "6 months", "365d": "1 year", never: "Never" };

function presetLabel(preset) {
  const days = /^(\d+)d$/.exec(preset);
  return PRESET_LABELS[preset] ?? (days ? `${days[1]} days` : preset);
}

// The expiration choices are the API's presets, its default selected. Without the API's
// description there is one choice, the server's default (the field is then not sent).
function fillExpirations() {
  const schema = field("TokenCreate", "expires_in");
  const presets = schema.enum ?? [""];
  const select = $("token-expiration");
  select.replaceChildren(
    ...presets.map((preset) => {
      const chosen = preset === (schema.default ?? "");
      return new Option(preset ? presetLabel(preset) : "Server default", preset, chosen, chosen);
    }),
  );
}

// One entry per line, blank lines left out: the API's array.
function lines(textarea) {
  return textarea.value
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "");
}

function describeLists() {
  for (const [name, id] of [
    ["scopes", "token-scopes-max"],
    ["allowed_ips", "token-allowed-ips-max"],
  ]) {
    const schema = field("TokenCreate", name);
    $(id).textContent = schema.maxItems === undefined ? "" : `, at most ${schema.maxItems}`;
  }
}

function describeDescription() {
  const schema = field("TokenCreate", "description");
  limitInput($("token-description"), schema);
  $("token-description-max").textContent =
    schema.maxLength === undefined ? "" : `, up to ${schema.maxLength} characters`;
}

async function submitCreate(event) {
  event.preventDefault();
  const project = projectOf();
  const form = $("token-form");
  if (!project) return;
  const fields = { description: $("token-description").value.trim() };
  if ($("token-expiration").value) fields.expires_in = $("token-expiration").value;
  const scopes = lines($("token-scopes"));
  const allowedIps = lines($("token-allowed-ips"));
  if (scopes.length) fields.scopes = scopes;
  if (allowedIps.length) fields.allowed_ips = allowedIps;
  const send = () => api.createToken(project.id, fields);
  const created = await sendChecked(form, $("token-form-error"), "TokenCreate", ["description"], send);
  if (!created) return;
  form.reset();
  const dialog = $("dialog-token");
  if (dialog.open) dialog.close();
  reveal(created, project.id);
}

let copied = false; // the token on show went to the clipboard (button or Ctrl+C)

// Show the raw token once. Only the DOM holds it from here on; `created` loses it at once.
// `done()` runs when the dialog closes (after a rotation: the old row is redrawn).
function reveal(created, projectId, done = () => {}) {
  const token = created.token;
  delete created.token;
  revealOnce(token, {
    kind: "token",
    returnFocus: () => $("create-token"),
    onClose: () => {
      const project = projectOf();
      if (project && project.id === projectId) {
        const message = created.rotated_from ? "Token rotated." : "Token created.";
        tokenRows.add(tokenRow(created), message);
        done();
      }
    },
  });
}

// The one-time reveal dialog, for a token or an admin key (`kind` names it): `text` is held
// by the DOM alone while the dialog is open, and emptied when it closes.
export function revealOnce(text, { kind, returnFocus, onClose }) {
  const secret = $("reveal-token");
  secret.textContent = text;
  $("dialog-reveal-title").textContent = `Your new ${kind}`;
  $("reveal-kind").textContent = kind;
  copied = false;
  asking(false);
  $("reveal-status").textContent = "";
  openDialog($("dialog-reveal"), {
    returnFocus,
    onClose: () => {
      secret.textContent = "";
      $("reveal-status").textContent = "";
      asking(false);
      window.getSelection()?.removeAllRanges();
      onClose();
    },
  });
  $("reveal-copy").focus();
}

// The question "close without copying?" in place of the dialog's buttons, or back.
function asking(ask) {
  $("reveal-ask").hidden = !ask;
  $("reveal-actions").hidden = ask;
  if (ask) $("reveal-back").focus();
}

// Escape (the browser's close request). Once asked, Escape again closes: browsers let a
// page hold a dialog open against one close request, not against the next.
function closeRequested(event) {
  if (copied || !$("reveal-ask").hidden || !$("reveal-token").textContent) return;
  event.preventDefault();
  asking(true);
}

async function copyToken() {
  const secret = $("reveal-token");
  if (!secret.textContent) return;
  copied = await copyText(secret);
  $("reveal-status").textContent = copied
    ? "Copied to the clipboard."
    : "Copying is blocked here: the token is selected, press Ctrl+C (⌘C on a Mac).";
}

// ------------------------------------------------------------------ rotate

let pendingRotate = null; // { token, row }

function confirmRotate(token, row) {
  pendingRotate = { token, row };
  const masked = document.createElement("code");
  masked.textContent = token.masked;
  $("rotate-who").replaceChildren(
    ...(token.description ? ["“", token.description, "” (", masked, ")"] : [masked]),
  );
  $("rotate-form").reset();
  clearError($("rotate-error"));
  openDialog($("dialog-rotate"), {
    returnFocus: () => (row.isConnected ? row.querySelector("button") : $("create-token")),
    onClose: () => {
      pendingRotate = null;
    },
  });
}

async function submitRotate(event) {
  event.preventDefault();
  if (!pendingRotate) return;
  const { token, row } = pendingRotate;
  const grace = $("rotate-grace").value;
  const submit = $("rotate-form").querySelector("button[type=submit]");
  let rotated;
  try {
    rotated = await whileBusy(submit, () => api.rotateToken(token.project_id, token.id, grace));
  } catch (failure) {
    showError($("rotate-error"), failure);
    return;
  }
  $("dialog-rotate").close();
  // The old row shows its new end and its successor once the new token was seen.
  reveal(rotated, token.project_id, async () => {
    try {
      const old = await api.getToken(token.project_id, token.id);
      if (row.isConnected) row.replaceWith(tokenRow(old));
    } catch {
      // Revoked meanwhile: the next load shows what is left.
    }
  });
}

// ------------------------------------------------------------------ revoke

function neighbourButton(row) {
  const next = row.nextElementSibling || row.previousElementSibling;
  return next ? next.querySelector("button.revoke") : null;
}

// "Programs using “CI runner” (tg_…)", or "Programs using the token tg_…" without a description.
function revokeWho(token) {
  const masked = document.createElement("code");
  masked.textContent = token.masked;
  if (!token.description) return ["Programs using the token ", masked];
  const name = document.createElement("strong");
  name.textContent = token.description;
  return ["Programs using “", name, "” (", masked, ")"];
}

let askRevoke = () => {}; // (subject, returnFocus): see init

function confirmRevoke(token, row) {
  $("revoke-who").replaceChildren(...revokeWho(token));
  const focusAfter = neighbourButton(row);
  askRevoke({ token, row }, () =>
    focusAfter && focusAfter.isConnected ? focusAfter : $("create-token"),
  );
}

// A 404 (someone revoked it already) counts: either way the row must go.
const revoking = {
  remove: ({ token }) => api.revokeToken(token.project_id, token.id),
  removed: ({ row }) => tokenRows.drop(row, "Token revoked."),
};

// ------------------------------------------------------------------ wiring

export function init(currentProject) {
  projectOf = currentProject;
  $("tokens-table").prepend(tableHead(COLUMNS, { actions: true }));
  fillExpirations();
  describeDescription();
  describeLists();
  clearFieldErrorsOnChange($("token-form"), $("token-form-error"));
  $("rotate-form").addEventListener("submit", submitRotate);
  $("tokens-filter").addEventListener("change", () => {
    const project = projectOf();
    if (project) load(project.id, stillCurrent);
  });
  $("create-token").addEventListener("click", () =>
    openForm($("dialog-token"), $("token-form-error")),
  );
  $("token-form").addEventListener("submit", submitCreate);
  const reveal = $("dialog-reveal");
  $("reveal-copy").addEventListener("click", copyToken);
  // Emptied at once: the close event, which empties it too, comes a task later.
  $("reveal-done").addEventListener("click", () => {
    $("reveal-token").textContent = "";
    reveal.close();
  });
  reveal.addEventListener("cancel", closeRequested);
  // Ctrl+C on the selected token counts as a copy too.
  reveal.addEventListener("copy", () => {
    copied = true;
  });
  $("reveal-back").addEventListener("click", () => {
    asking(false);
    $("reveal-copy").focus();
  });
  $("reveal-discard").addEventListener("click", () => reveal.close());
  askRevoke = removalDialog($("dialog-revoke"), $("revoke-error"), revoking);
  $("load-more").addEventListener("click", loadMore);
}
