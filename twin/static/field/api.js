// Requests to Twin with the session's token; a refused token signs out.
import { S } from "./state.js";
import { t } from "./words.js";
import { toast } from "./dom.js";
import { signOutLocally } from "./field.js";
import { request } from "/static/common/session.js";

export class ApiError extends Error {
  constructor(status, body) {
    super(body.description || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export async function api(path, { method = "GET", json, body, headers = {} } = {}) {
  const sent = { ...headers };
  let payload = body;
  if (json !== undefined) {
    sent["Content-Type"] = "application/json";
    payload = JSON.stringify(json);
  }
  const response = await request(path, { method, headers: sent, body: payload });
  if (response.status === 401 && S.token) {
    signOutLocally();
    toast(t("signedOut"), "error");
  }
  if (!response.ok) {
    throw new ApiError(response.status, await response.json().catch(() => ({})));
  }
  return response;
}
