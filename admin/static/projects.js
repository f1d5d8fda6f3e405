// The projects list and the "New project" dialog.

import { api } from "./api.js";
import { openForm } from "./dialogs.js";
import {
  $,
  clearError,
  clearFieldErrorsOnChange,
  isCurrent,
  loaded,
  showFieldError,
  showPage,
} from "./dom.js";
import { sendChecked } from "./fields.js";
import { timeElement } from "./format.js";
import { field, limitInput } from "./schema.js";

export function projectHref(id) {
  return `#/projects/${encodeURIComponent(id)}`;
}

function projectItem(project) {
  const item = document.createElement("li");
  const link = document.createElement("a");
  link.href = projectHref(project.id);
  link.textContent = project.name;
  link.className = "project-link";
  const meta = document.createElement("p");
  meta.className = "muted project-meta";
  meta.append(
    `Rate limit ${project.rate_limit ?? "default"} · created `,
    timeElement(project.created_at),
  );
  item.append(link, meta);
  return item;
}

// A message for the next time the list shows (e.g. after deleting a project).
let pendingMessage = "";
export function announce(message) {
  pendingMessage = message;
}

export async function show({ focus = false } = {}) {
  const generation = showPage("view-projects", "Projects", $("projects-title"), focus);
  $("projects-status").textContent = pendingMessage;
  pendingMessage = "";
  const list = $("projects-list");
  const error = $("projects-error");
  clearError(error);
  const answer = await loaded(() => api.listProjects(), error, () => isCurrent(generation));
  if (!answer) return;
  const projects = [...answer.projects].sort((a, b) =>
    a.name.localeCompare(b.name, undefined, { sensitivity: "base" }),
  );
  list.replaceChildren(...projects.map(projectItem));
  $("projects-empty").hidden = projects.length > 0;
}

export function init() {
  const dialog = $("dialog-project");
  const form = $("project-form");
  const error = $("project-form-error");
  limitInput($("project-name"), field("ProjectCreate", "name"));
  clearFieldErrorsOnChange(form, error);

  $("new-project").addEventListener("click", () => openForm(dialog, error));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError(error);
    const name = $("project-name").value.trim();
    const rate = $("project-rate").value.trim();
    if (!name) {
      showFieldError(error, $("project-name"), "Give the project a name.");
      return;
    }
    const fields = { name };
    if (rate) fields.rate_limit = rate;
    const send = () => api.createProject(fields);
    const names = ["name", "rate_limit"];
    const project = await sendChecked(form, error, "ProjectCreate", names, send);
    if (!project) return;
    dialog.close();
    location.hash = projectHref(project.id);
  });
}
