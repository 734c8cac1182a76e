// The grid worker's tablet page. Every edit goes first into an outbox in IndexedDB (so that
// neither a dropped link nor a reload loses it), then to POST /sync; the map and the list
// show the server's state with the pending edits laid over it. Signing in is the session the
// map and the board share (common/session.js). This module signs in and out and wires the
// page's controls; the rest is a module per concern, no build step: state, words, dom, idb
// (the outbox's store), api, ids, layers, view (map, list, status, sheet), forms, photos,
// location, problems (conflicts, rejections), sync and cases (my cases 我的案件: report, handle,
// verify, through the same outbox).
import { $ } from "./dom.js";
import { S, SYNC_EVERY_MS } from "./state.js";
import { applyText, t } from "./words.js";
import { idbDelete } from "./idb.js";
import { M, drawSheet, ensureMap, render } from "./view.js";
import { locate } from "./location.js";
import { loadLocal, sync } from "./sync.js";
import { openReport } from "./cases.js";
import { forget, signIn, signOut } from "/static/common/session.js";

function showApp() {
  const signedIn = Boolean(S.token);
  $("login").hidden = signedIn;
  $("app").hidden = !signedIn;
  $("signout").hidden = !signedIn;
  $("who").textContent = signedIn ? `${t("app")} ${S.user.name}` : t("app");
  $("who").removeAttribute("data-t");
  if (signedIn) {
    ensureMap();
    M.map.invalidateSize();
  }
}

async function start() {
  await loadLocal();
  showApp();
  render();
  await sync();
}

export function signOutLocally() {
  S.token = null;
  S.sheet = null;
  S.cursor = null;
  M.fitted = false;
  forget();
  drawSheet();
  showApp();
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  $("login-error").textContent = "";
  try {
    const answer = await signIn(data.get("username"), data.get("password"));
    if (!answer) {
      $("login-error").textContent = t("badLogin");
      return;
    }
    S.token = answer.access_token;
    S.user = answer.user;
    await start();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
});

$("signout").addEventListener("click", async () => {
  if (S.outbox.length && !confirm(t("keepOutbox", { n: S.outbox.length }))) return;
  await signOut(); // the token dies with the sign-out; offline it simply expires
  await idbDelete("cache", `scope:${S.user.name}`);
  signOutLocally();
  render();
});

$("lang").addEventListener("click", () => {
  S.lang = S.lang === "zh" ? "en" : "zh";
  localStorage.setItem("twin.lang", S.lang);
  showApp();
  render();
  drawSheet();
});

$("status").addEventListener("click", () => sync());
$("locate").addEventListener("click", () => locate(null));
$("add").addEventListener("click", () => { S.sheet = { kind: "add", layer: null }; drawSheet(); });
$("report-case").addEventListener("click", openReport);
$("conflicts-button").addEventListener("click", () => { S.sheet = { kind: "problems" }; drawSheet(); });
window.addEventListener("online", () => { render(); sync(); });
window.addEventListener("offline", render);
setInterval(sync, SYNC_EVERY_MS);

navigator.serviceWorker?.register("/field/sw.js", { scope: "/field" });

applyText();
if (S.token) await start();
else showApp();
