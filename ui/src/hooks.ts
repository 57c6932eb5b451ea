// Data hooks shared by the pages: useResource (fetch, refetch on live changes without
// flashing, drop stale answers) and useAction (busy state and the API's error for one action).
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { describeError } from './api';
import { refreshAll, useOnChange } from './live';

const texts = new WeakMap<object, string>();

function textOf(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? '';
  let t = texts.get(value);
  if (t === undefined) {
    t = JSON.stringify(value);
    texts.set(value, t);
  }
  return t;
}

/**
 * `next`, reusing `prev` (or, for lists, each unchanged item of it) where nothing changed,
 * so a refetch that brings the same data renders nothing, and memoized rows of unchanged
 * items skip their work.
 */
export function share<T>(prev: T | undefined, next: T): T {
  if (prev === undefined || prev === null || next === null || typeof next !== 'object') return next;
  if (textOf(prev) === textOf(next)) return prev;
  if (Array.isArray(prev) && Array.isArray(next)) {
    return next.map((item, i) => (i < prev.length && textOf(prev[i]) === textOf(item) ? prev[i] : item)) as T;
  }
  return next;
}

export interface Resource<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => void;
}

/**
 * Loads `load()` when `deps` change, and again on every live change. A refetch keeps the
 * data shown; only the first load of a key shows as loading. Answers to an older key are
 * dropped; one refetch at a time (a change during one queues one more).
 */
export function useResource<T>(load: () => Promise<T>, deps: unknown[]): Resource<T> {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({
    loading: true,
  });
  const loader = useRef(load);
  loader.current = load;
  const generation = useRef(0);
  const inFlight = useRef(false);
  const again = useRef(false);

  const run = useCallback((fresh: boolean) => {
    if (!fresh && inFlight.current) {
      again.current = true;
      return;
    }
    const mine = fresh ? ++generation.current : generation.current;
    inFlight.current = true;
    again.current = false;
    loader
      .current()
      .then(
        (data) => {
          if (mine !== generation.current) return;
          setState((s) => {
            const shared = fresh ? data : share(s.data, data);
            if (shared === s.data && !s.error && !s.loading) return s;
            return { data: shared, error: undefined, loading: false };
          });
        },
        (error: unknown) => {
          if (mine !== generation.current) return;
          setState((s) => ({ data: fresh ? undefined : s.data, error, loading: false }));
        },
      )
      .finally(() => {
        if (mine !== generation.current) return;
        inFlight.current = false;
        if (again.current) run(false);
      });
  }, []);

  useEffect(() => {
    setState({ loading: true });
    run(true);
    return () => {
      // Nothing of this key may land after it changed or the page went.
      generation.current++;
      inFlight.current = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);

  useOnChange(() => run(false));
  const reload = useCallback(() => run(false), [run]);
  return { data: state.data, error: state.error, loading: state.loading, reload };
}

export interface Action {
  busy: boolean;
  error: string | null;
  /** Runs `fn`, showing busy and then the error; resolves to its result or undefined. */
  run: <R>(fn: () => Promise<R>) => Promise<R | undefined>;
  clear: () => void;
}

/** One action's busy state and error. `what` completes "You are not allowed to …". */
export function useAction(what: string): Action {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const run = useCallback(
    async <R>(fn: () => Promise<R>): Promise<R | undefined> => {
      setBusy(true);
      setError(null);
      try {
        const result = await fn();
        refreshAll();
        return result;
      } catch (e) {
        setError(describeError(e, what));
        return undefined;
      } finally {
        setBusy(false);
      }
    },
    [what],
  );
  const clear = useCallback(() => setError(null), []);
  return { busy, error, run, clear };
}

/** The current time, ticking every `ms` (for relative times that stay right). */
export function useNow(ms = 30000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}
