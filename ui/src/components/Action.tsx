// Buttons that change something: ActionButton runs an API call with a busy state and shows
// the API's error; with `confirm` it asks first in a dialog whose button is data-testid
// "confirm". DialogButton opens the page's dialog for a change. All carry data-mutates (pages
// render them only for roles that may act).
import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { useAction } from '../hooks';
import { ErrorBanner } from './ErrorBanner';
import { Modal } from './Modal';

type Kind = 'primary' | 'danger' | 'default';

function buttonClass(kind?: Kind, small?: boolean): string {
  return `button${kind && kind !== 'default' ? ' button-' + kind : ''}${small ? ' button-small' : ''}`;
}

/** A button that opens a dialog (or a form) for a change: no busy state of its own. */
export function DialogButton(props: { testid: string; onClick: () => void; kind?: Kind; small?: boolean; children: ComponentChildren }) {
  return (
    <button type="button" class={buttonClass(props.kind, props.small)} data-testid={props.testid} data-mutates="" onClick={props.onClick}>
      {props.children}
    </button>
  );
}

export function ActionButton(props: {
  label: ComponentChildren;
  /** Completes "You are not allowed to …" on a 403. */
  what: string;
  run: () => Promise<unknown>;
  onDone?: (result: unknown) => void;
  testid?: string;
  kind?: Kind;
  small?: boolean;
  disabled?: boolean;
  title?: string;
  /** Ask first: the question shown in the confirm dialog. */
  confirm?: ComponentChildren;
  confirmLabel?: string;
}) {
  const action = useAction(props.what);
  const [asking, setAsking] = useState(false);
  const cls = buttonClass(props.kind, props.small);

  const go = async () => {
    let ok = false;
    const result = await action.run(async () => {
      const r = await props.run();
      ok = true;
      return r;
    });
    if (ok) {
      setAsking(false);
      props.onDone?.(result);
    }
  };

  return (
    <span class="action">
      <button
        type="button"
        class={cls}
        data-mutates=""
        data-testid={props.testid}
        disabled={props.disabled || action.busy}
        aria-busy={action.busy ? 'true' : undefined}
        title={props.title}
        onClick={() => (props.confirm ? setAsking(true) : void go())}
      >
        {action.busy && !asking ? <span class="spinner" aria-hidden="true" /> : null}
        {props.label}
      </button>
      {action.error && !asking ? <ErrorBanner error={action.error} compact onDismiss={action.clear} /> : null}
      {asking ? (
        <Modal title="Please confirm" onClose={() => (action.busy ? undefined : setAsking(false))}>
          <div class="confirm-text">{props.confirm}</div>
          <ErrorBanner error={action.error} />
          <div class="form-actions">
            <button type="button" class="button" onClick={() => setAsking(false)} disabled={action.busy}>
              Cancel
            </button>
            <button
              type="button"
              class={`button ${props.kind === 'danger' ? 'button-danger' : 'button-primary'}`}
              data-testid="confirm"
              data-mutates=""
              data-autofocus=""
              disabled={action.busy}
              aria-busy={action.busy ? 'true' : undefined}
              onClick={() => void go()}
            >
              {action.busy ? <span class="spinner" aria-hidden="true" /> : null}
              {props.confirmLabel ?? 'Confirm'}
            </button>
          </div>
        </Modal>
      ) : null}
    </span>
  );
}
