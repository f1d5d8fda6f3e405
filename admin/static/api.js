// The admin API client. The admin token lives in sessionStorage only: it survives a reload of
// this tab, and is gone when the tab closes or the user signs out. Never localStorage or a cookie.

const TOKEN_KEY = "tollgate.adminToken";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

export const session = {
  get() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

// Called when the API answers 401 to a signed-in request (the token was rotated server side).
let onUnauthorized = () => {};
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

async function errorFrom(response) {
  let code = "http_" + response.status;
  let message = `The admin API answered ${response.status} ${response.statusText}.`.trim();
  try {
    const body = await response.json();
    if (body && body.error && typeof body.error.message === "string") {
      code = body.error.code || code;
      message = body.error.message;
    }
  } catch {
    // Not JSON (a proxy's error page, say): keep the generic sentence.
  }
  return new ApiError(response.status, code, message);
}

// One request. `token` overrides the session token (sign-in checks a candidate token).
export async function request(method, path, { body, token } = {}) {
  const bearer = token ?? session.get();
  const headers = { Accept: "application/json" };
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    throw new ApiError(0, "network_error", "Could not reach the admin API. Check that it is running and try again.");
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401 && token === undefined) onUnauthorized(error);
    throw error;
  }
  return response.status === 204 ? null : response.json();
}

const enc = encodeURIComponent;

function query(params) {
  const given = Object.entries(params).filter(([, value]) => value);
  return given.length ? `?${new URLSearchParams(given)}` : "";
}

export const api = {
  // Who the credential is (type, role, project): the console adapts to it.
  me: (token) => request("GET", "/v1/me", { token }),
  // A portal link's code for a session; needs no credential (token "" sends none).
  exchangePortal: (code) =>
    request("POST", "/v1/portal-sessions/exchange", { body: { code }, token: "" }),
  listAdminKeys: (cursor) => request("GET", `/v1/admin-keys${query({ cursor })}`),
  createAdminKey: (fields) => request("POST", "/v1/admin-keys", { body: fields }),
  revokeAdminKey: (id) => request("DELETE", `/v1/admin-keys/${enc(id)}`),
  listAudit: (params) => request("GET", `/v1/audit${query(params)}`),
  listProjects: (token) => request("GET", "/v1/projects", { token }),
  createProject: (fields) => request("POST", "/v1/projects", { body: fields }),
  getProject: (id) => request("GET", `/v1/projects/${enc(id)}`),
  updateProject: (id, fields) => request("PATCH", `/v1/projects/${enc(id)}`, { body: fields }),
  deleteProject: (id) => request("DELETE", `/v1/projects/${enc(id)}`),
  // Pages of the API's default size.
  // `filter`: {status, within} of the API's listing, or {} for every token.
  listTokens: (id, cursor, filter = {}) => {
    const params = new URLSearchParams(filter);
    if (cursor) params.set("cursor", cursor);
    const query = params.toString() ? `?${params}` : "";
    return request("GET", `/v1/projects/${enc(id)}/tokens${query}`);
  },
  getToken: (id, tokenId) => request("GET", `/v1/projects/${enc(id)}/tokens/${enc(tokenId)}`),
  rotateToken: (id, tokenId, grace) =>
    request("POST", `/v1/projects/${enc(id)}/tokens/${enc(tokenId)}/rotate`, {
      body: { grace },
    }),
  createToken: (id, fields) => request("POST", `/v1/projects/${enc(id)}/tokens`, { body: fields }),
  revokeToken: (id, tokenId) =>
    request("DELETE", `/v1/projects/${enc(id)}/tokens/${enc(tokenId)}`),
  listWebhooks: (id) => request("GET", `/v1/projects/${enc(id)}/webhooks`),
  createWebhook: (id, fields) =>
    request("POST", `/v1/projects/${enc(id)}/webhooks`, { body: fields }),
  deleteWebhook: (id, webhookId) =>
    request("DELETE", `/v1/projects/${enc(id)}/webhooks/${enc(webhookId)}`),
  testWebhook: (id, webhookId) =>
    request("POST", `/v1/projects/${enc(id)}/webhooks/${enc(webhookId)}/test`),
  // 30 days up to today by default; `params`: from, to, token_id, group_by.
  usage: (id, params = {}) => {
    const query = new URLSearchParams(params).toString();
    return request("GET", `/v1/projects/${enc(id)}/usage${query ? `?${query}` : ""}`);
  },
  listDeliveries: (id, webhookId, limit) =>
    request(
      "GET",
      `/v1/projects/${enc(id)}/webhooks/${enc(webhookId)}/deliveries?${new URLSearchParams({ limit })}`,
    ),
};
