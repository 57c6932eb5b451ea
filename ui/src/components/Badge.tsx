// A colored state badge: green for healthy states, amber for transitions and degraded, red
// for faults and failures, grey for detached and unknown.
import type { ComponentChildren } from 'preact';

export type Tone = 'ok' | 'warn' | 'bad' | 'idle' | 'info';

const TONES: Record<string, Tone> = {
  healthy: 'ok',
  attached: 'ok',
  completed: 'ok',
  succeeded: 'ok',
  ready: 'ok',
  true: 'ok',
  available: 'ok',
  ok: 'ok',
  rw: 'ok',
  degraded: 'warn',
  attaching: 'warn',
  detaching: 'warn',
  creating: 'warn',
  deleting: 'warn',
  pending: 'warn',
  inprogress: 'warn',
  running: 'warn',
  wo: 'warn',
  rebuilding: 'warn',
  denied: 'warn',
  faulted: 'bad',
  error: 'bad',
  err: 'bad',
  failed: 'bad',
  missed: 'bad',
  unavailable: 'bad',
  notready: 'bad',
  false: 'idle',
  detached: 'idle',
  unknown: 'idle',
  skipped: 'idle',
};

/** The tone a state word gets (case and spaces ignored). */
export function toneOf(state: string | null | undefined): Tone {
  if (!state) return 'idle';
  return TONES[state.toLowerCase().replace(/[\s_-]/g, '')] ?? 'info';
}

export function Badge(props: { state?: string | null; tone?: Tone; title?: string; testid?: string; children?: ComponentChildren }) {
  const tone = props.tone ?? toneOf(props.state);
  return (
    <span class={`badge badge-${tone}`} title={props.title} data-testid={props.testid}>
      {props.children ?? props.state ?? '—'}
    </span>
  );
}
