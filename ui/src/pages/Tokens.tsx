// API tokens (admins): every user's tokens, or only one's own; create one (for oneself or
// another user) with a description and expiry and see its secret once in a copyable box;
// revoke.
import { useMemo, useState } from 'preact/hooks';
import { api, type Schemas } from '../api';
import { ActionButton, DialogButton } from '../components/Action';
import { ErrorBanner } from '../components/ErrorBanner';
import { CheckField, Field, FormDialog, TextField } from '../components/Form';
import { Modal } from '../components/Modal';
import { EmptyRow, TableHead } from '../components/Table';
import { Time } from '../components/Time';
import { useAction, useNow, useResource } from '../hooks';
import { useMe } from '../session';

const EXPIRY: [string, number | null][] = [
  ['never', null],
  ['1 day', 86400],
  ['7 days', 7 * 86400],
  ['30 days', 30 * 86400],
  ['90 days', 90 * 86400],
  ['1 year', 365 * 86400],
];

export function TokensPage() {
  const tokens = useResource(api.tokens, []);
  const me = useMe();
  const now = useNow();
  const [mine, setMine] = useState(false);
  const [creating, setCreating] = useState(false);
  const list = useMemo(
    () =>
      (tokens.data ?? [])
        .filter((t) => !mine || t.user === me?.user)
        .sort((a, b) => a.user.localeCompare(b.user) || b.created.localeCompare(a.created)),
    [tokens.data, mine, me?.user],
  );
  return (
    <section class="page" data-testid="tokens-page">
      <div class="page-head">
        <h1>
          API tokens <span class="muted">{tokens.data ? list.length : ''}</span>
        </h1>
        <DialogButton kind="primary" testid="token-create" onClick={() => setCreating(true)}>
          Create token
        </DialogButton>
      </div>
      <div class="toolbar">
        <CheckField name="mine" checked={mine} onChecked={setMine}>
          Only mine
        </CheckField>
      </div>
      <ErrorBanner error={tokens.error} />
      <div class="table-wrap">
        <table class="table" data-testid="tokens-table">
          <TableHead columns={['ID', 'User', 'Description', 'Created', 'Expires', '']} />
          <tbody>
            {list.length === 0 ? (
              <EmptyRow span={6}>{tokens.loading ? 'Loading…' : 'No tokens.'}</EmptyRow>
            ) : (
              list.map((t) => (
                <tr data-token={t.id}>
                  <td>
                    <code>{t.id}</code>
                  </td>
                  <td>{t.user}</td>
                  <td>{t.description || <span class="muted">—</span>}</td>
                  <td>
                    <Time value={t.created} now={now} />
                  </td>
                  <td>{t.expires ? <Time value={t.expires} now={now} /> : <span class="muted">never</span>}</td>
                  <td class="row-actions">
                    <ActionButton
                      small
                      kind="danger"
                      label="Revoke"
                      what="revoke tokens"
                      testid="token-revoke"
                      confirm={
                        <>
                          Revoke token <code>{t.id}</code> of {t.user}
                          {t.description ? ` (${t.description})` : ''}? Whatever uses it stops working.
                        </>
                      }
                      confirmLabel="Revoke"
                      run={() => api.revokeToken(t.id)}
                    />
                  </td>
                </tr>
              ))
            )}
          </tbody>
        </table>
      </div>
      {creating ? <TokenDialog onClose={() => setCreating(false)} /> : null}
    </section>
  );
}

function TokenDialog({ onClose }: { onClose: () => void }) {
  const me = useMe();
  const users = useResource(api.users, []);
  const [user, setUser] = useState('');
  const [description, setDescription] = useState('');
  const [expiry, setExpiry] = useState('0');
  const [issued, setIssued] = useState<Schemas['IssuedToken'] | null>(null);
  const [copied, setCopied] = useState(false);
  const action = useAction('create tokens');

  const submit = async (e: Event) => {
    e.preventDefault();
    const body: Schemas['CreateToken'] = { description: description.trim() };
    const seconds = EXPIRY[Number(expiry)]?.[1];
    if (seconds) body.expiresInSeconds = seconds;
    if (user && user !== me?.user) body.user = user;
    const t = await action.run(() => api.createToken(body));
    if (t) setIssued(t);
  };

  if (issued) {
    return (
      <Modal title="Token created" onClose={onClose} testid="token-dialog">
        <p>
          Copy the token now: it is shown this once. Use it as <code>Authorization: Bearer …</code> or in <code>IRONHORN_TOKEN</code>.
        </p>
        <div class="secret-box">
          <input
            readOnly
            class="secret-value"
            data-testid="token-secret"
            value={issued.token}
            onFocus={(e) => (e.target as HTMLInputElement).select()}
          />
          <button
            type="button"
            class="button"
            data-testid="token-copy"
            onClick={() => {
              void navigator.clipboard?.writeText(issued.token).then(() => setCopied(true));
            }}
          >
            {copied ? 'Copied' : 'Copy'}
          </button>
        </div>
        <p class="small muted">
          ID <code>{issued.id}</code> for {issued.user}
          {issued.expires ? `, expires ${issued.expires}` : ', does not expire'}.
        </p>
        <div class="form-actions">
          <button type="button" class="button button-primary" onClick={onClose} data-testid="token-done">
            Done
          </button>
        </div>
      </Modal>
    );
  }

  return (
    <FormDialog
      title="Create API token"
      testid="token-dialog"
      onClose={onClose}
      onSubmit={submit}
      error={action.error}
      busy={action.busy}
      submitLabel="Create token"
    >
      <Field label="User">
        <select name="user" value={user || me?.user || ''} onChange={(e) => setUser((e.target as HTMLSelectElement).value)}>
          {me ? <option value={me.user}>{me.user} (you)</option> : null}
          {(users.data ?? [])
            .filter((u) => u.name !== me?.user)
            .map((u) => (
              <option value={u.name}>
                {u.name} ({u.role})
              </option>
            ))}
        </select>
      </Field>
      <TextField label="Description" name="description" placeholder="what uses it" value={description} onValue={setDescription} />
      <Field label="Expires">
        <select name="expiry" value={expiry} onChange={(e) => setExpiry((e.target as HTMLSelectElement).value)}>
          {EXPIRY.map(([label], i) => (
            <option value={String(i)}>{label === 'never' ? 'never (until revoked)' : `in ${label}`}</option>
          ))}
        </select>
      </Field>
    </FormDialog>
  );
}
