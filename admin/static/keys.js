// The "Admin keys" page (admin role): the keys, newest first, the "Create admin key" dialog,
// the same one-time reveal dialog as tokens, and the revoke confirmation.

import { api } from "./api.js";
import {
  $,
  cell,
  clearError,
  clearFieldErrorsOnChange,
  focusHeading,
  isCurrent,
  nextGeneration,
  openDialog,
  removeConfirmed,
  showError,
  showFieldError,
  showView,
} from "./dom.js";
import { sendChecked } from "./fields.js";
import { timeElement } from "./format.js";
import { field, limitInput } from "./schema.js";
import { revealOnce } from "./tokens.js";

const ROLE_LABELS = { admin: "Admin", manager: "Manager", viewer: "Viewer" };
let projectNames = new Map(); // id -> name, for the Role column and the dialog

function keyRow(key) {
  const row = document.createElement("tr");
  row.setAttribute("role", "row");
  row.dataset.keyId = key.id;
  const masked = document.createElement("code");
  masked.className = "masked";
  masked.id = `masked-${key.id}`;
  masked.textContent = key.masked;
  const role = document.createElement("span");
  const project = key.project_id ? projectNames.get(key.project_id) ?? key.project_id : null;
  role.textContent = ROLE_LABELS[key.role] + (project ? ` of ${project}` : "");
  const status = document.createElement("span");
  status.className = key.status === "expired" ? "badge badge-expired" : "badge badge-active";
  status.textContent = key.status === "expired" ? "Expired" : "Active";
  const revoke = document.createElement("button");
  revoke.type = "button";
  revoke.className = "button button-danger-quiet";
  revoke.textContent = "Revoke";
  revoke.setAttribute("aria-describedby", masked.id);
  revoke.addEventListener("click", () => confirmRevoke(key, row));
  const name = document.createElement("span");
  name.textContent = key.name;
  row.append(
    cell("Name", name),
    cell("Role", role),
    cell("Key", masked),
    cell("Created", timeElement(key.created_at)),
    cell("Expires", timeElement(key.expires_at)),
    cell("Last used", timeElement(key.last_used_at)),
    cell("Status", status),
    cell("Actions", revoke),
  );
  return row;
}

function refreshEmptyState() {
  const empty = $("keys-body").children.length === 0;
  $("keys-table").hidden = empty;
  $("keys-empty").hidden = !empty;
}

export async function show({ focus = false } = {}) {
  const generation = nextGeneration();
  showView("view-keys");
  document.title = "Admin keys · Tollgate admin";
  if (focus) focusHeading($("keys-title"));
  clearError($("keys-error"));
  const keys = [];
  try {
    const projects = await api.listProjects();
    projectNames = new Map(projects.projects.map((p) => [p.id, p.name]));
    let cursor = null;
    do {
      const page = await api.listAdminKeys(cursor);
      keys.push(...page.admin_keys);
      cursor = page.next_cursor;
    } while (cursor);
  } catch (failure) {
    if (isCurrent(generation)) showError($("keys-error"), failure);
    return;
  }
  if (!isCurrent(generation)) return;
  $("keys-body").replaceChildren(...keys.map(keyRow));
  refreshEmptyState();
}

// ------------------------------------------------------------------ create

function fillChoices() {
  const presets = field("AdminKeyCreate", "expires_in");
  $("key-expiration").replaceChildren(
    ...(presets.enum ?? [""]).map((preset) => {
      const chosen = preset === (presets.default ?? "");
      const label = preset === "never" ? "Never" : preset || "Server default";
      return new Option(label.replace(/^(\d+)d$/, "$1 days"), preset, chosen, chosen);
    }),
  );
  limitInput($("key-name"), field("AdminKeyCreate", "name"));
}

function projectChoice() {
  const scoped = $("key-role").value !== "admin";
  $("key-project-field").hidden = !scoped;
}

function openCreate() {
  const form = $("key-form");
  form.reset();
  clearError($("key-form-error"));
  const names = [...projectNames].sort((a, b) => a[1].localeCompare(b[1]));
  $("key-project").replaceChildren(...names.map(([id, name]) => new Option(name, id)));
  projectChoice();
  openDialog($("dialog-key"));
}

async function submitCreate(event) {
  event.preventDefault();
  const form = $("key-form");
  const error = $("key-form-error");
  const name = $("key-name").value.trim();
  if (!name) {
    showFieldError(error, $("key-name"), "Give the key a name.");
    return;
  }
  const fields = { name, role: $("key-role").value };
  if ($("key-expiration").value) fields.expires_in = $("key-expiration").value;
  if (fields.role !== "admin") {
    if (!$("key-project").value) {
      showFieldError(error, $("key-project"), "Create a project first: this role needs one.");
      return;
    }
    fields.project_id = $("key-project").value;
  }
  const send = () => api.createAdminKey(fields);
  const created = await sendChecked(form, error, "AdminKeyCreate", ["name"], send);
  if (!created) return;
  const key = created.key;
  delete created.key;
  form.reset();
  $("dialog-key").close();
  revealOnce(key, {
    kind: "admin key",
    returnFocus: () => $("create-key"),
    onClose: () => {
      $("keys-body").prepend(keyRow(created));
      refreshEmptyState();
      $("keys-status").textContent = "Admin key created.";
    },
  });
}

// ------------------------------------------------------------------ revoke

let pending = null; // { key, row }

function confirmRevoke(key, row) {
  pending = { key, row };
  $("key-revoke-name").textContent = key.name;
  clearError($("key-revoke-error"));
  openDialog($("dialog-key-revoke"), {
    returnFocus: () => $("create-key"),
    onClose: () => {
      pending = null;
    },
  });
}

async function submitRevoke(event) {
  if (!pending) return event.preventDefault();
  const { key, row } = pending;
  const revoke = () => api.revokeAdminKey(key.id);
  if (!(await removeConfirmed(event, $("key-revoke-form"), $("key-revoke-error"), revoke))) return;
  row.remove();
  refreshEmptyState();
  $("keys-status").textContent = "Admin key revoked.";
  $("dialog-key-revoke").close();
}

export function init() {
  fillChoices();
  clearFieldErrorsOnChange($("key-form"), $("key-form-error"));
  $("create-key").addEventListener("click", openCreate);
  $("key-role").addEventListener("change", projectChoice);
  $("key-form").addEventListener("submit", submitCreate);
  $("key-revoke-form").addEventListener("submit", submitRevoke);
}
