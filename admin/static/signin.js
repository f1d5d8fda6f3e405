// The sign-in view: checks a candidate admin token with GET /v1/projects before keeping it.

import { api, session } from "./api.js";
import { $, clearError, showError, showView, whileBusy } from "./dom.js";

export function show(message) {
  showView("view-signin");
  document.title = "Sign in · Tollgate admin";
  const input = $("signin-token");
  if (message) showError($("signin-error"), message);
  else clearError($("signin-error"));
  input.focus();
}

export function init(onSignedIn) {
  const form = $("signin-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("signin-token");
    const error = $("signin-error");
    const candidate = input.value.trim();
    clearError(error);
    if (!candidate) {
      showError(error, "Enter the admin token.");
      input.focus();
      return;
    }
    const button = form.querySelector("button[type=submit]");
    try {
      await whileBusy(button, () => api.listProjects(candidate));
    } catch (failure) {
      showError(
        error,
        failure.status === 401
          ? "That admin token was not accepted. Check the ADMIN_TOKEN the admin server runs with."
          : failure.message,
      );
      input.select();
      input.focus();
      return;
    }
    session.set(candidate);
    input.value = "";
    onSignedIn();
  });
}
