// The sign-in view: checks a candidate credential (the admin token, an admin key) with
// GET /v1/me before keeping it; the console then adapts to its role (who.js).

import { api, session } from "./api.js";
import { $, clearError, showError, showView, whileBusy } from "./dom.js";
import * as who from "./who.js";

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
      showError(error, "Enter the admin token or an admin key.");
      input.focus();
      return;
    }
    const button = form.querySelector("button[type=submit]");
    let me;
    try {
      me = await whileBusy(button, () => api.me(candidate));
    } catch (failure) {
      showError(
        error,
        failure.status === 401
          ? "That token or key was not accepted. Check the ADMIN_TOKEN the admin server runs " +
              "with, or whether the key was revoked or has expired."
          : failure.message,
      );
      input.select();
      input.focus();
      return;
    }
    session.set(candidate);
    who.set(me);
    input.value = "";
    onSignedIn();
  });
}
