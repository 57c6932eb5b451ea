// An error as the API said it, in role="alert" so it is announced (and found by tests).
import { describeError } from '../api';

export function ErrorBanner(props: { error: unknown; action?: string; compact?: boolean; onDismiss?: () => void }) {
  if (props.error === null || props.error === undefined || props.error === '') return null;
  const text = typeof props.error === 'string' ? props.error : describeError(props.error, props.action);
  return (
    <div class={props.compact ? 'alert alert-compact' : 'alert'} role="alert">
      <span class="alert-text">{text}</span>
      {props.onDismiss ? (
        <button type="button" class="alert-close" aria-label="Dismiss" onClick={props.onDismiss}>
          ×
        </button>
      ) : null}
    </div>
  );
}
