// Form building blocks the dialogs and pages share: a labelled field (with its hint), a text
// input, the labels textarea, a checkbox, a search box, the Cancel + submit row with its busy
// spinner (the submit button is data-testid "submit"), a dialog that is one such form, and
// reading a field that may not parse.
import type { ComponentChildren, InputHTMLAttributes } from 'preact';
import { ErrorBanner } from './ErrorBanner';
import { Modal } from './Modal';

/** What a name may be (Kubernetes-style: lowercase letters, digits, dots, dashes; at most 63). */
export const NAME_PATTERN = '[a-z0-9]([a-z0-9.\\-]{0,61}[a-z0-9])?';

/** `parse()`'s result, or undefined once `setInvalid` has been given why it failed. */
export function tryParse<T>(parse: () => T, setInvalid: (message: string) => void): T | undefined {
  try {
    return parse();
  } catch (err) {
    setInvalid(err instanceof Error ? err.message : String(err));
    return undefined;
  }
}

type InputProps = Omit<InputHTMLAttributes<HTMLInputElement>, 'value' | 'onInput' | 'label'>;

/** A label with its caption above whatever field it holds and an optional hint below. */
export function Field(props: { label: ComponentChildren; hint?: ComponentChildren; wide?: boolean; children: ComponentChildren }) {
  return (
    <label class={props.wide ? 'field field-wide' : 'field'}>
      <span>{props.label}</span>
      {props.children}
      {props.hint ? <small class="hint">{props.hint}</small> : null}
    </label>
  );
}

/** A Field holding one input bound to a string; other props go to the input. */
export function TextField(
  props: { label: ComponentChildren; hint?: ComponentChildren; wide?: boolean; value: string; onValue: (v: string) => void } & InputProps,
) {
  const { label, hint, wide, value, onValue, ...input } = props;
  return (
    <Field label={label} hint={hint} wide={wide}>
      <input {...input} value={value} onInput={(e) => onValue((e.target as HTMLInputElement).value)} />
    </Field>
  );
}

/** The "key=value, one a line" textarea that parseLabels reads. */
export function LabelsField(props: { label: string; wide?: boolean; value: string; onValue: (v: string) => void }) {
  return (
    <Field label={props.label} wide={props.wide}>
      <textarea
        name="labels"
        rows={2}
        placeholder="key=value, one a line"
        value={props.value}
        onInput={(e) => props.onValue((e.target as HTMLTextAreaElement).value)}
      />
    </Field>
  );
}

/** A checkbox with its text after it. */
export function CheckField(props: { name: string; checked: boolean; onChecked: (on: boolean) => void; children: ComponentChildren }) {
  return (
    <label class="check">
      <input
        type="checkbox"
        name={props.name}
        checked={props.checked}
        onChange={(e) => props.onChecked((e.target as HTMLInputElement).checked)}
      />{' '}
      {props.children}
    </label>
  );
}

/** A search box (a filter of what the page lists); other props go to the input. */
export function SearchBox(props: { placeholder: string; label: string; value: string; onValue: (v: string) => void } & InputProps) {
  const { placeholder, label, value, onValue, ...input } = props;
  return (
    <input
      type="search"
      class="search"
      {...input}
      placeholder={placeholder}
      aria-label={label}
      value={value}
      onInput={(e) => onValue((e.target as HTMLInputElement).value)}
    />
  );
}

/** Cancel and the form's submit button, disabled, aria-busy and with a spinner while busy. */
export function FormActions(props: { label: ComponentChildren; busy: boolean; onCancel: () => void }) {
  return (
    <div class="form-actions">
      <button type="button" class="button" onClick={props.onCancel}>
        Cancel
      </button>
      <button
        type="submit"
        class="button button-primary"
        data-testid="submit"
        data-mutates=""
        disabled={props.busy}
        aria-busy={props.busy ? 'true' : undefined}
      >
        {props.busy ? <span class="spinner" aria-hidden="true" /> : null}
        {props.label}
      </button>
    </div>
  );
}

/** A dialog that is one form: its fields, then the error (if any), then Cancel and submit. */
export function FormDialog(props: {
  title: string;
  testid: string;
  wide?: boolean;
  onClose: () => void;
  onSubmit: (e: Event) => void;
  error: unknown;
  busy: boolean;
  submitLabel: ComponentChildren;
  children: ComponentChildren;
}) {
  return (
    <Modal title={props.title} onClose={props.onClose} wide={props.wide} testid={props.testid}>
      <form class="form" onSubmit={props.onSubmit} data-mutates="">
        {props.children}
        <ErrorBanner error={props.error} />
        <FormActions label={props.submitLabel} busy={props.busy} onCancel={props.onClose} />
      </form>
    </Modal>
  );
}
