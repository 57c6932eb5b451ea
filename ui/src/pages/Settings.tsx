// Settings, by category: each one's name, description, default and current value; admins
// edit a value (input, select or checkbox by its kind) and save it one setting at a time.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, type Setting } from '../api';
import { ErrorBanner } from '../components/ErrorBanner';
import { SearchBox } from '../components/Form';
import { useAction, useResource } from '../hooks';
import { useCan } from '../session';

export function SettingsPage() {
  const settings = useResource(api.settings, []);
  const isAdmin = useCan('admin');
  const [search, setSearch] = useState('');
  const groups = useMemo(() => {
    const needle = search.trim().toLowerCase();
    const m = new Map<string, Setting[]>();
    for (const s of settings.data ?? []) {
      const d = s.definition;
      if (needle && !`${s.name} ${d.displayName} ${d.description}`.toLowerCase().includes(needle)) continue;
      const c = d.category || 'general';
      if (!m.has(c)) m.set(c, []);
      m.get(c)!.push(s);
    }
    for (const list of m.values()) list.sort((a, b) => a.name.localeCompare(b.name));
    return [...m.entries()].sort(([a], [b]) => a.localeCompare(b));
  }, [settings.data, search]);

  return (
    <section class="page" data-testid="settings-page">
      <div class="page-head">
        <h1>Settings</h1>
        <SearchBox placeholder="Search settings" label="Search settings" value={search} onValue={setSearch} />
      </div>
      {!isAdmin ? <p class="muted">Settings are changed by admins.</p> : null}
      <ErrorBanner error={settings.error} />
      {settings.loading && !settings.data ? <p class="muted">Loading…</p> : null}
      {groups.map(([category, list]) => (
        <div class="card" data-category={category}>
          <h2 class="capitalize">{category}</h2>
          <div class="settings">
            {list.map((s) => (
              <SettingRow key={s.name} setting={s} editable={isAdmin} />
            ))}
          </div>
        </div>
      ))}
    </section>
  );
}

function SettingRow({ setting, editable }: { setting: Setting; editable: boolean }) {
  const d = setting.definition;
  const [value, setValue] = useState(setting.value);
  const [dirty, setDirty] = useState(false);
  const action = useAction('change settings');
  // A value changed elsewhere shows, unless this row is being edited.
  useEffect(() => {
    if (!dirty) setValue(setting.value);
  }, [setting.value, dirty]);

  const save = async (e: Event) => {
    e.preventDefault();
    const ok = await action.run(() => api.putSetting(setting.name, value));
    if (ok) setDirty(false);
  };
  const change = (v: string) => {
    setValue(v);
    setDirty(v !== setting.value);
  };
  const isDefault = setting.value === d.default;

  let input;
  if (d.type === 'bool') {
    input = (
      <label class="check">
        <input
          type="checkbox"
          name={setting.name}
          data-mutates=""
          checked={value === 'true'}
          onChange={(e) => change((e.target as HTMLInputElement).checked ? 'true' : 'false')}
        />{' '}
        {value === 'true' ? 'true' : 'false'}
      </label>
    );
  } else if (d.type === 'choice') {
    input = (
      <select name={setting.name} data-mutates="" value={value} onChange={(e) => change((e.target as HTMLSelectElement).value)}>
        {d.options.includes(value) ? null : <option value={value}>{value}</option>}
        {d.options.map((o) => (
          <option value={o}>{o}</option>
        ))}
      </select>
    );
  } else if (d.type === 'int') {
    input = (
      <input
        type="number"
        name={setting.name}
        data-mutates=""
        min={d.minimum}
        max={d.maximum ?? undefined}
        value={value}
        onInput={(e) => change((e.target as HTMLInputElement).value)}
      />
    );
  } else {
    input = (
      <input
        name={setting.name}
        data-mutates=""
        required={d.type === 'string' && d.required}
        placeholder={d.type === 'backuptarget' ? 's3://bucket@region/path' : undefined}
        value={value}
        onInput={(e) => change((e.target as HTMLInputElement).value)}
      />
    );
  }

  return (
    <div class="setting" data-setting={setting.name}>
      <div class="setting-info">
        <div class="setting-title">
          <strong>{d.displayName || setting.name}</strong> <code class="muted small">{setting.name}</code>
          {isDefault ? null : <span class="tag">changed</span>}
        </div>
        <p class="setting-desc">{d.description}</p>
        <div class="small muted">
          Default: <code>{d.default === '' ? '(empty)' : d.default}</code>
          {d.type === 'int' ? ` · ${d.minimum}${d.maximum !== null && d.maximum !== undefined ? `–${d.maximum}` : '+'}` : null}
        </div>
      </div>
      <div class="setting-value">
        {editable ? (
          <form class="inline-form" onSubmit={save} data-mutates="">
            {input}
            <button
              type="submit"
              class="button button-small button-primary"
              data-testid="setting-save"
              data-mutates=""
              disabled={!dirty || action.busy}
            >
              {action.busy ? <span class="spinner" aria-hidden="true" /> : null}
              Save
            </button>
            {dirty ? (
              <button type="button" class="button button-small" onClick={() => change(setting.value)}>
                Reset
              </button>
            ) : null}
          </form>
        ) : (
          <code class="setting-current" data-testid="setting-value">
            {setting.value === '' ? '(empty)' : setting.value}
          </code>
        )}
        <ErrorBanner error={action.error} compact />
      </div>
    </div>
  );
}
