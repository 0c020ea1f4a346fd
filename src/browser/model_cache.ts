// Model files for the browser: fetched once with download progress, then kept in the Cache API (so a reload, or
// the page offline, reads them from disk). A file is cached under its URL plus its byte size, so a replaced model
// of another size is fetched again; a truncated download is refused rather than cached.

/** The Cache API cache the page's model files live in (the service worker serves from it too). */
export const MODEL_CACHE_NAME = 'flextok-models-v1';

export interface FetchProgress {
  loaded: number;
  total: number;
  fromCache: boolean;
}

/** The bytes of `url` (expected `bytes` long): from the cache, or downloaded (reporting progress) and cached. */
export async function fetchModelBytes(url: string, bytes: number, onProgress: (p: FetchProgress) => void): Promise<Uint8Array> {
  const key = `${url}${url.includes('?') ? '&' : '?'}bytes=${bytes}`;
  const cache = typeof caches !== 'undefined' ? await caches.open(MODEL_CACHE_NAME).catch(() => null) : null;
  const hit = cache ? await cache.match(key) : undefined;
  if (hit) {
    const data = new Uint8Array(await hit.arrayBuffer());
    if (data.length === bytes) {
      onProgress({ loaded: bytes, total: bytes, fromCache: true });
      return data;
    }
    await cache!.delete(key);
  }
  let res: Response;
  try {
    res = await fetch(url);
  } catch (err) {
    throw new Error(`cannot download ${url} (${err instanceof Error ? err.message : String(err)}): the server is unreachable and the file is not cached yet; load the page once while online`);
  }
  if (!res.ok) throw new Error(`cannot download ${url}: HTTP ${res.status}; check that the server offers this model (GET /api/models)`);
  const total = Number(res.headers.get('Content-Length') ?? bytes) || bytes;
  const data = new Uint8Array(total);
  let loaded = 0;
  if (res.body) {
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (loaded + value.length > data.length) throw new Error(`${url}: the download is longer than its ${data.length} announced bytes`);
      data.set(value, loaded);
      loaded += value.length;
      onProgress({ loaded, total, fromCache: false });
    }
  } else {
    const all = new Uint8Array(await res.arrayBuffer());
    data.set(all.subarray(0, data.length));
    loaded = all.length;
  }
  if (loaded !== bytes) throw new Error(`${url}: downloaded ${loaded} bytes, expected ${bytes}; the download was cut short — reload the page`);
  if (cache) await cache.put(key, new Response(data, { headers: { 'Content-Type': 'application/octet-stream' } })).catch(() => {});
  return data;
}
