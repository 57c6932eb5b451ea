// A tiny hash router: `#/volumes/v1?x=y` as a path split into segments and a query, a hook
// that re-renders on hashchange, and navigate/href helpers.
import { useEffect, useState } from 'preact/hooks';

export interface Route {
  /** `/volumes/v1` (decoded segments joined back). */
  path: string;
  segments: string[];
  query: URLSearchParams;
}

export function parseHash(hash: string): Route {
  const raw = hash.replace(/^#/, '') || '/';
  const q = raw.indexOf('?');
  const pathPart = q >= 0 ? raw.slice(0, q) : raw;
  const query = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : '');
  const segments = pathPart
    .split('/')
    .filter(Boolean)
    .map((s) => {
      try {
        return decodeURIComponent(s);
      } catch {
        return s;
      }
    });
  return { path: '/' + segments.join('/'), segments, query };
}

/** The link for a path made of segments: href('volumes', 'v1') is `#/volumes/v1`. */
export function href(...segments: string[]): string {
  return '#/' + segments.map(encodeURIComponent).join('/');
}

export function navigate(to: string): void {
  const target = to.startsWith('#') ? to : '#' + to;
  if (location.hash === target) return;
  location.hash = target;
}

/** The current route, re-rendering on every hash change. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseHash(location.hash));
  useEffect(() => {
    const onHash = () => setRoute(parseHash(location.hash));
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);
  return route;
}
