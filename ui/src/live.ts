// Live updates: one EventSource on /v1/events whose `change` events (debounced) tell the
// pages to refetch; when the stream fails, polling every 5 s while it keeps trying to
// reconnect. The mode (live, polling) is shown in the header.
import { useEffect, useRef, useState } from 'preact/hooks';

export type LiveMode = 'off' | 'connecting' | 'live' | 'polling';

const DEBOUNCE_MS = 250;
const POLL_MS = 5000;
const RECONNECT_MIN_MS = 5000;
const RECONNECT_MAX_MS = 30000;

let mode: LiveMode = 'off';
let source: EventSource | null = null;
let pollTimer: ReturnType<typeof setInterval> | null = null;
let reconnectTimer: ReturnType<typeof setTimeout> | null = null;
let debounceTimer: ReturnType<typeof setTimeout> | null = null;
let reconnectDelay = RECONNECT_MIN_MS;
let lastRevision = 0;
let running = false;

const changeListeners = new Set<() => void>();
const modeListeners = new Set<(m: LiveMode) => void>();

function setMode(next: LiveMode): void {
  if (mode === next) return;
  mode = next;
  modeListeners.forEach((l) => l(next));
}

/** Tells every subscriber, at most once per debounce window. */
function notifySoon(): void {
  if (debounceTimer !== null) return;
  debounceTimer = setTimeout(() => {
    debounceTimer = null;
    changeListeners.forEach((l) => l());
  }, DEBOUNCE_MS);
}

function startPolling(): void {
  if (pollTimer !== null) return;
  pollTimer = setInterval(() => {
    if (!document.hidden) notifySoon();
  }, POLL_MS);
}

function stopPolling(): void {
  if (pollTimer !== null) clearInterval(pollTimer);
  pollTimer = null;
}

function connect(): void {
  reconnectTimer = null;
  if (!running) return;
  if (typeof EventSource === 'undefined') {
    setMode('polling');
    startPolling();
    return;
  }
  const es = new EventSource('/v1/events');
  source = es;
  es.onopen = () => {
    if (source !== es) return;
    const wasDown = mode === 'polling';
    reconnectDelay = RECONNECT_MIN_MS;
    stopPolling();
    setMode('live');
    // Whatever changed while the stream was down.
    if (wasDown) notifySoon();
  };
  es.addEventListener('change', (event) => {
    if (source !== es) return;
    try {
      const revision = Number((JSON.parse((event as MessageEvent).data) as { revision?: number }).revision);
      if (Number.isFinite(revision)) {
        if (revision === lastRevision) return;
        lastRevision = revision;
      }
    } catch {
      // A change without a readable revision is still a change.
    }
    notifySoon();
  });
  es.onerror = () => {
    if (source !== es) return;
    // Closed (the endpoint is missing, refused, or the server went away): poll instead, and
    // try the stream again later, backing off.
    es.close();
    source = null;
    setMode('polling');
    startPolling();
    if (running && reconnectTimer === null) {
      reconnectTimer = setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_MS);
    }
  };
}

function onVisible(): void {
  if (!document.hidden && mode === 'polling') notifySoon();
}

/** Starts listening (after sign-in). Idempotent. */
export function startLive(): void {
  if (running) return;
  running = true;
  setMode('connecting');
  document.addEventListener('visibilitychange', onVisible);
  connect();
}

/** Stops listening (at sign-out). */
export function stopLive(): void {
  running = false;
  source?.close();
  source = null;
  stopPolling();
  if (reconnectTimer !== null) clearTimeout(reconnectTimer);
  reconnectTimer = null;
  reconnectDelay = RECONNECT_MIN_MS;
  document.removeEventListener('visibilitychange', onVisible);
  setMode('off');
}

/** Calls `listener` (debounced) whenever the server's state may have changed. */
export function onChange(listener: () => void): () => void {
  changeListeners.add(listener);
  return () => changeListeners.delete(listener);
}

/** Tells every page to refetch now (after an action of this user). */
export function refreshAll(): void {
  notifySoon();
}

/** The current mode, re-rendering on change. */
export function useLiveMode(): LiveMode {
  const [m, setM] = useState<LiveMode>(mode);
  useEffect(() => {
    setM(mode);
    modeListeners.add(setM);
    return () => {
      modeListeners.delete(setM);
    };
  }, []);
  return m;
}

/** Calls the latest `callback` on every (debounced) change while the component is mounted. */
export function useOnChange(callback: () => void): void {
  const ref = useRef(callback);
  ref.current = callback;
  useEffect(() => onChange(() => ref.current()), []);
}
