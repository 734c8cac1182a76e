// Keeps the field page's shell so that a reload without a network still opens it (its data
// lives in IndexedDB). Network first, so a new version arrives whenever there is a network;
// the API is never cached here.
const CACHE = "twin-field";
const SHELL = ["/field", "/static/field/field.js", "/static/field/field.css",
  "/static/common/session.js",
  ...["state", "words", "dom", "idb", "api", "ids", "layers", "view", "forms", "photos",
      "location", "problems", "sync", "cases"].map((module) => `/static/field/${module}.js`),
  "/static/vendor/leaflet/leaflet.js", "/static/vendor/leaflet/leaflet.css"];
const SLOW_MS = 4000; // on a link that hangs rather than fails, the cached shell opens sooner

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL))
    .then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method === "GET" && url.origin === self.location.origin
      && SHELL.includes(url.pathname)) {
    event.respondWith(networkFirst(url.pathname));
  }
});

async function networkFirst(path) {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(path);
  try {
    const response = await fetch(path, cached ? { signal: AbortSignal.timeout(SLOW_MS) } : {});
    if (response.ok) await cache.put(path, response.clone());
    return response;
  } catch (error) {
    if (cached) return cached;
    throw error;
  }
}
