// What a browser gets for a page of the API that needs a token (a 401): a sign-in form.
// Signed in, the page is asked for again with the token and shown in place: HTML as it is,
// JSON laid out with its links kept clickable. The token is this browser's, kept where the
// map, the board and the field page keep theirs, so one sign-in serves them all.
"use strict";
(() => {
  const box = document.getElementById("twin-signin");
  const el = (tag, props, ...children) => {
    const node = Object.assign(document.createElement(tag), props || {});
    node.append(...children);
    return node;
  };

  function form(message, name) {
    const user = el("input", { name: "username", placeholder: "用户名 user", required: true,
                                autocomplete: "username", value: name || "" });
    const pass = el("input", { name: "password", type: "password", required: true,
                                placeholder: "密码 password", autocomplete: "current-password" });
    const go = el("button", { type: "submit", textContent: "登录 Sign in" });
    const signIn = el("form", {}, user, pass, go);
    signIn.onsubmit = async (event) => {
      event.preventDefault();
      const answer = await fetch("/auth/token", { method: "POST",
        body: new URLSearchParams({ username: user.value, password: pass.value }) });
      if (!answer.ok) { form("用户名或密码错误 wrong user or password", user.value); return; }
      localStorage.setItem("twin.token", (await answer.json()).access_token);
      show();
    };
    box.replaceChildren(
      el("h1", { textContent: "请登录 Sign in" }),
      el("p", { textContent: `${location.pathname} 需要登录 needs a signed-in user.` }),
      ...(message ? [el("p", { className: "twin-error", textContent: message })] : []),
      signIn,
      el("p", {}, el("a", { href: "/", textContent: "首页 Home" })));
    (name ? pass : user).focus();
  }

  function signOut() {
    localStorage.removeItem("twin.token");
    form();
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
    const token = localStorage.getItem("twin.token");
    if (!token) { form(); return; }
    const answer = await fetch(location.href, { headers: {
      Authorization: `Bearer ${token}`, Accept: "text/html, application/json;q=0.9" } });
    if (answer.status === 401) { localStorage.removeItem("twin.token");
                                 form("登录已过期 signed out: sign in again"); return; }
    const type = answer.headers.get("content-type") || "";
    const body = await answer.text();
    if (type.startsWith("text/html")) {
      document.open();
      document.write(body);
      document.close();
      return;
    }
    const out = el("a", { href: "#", textContent: "退出 Sign out" });
    out.onclick = (event) => { event.preventDefault(); signOut(); };
    box.replaceChildren(
      el("p", { className: "twin-bar" }, el("a", { href: "/", textContent: "首页 Home" }),
         ` · ${location.pathname}${location.search} · ${answer.status} · `, out),
      type.includes("json") ? jsonView(body) : el("pre", { textContent: body }));
    document.title = `${location.pathname} · Twin 数字孪生`;
  }

  show();
})();
