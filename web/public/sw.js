// Lockstep primary app service worker (registered with scope /app). Minimal on purpose: it makes the app
// installable and opens the last-seen app shell when offline. It never caches API or WebSocket traffic.
const CACHE = "lockstep-app-v1";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});
self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.mode !== "navigate") return; // assets and everything else: the network, untouched
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put("/app", copy));
        }
        return response;
      })
      .catch(() => caches.match("/app").then((cached) => cached || Response.error())),
  );
});
