// The page's service worker: keeps the page, its scripts, the wasm kernels, the model list and the example images
// in a cache so that the page works offline after one visit (the model weights themselves are cached by the
// engine worker, src/browser/model_cache.ts, in the 'flextok-models-v1' cache). Same-origin GET requests go to the
// network first and fall back to the cache; the computations of the API (POST) are never cached.
const SHELL_CACHE = 'flextok-shell-v2';
const SHELL = ['./', 'index.html', 'app.js', 'engine.js', 'flextok_kernels.wasm', 'flextok_kernels_mt.wasm', 'flextok_kernels_relaxed.wasm',
  'flextok_kernels_mt_relaxed.wasm', '/api/models', '/api/examples'];

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(SHELL_CACHE);
    await cache.addAll(SHELL);
    // the example images the page offers
    const res = await cache.match('/api/examples');
    const { examples } = res ? await res.json() : { examples: [] };
    await cache.addAll(examples.map((e) => e.url));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    // an older version's shell (its file list differed) goes
    for (const name of await caches.keys()) if (name.startsWith('flextok-shell-') && name !== SHELL_CACHE) await caches.delete(name);
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== 'GET' || url.origin !== self.location.origin) return;
  const cacheable = !url.pathname.startsWith('/api/') || url.pathname === '/api/models' || url.pathname === '/api/examples';
  if (!cacheable || url.pathname.startsWith('/models/')) return; // model files: the engine's own cache
  event.respondWith((async () => {
    const cache = await caches.open(SHELL_CACHE);
    try {
      const res = await fetch(req);
      if (res.ok) await cache.put(req, res.clone());
      return res;
    } catch (err) {
      const hit = await cache.match(req, { ignoreSearch: true });
      if (hit) return hit;
      throw err;
    }
  })());
});
