// What a browser gets for a page of the API that needs a token (a 401): a sign-in form.
// Signed in, the page is asked for again with the token and shown in place: HTML as it is,
// JSON laid out with its links kept clickable. The session is the one the map, the board and
// the field page share (common/session.js): one sign-in serves them all.
import { forget, request, signInForm, token } from "/static/common/session.js";

const box = document.getElementById("twin-signin");
const el = (tag, props, ...children) => {
  const node = Object.assign(document.createElement(tag), props || {});
  node.append(...children);
  return node;
};

function form(message) {
  box.replaceChildren(
    el("h1", { textContent: "请登录 Sign in" }),
    el("p", { textContent: `${location.pathname} 需要登录 needs a signed-in user.` }),
    ...(message ? [el("p", { className: "twin-error", textContent: message })] : []),
    signInForm({ onSignedIn: show }),
    el("p", {}, el("a", { href: "/", textContent: "首页 Home" })));
  box.querySelector("input[name=username]").focus();
}

// JSON as indented text, this server's URLs in it as links
function jsonView(text) {
  let pretty = text;
  try { pretty = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* as it came */ }
  const pre = el("pre");
  const origin = location.origin.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  let at = 0;
  for (const match of pretty.matchAll(new RegExp(`"(${origin}/[^"\\s]*)"`, "g"))) {
    pre.append(pretty.slice(at, match.index + 1),
               el("a", { href: match[1], textContent: match[1] }), '"');
    at = match.index + match[0].length;
  }
  pre.append(pretty.slice(at));
  return pre;
}

async function show() {
  if (!token()) { form(); return; }
  const answer = await request(location.href, {
    headers: { Accept: "text/html, application/json;q=0.9" } });
  if (answer.status === 401) { form("登录已过期 signed out: sign in again"); return; }
  const type = answer.headers.get("content-type") || "";
  const body = await answer.text();
  if (type.startsWith("text/html")) {
    document.open();
    document.write(body);
    document.close();
    return;
  }
  const out = el("a", { href: "#", textContent: "退出 Sign out" });
  out.onclick = (event) => { event.preventDefault(); forget(); form(); };
  box.replaceChildren(
    el("p", { className: "twin-bar" }, el("a", { href: "/", textContent: "首页 Home" }),
       ` · ${location.pathname}${location.search} · ${answer.status} · `, out),
    type.includes("json") ? jsonView(body) : el("pre", { textContent: body }));
  document.title = `${location.pathname} · Twin 数字孪生`;
}

show();
