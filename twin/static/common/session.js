// The signed-in session every page shares (/map, /dashboard, /field and the sign-in page a
// browser gets for a page of the API): the token kept in this browser, signing in and out,
// and requests that carry the token. One sign-in serves them all; a 401 signs out everywhere.
// An ES module with no build step: pages import it (the map, a classic script, with import()).

export const TOKEN_KEY = "twin.token";
const EXPIRES_KEY = "twin.expires";
const USER_KEY = "twin.user";
const signedOut = new Set();

// The token, or null when there is none or it has expired.
export function token() {
  const kept = localStorage.getItem(TOKEN_KEY);
  const expires = localStorage.getItem(EXPIRES_KEY);
  if (kept && expires && new Date(expires) < new Date()) {
    forget();
    return null;
  }
  return kept;
}

// Who signed in: {name, role, grids} as /auth/token answered, or null.
export function user() {
  return token() ? JSON.parse(localStorage.getItem(USER_KEY) || "null") : null;
}

// Sign in; the token answer, or null for a wrong user or password (other failures throw).
export async function signIn(username, password) {
  const answer = await fetch("/auth/token", { method: "POST",
    body: new URLSearchParams({ username, password }) });
  if (answer.status === 400 || answer.status === 401) return null;
  if (!answer.ok) throw new Error(`/auth/token: ${answer.status}`);
  const body = await answer.json();
  localStorage.setItem(TOKEN_KEY, body.access_token);
  localStorage.setItem(EXPIRES_KEY, body.expires_at);
  localStorage.setItem(USER_KEY, JSON.stringify(body.user));
  return body;
}

// Signed out in this browser (the token may live on until it expires).
export function forget() {
  for (const key of [TOKEN_KEY, EXPIRES_KEY, USER_KEY]) localStorage.removeItem(key);
}

// Sign out: the server revokes the token when it can be reached.
export async function signOut() {
  const kept = token();
  if (kept && navigator.onLine) {
    await fetch("/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${kept}` } })
      .catch(() => null);
  }
  forget();
}

// Called when a request finds the token refused (expired or revoked elsewhere).
export function onSignedOut(callback) {
  signedOut.add(callback);
}

// fetch() with the token; a 401 to a signed-in request signs out and tells the listeners.
export async function request(path, options = {}) {
  const kept = token();
  const headers = { ...(options.headers || {}) };
  if (kept) headers.Authorization = `Bearer ${kept}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401 && kept) {
    forget();
    for (const callback of signedOut) callback();
  }
  return response;
}

// A sign-in form (user, password, button) that signs in and then calls onSignedIn; a wrong
// password shows again with the name kept.
export function signInForm({ onSignedIn, message = "", name = "" }) {
  const make = (tag, props) => Object.assign(document.createElement(tag), props);
  const who = make("input", { name: "username", placeholder: "用户名 user", required: true,
                               autocomplete: "username", value: name });
  const pass = make("input", { name: "password", type: "password", required: true,
                                placeholder: "密码 password", autocomplete: "current-password" });
  const form = make("form", { className: "twin-signin" });
  form.append(who, pass, make("button", { type: "submit", textContent: "登录 Sign in" }));
  if (message) form.append(make("p", { className: "twin-error", textContent: message }));
  form.onsubmit = async (event) => {
    event.preventDefault();
    if (await signIn(who.value, pass.value)) {
      onSignedIn();
    } else {
      form.replaceWith(signInForm({ onSignedIn, name: who.value,
                                    message: "用户名或密码错误 wrong user or password" }));
    }
  };
  return form;
}
