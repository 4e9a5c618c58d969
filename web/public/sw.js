// Lockstep primary app service worker (registered with scope /app). It makes the app installable, opens
// it offline, and shows its notifications. It never caches API, media or WebSocket traffic.
//
// Offline: the app shell (/app) is network-first with the last good copy as fallback; the build's
// assets (/assets/*: content-hashed names, so a name never changes meaning) are cache-first. Each good
// copy of /app also caches the assets it names, so the first visit already works offline afterwards;
// assets loaded later (the scanner's decoder) are cached as they load. Assets no longer named by the
// newest /app, and not used since, are dropped when the app shell changes.
const CACHE = "lockstep-app-v2";
const SHELL = "/app";
const STATIC = ["/manifest.webmanifest", "/icon.svg", "/icon-192.png", "/icon-512.png"];

/** The /assets/ paths an HTML page names (its scripts, styles and preloads). */
function assetsOf(html) {
  return [...new Set([...html.matchAll(/(?:src|href)="(\/assets\/[^"?#]+)"/g)].map((m) => m[1]))];
}

async function cacheShell(response) {
  const cache = await caches.open(CACHE);
  const html = await response.clone().text();
  const named = assetsOf(html);
  const previous = await cache.match(SHELL);
  await Promise.all(named.map((path) => cache.match(path).then((hit) => hit || cache.add(path))));
  await cache.put(SHELL, response);
  if (previous) {
    // A new build: forget the assets only the old shell named.
    const old = assetsOf(await previous.text()).filter((path) => !named.includes(path));
    await Promise.all(old.map((path) => cache.delete(path)));
  }
}

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      await cache.addAll(STATIC).catch(() => undefined);
      const response = await fetch(SHELL, { cache: "no-store" });
      if (response.ok) await cacheShell(response);
      await self.skipWaiting();
    })(),
  );
});

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
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    event.respondWith(
      fetch(request)
        .then((response) => {
          if (response.ok && url.pathname === SHELL) event.waitUntil(cacheShell(response.clone()));
          return response;
        })
        .catch(() => caches.match(SHELL).then((cached) => cached || Response.error())),
    );
    return;
  }
  if (url.pathname.startsWith("/assets/") || STATIC.includes(url.pathname)) {
    event.respondWith(
      caches.match(url.pathname).then(
        (cached) =>
          cached ||
          fetch(request).then((response) => {
            if (response.ok) {
              const copy = response.clone();
              event.waitUntil(caches.open(CACHE).then((cache) => cache.put(url.pathname, copy)));
            }
            return response;
          }),
      ),
    );
  }
  // Everything else (the API, media, /ws): the network, untouched.
});

// A click on a message notification brings the app forward at that chat (notifier.ts listens); on an
// incoming call's, forward to its ringing screen, and its Answer or Decline button acts on the call
// (callNotifier.ts listens). A call whose page is gone can only be answered by opening the app.
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const data = event.notification.data || {};
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      const client = windows.find((c) => new URL(c.url).pathname === SHELL) || windows[0];
      if (client) {
        await client.focus();
        if (data.conversation) client.postMessage({ type: "open-chat", conversation: data.conversation });
        if (data.call) client.postMessage({ type: "call", action: event.action || "open", callId: data.call });
        return;
      }
      await self.clients.openWindow(SHELL);
    })(),
  );
});
