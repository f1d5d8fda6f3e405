// A project's page: the Settings section (name, rate limit, quota), the Usage chart, the
// Access Tokens section and the Webhooks section.

import * as activity from "./activity.js";
import { api } from "./api.js";
import { removalDialog } from "./dialogs.js";
import {
  $,
  clearError,
  clearFieldErrorsOnChange,
  focusHeading,
  isCurrent,
  nextGeneration,
  showError,
  showFieldError,
  showView,
  whileBusy,
} from "./dom.js";
import { firstProblem, fromApi } from "./fields.js";
import { timeElement } from "./format.js";
import * as projects from "./projects.js";
import { field, limitInput } from "./schema.js";
import * as tokens from "./tokens.js";
import * as usage from "./usage.js";
import * as webhooks from "./webhooks.js";
import * as who from "./who.js";

let current = null; // the project shown, as the API last returned it

function fill(project) {
  current = project;
  document.title = `${project.name} · Tollgate admin`;
  $("project-title").textContent = project.name;
  $("project-crumb").textContent = project.name;
  $("project-id").textContent = project.id;
  $("project-created").replaceChildren(timeElement(project.created_at));
  $("settings-name").value = project.name;
  $("settings-rate").value = project.rate_limit ?? "";
  // A viewer reads the settings; the API would refuse a change.
  const readOnly = !who.may("manager");
  $("settings-name").readOnly = readOnly;
  $("settings-rate").readOnly = readOnly;
  $("settings-quota").value = project.quota ?? "";
  $("settings-quota").readOnly = readOnly;
}

export async function show(projectId, { focus = false } = {}) {
  const generation = nextGeneration();
  showView("view-project");
  const error = $("project-error");
  clearError(error);
  $("settings-saved").textContent = "";
  clearError($("settings-error"));
  if (!current || current.id !== projectId) {
    // Don't show the previous project's data while this one loads.
    $("project-body").hidden = true;
    $("project-title").textContent = "Loading…";
    $("project-crumb").textContent = "";
  }
  let project;
  try {
    project = await api.getProject(projectId);
  } catch (failure) {
    if (!isCurrent(generation)) return;
    $("project-body").hidden = true;
    $("project-title").textContent = failure.status === 404 ? "Project not found" : "Project";
    showError(
      error,
      failure.status === 404 ? "This project does not exist (it may have been deleted)." : failure,
    );
    return;
  }
  if (!isCurrent(generation)) return;
  fill(project);
  $("project-body").hidden = false;
  if (focus) focusHeading($("project-title"));
  const stillCurrent = () => isCurrent(generation);
  await Promise.all([
    tokens.load(project.id, stillCurrent),
    // Webhooks are the project managers' business; a portal session sees tokens only.
    who.may("manager") && !who.isPortal() ? webhooks.load(project.id, stillCurrent) : null,
    activity.fill("project-activity", { project_id: project.id }, stillCurrent),
    usage.load(project.id, stillCurrent),
  ]);
}

// PATCH only what changed; an empty rate limit means the server default (null).
function changes() {
  const fields = {};
  const name = $("settings-name").value.trim();
  const rate = $("settings-rate").value.trim() || null;
  const quota = $("settings-quota").value.trim() || null;
  if (name !== current.name) fields.name = name;
  if (rate !== current.rate_limit) fields.rate_limit = rate;
  if (quota !== current.quota) fields.quota = quota;
  return fields;
}

const deleting = {
  remove: (project) => api.deleteProject(project.id),
  removed: (project) => {
    current = null;
    projects.announce(`Project “${project.name}” deleted.`);
    location.hash = "#/";
  },
};

export function init() {
  tokens.init(() => current);
  webhooks.init(() => current);
  const askDelete = removalDialog($("dialog-delete"), $("delete-error"), deleting);
  $("delete-project").addEventListener("click", () => {
    if (!current) return;
    $("delete-name").textContent = current.name;
    askDelete(current);
  });
  const form = $("settings-form");
  const error = $("settings-error");
  const saved = $("settings-saved");
  limitInput($("settings-name"), field("ProjectUpdate", "name"));
  clearFieldErrorsOnChange(form, error);
  form.addEventListener("input", () => {
    saved.textContent = "";
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError(error);
    saved.textContent = "";
    if (!current) return;
    if (!$("settings-name").value.trim()) {
      showFieldError(error, $("settings-name"), "The project needs a name.");
      return;
    }
    const wrong = firstProblem(form, "ProjectUpdate", ["name", "rate_limit", "quota"]);
    if (wrong) {
      showFieldError(error, ...wrong);
      return;
    }
    const fields = changes();
    if (Object.keys(fields).length === 0) {
      saved.textContent = "Nothing to save.";
      return;
    }
    try {
      const project = await whileBusy(form.querySelector("button[type=submit]"), () =>
        api.updateProject(current.id, fields),
      );
      fill(project);
      saved.textContent = "Saved.";
    } catch (failure) {
      const about = fromApi(form, "ProjectUpdate", failure);
      if (about) showFieldError(error, ...about);
      else showError(error, failure);
    }
  });
}
