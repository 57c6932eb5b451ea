// The API client: one fetch wrapper (same-origin cookie, X-CSRF-Token on every change, the
// API's {code, message} errors as ApiError, 401 sends the app back to sign-in) and one typed
// function per endpoint the UI calls, with the types generated from api/openapi.json.
import type { components } from './generated/api';

export type Schemas = components['schemas'];
export type Volume = Schemas['Volume'];
export type VolumeReplica = Schemas['VolumeReplicaStatus'];
export type Node = Schemas['Node'];
export type Condition = Schemas['Condition'];
export type Snapshot = Schemas['SnapshotInfo'];
export type Backup = Schemas['Backup'];
export type BackupVolume = Schemas['BackupVolume'];
export type BackupTarget = Schemas['BackupTarget'];
export type RecurringJob = Schemas['RecurringJob'];
export type RecurringJobSpec = Schemas['RecurringJobSpec'];
export type RecurringRun = Schemas['RecurringRun'];
export type Setting = Schemas['SettingView'];
export type Orphan = Schemas['Orphan'];
export type User = Schemas['User'];
export type Token = Schemas['TokenView'];
export type AuditEntry = Schemas['AuditEntry'];
export type Me = Schemas['Me'];
export type Role = Schemas['Role'];
export type ErrorCode = Schemas['ErrorCode'];

/** An error answer of the API (or a failure to reach it, with status 0). */
export class ApiError extends Error {
  readonly status: number;
  readonly code: ErrorCode | string;

  constructor(status: number, code: ErrorCode | string, message: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

let csrfToken = '';
let onUnauthorized: (() => void) | null = null;

/** The session's CSRF token (from the login answer or /v1/me), sent on every change. */
export function setCsrfToken(token: string | undefined): void {
  csrfToken = token ?? '';
}

/** What to do when any call answers 401 (the session ended): show the sign-in page. */
export function setUnauthorizedHandler(handler: (() => void) | null): void {
  onUnauthorized = handler;
}

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

interface RequestOptions {
  /** Do not treat 401 as "the session ended" (sign-in and the first /v1/me). */
  quiet401?: boolean;
}

async function request<T>(method: Method, path: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, 'unavailable', `The server could not be reached (${e instanceof Error ? e.message : String(e)}).`);
  }
  if (response.ok) {
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }
  let code: string = 'unknown';
  let message = `${response.status} ${response.statusText}`.trim();
  try {
    const parsed = (await response.json()) as Partial<Schemas['ErrorBody']>;
    if (parsed && typeof parsed.message === 'string') message = parsed.message;
    if (parsed && typeof parsed.code === 'string') code = parsed.code;
  } catch {
    // Not the API's error shape (a proxy's page): keep the status line.
  }
  const error = new ApiError(response.status, code, message);
  if (response.status === 401 && !options.quiet401) onUnauthorized?.();
  return Promise.reject(error);
}

const enc = encodeURIComponent;

function query(params: Record<string, string | number | undefined | null>): string {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${enc(k)}=${enc(String(v))}`);
  return parts.length ? `?${parts.join('&')}` : '';
}

type List<T> = { data: T[] };
const data = <T>(p: Promise<List<T>>): Promise<T[]> => p.then((l) => l.data ?? []);

export const api = {
  // Sessions and users.
  login: (body: Schemas['Login']) => request<Me>('POST', '/v1/login', body, { quiet401: true }),
  logout: () => request<void>('POST', '/v1/logout', undefined, { quiet401: true }),
  me: () => request<Me>('GET', '/v1/me', undefined, { quiet401: true }),
  users: () => data(request<List<User>>('GET', '/v1/users')),
  createUser: (body: Schemas['CreateUser']) => request<User>('POST', '/v1/users', body),
  deleteUser: (name: string) => request<void>('DELETE', `/v1/users/${enc(name)}`),
  tokens: () => data(request<List<Token>>('GET', '/v1/tokens')),
  createToken: (body: Schemas['CreateToken']) => request<Schemas['IssuedToken']>('POST', '/v1/tokens', body),
  revokeToken: (id: string) => request<void>('DELETE', `/v1/tokens/${enc(id)}`),
  audit: (limit: number) => data(request<List<AuditEntry>>('GET', `/v1/audit${query({ limit })}`)),

  // Volumes.
  volumes: () => data(request<List<Volume>>('GET', '/v1/volumes')),
  volume: (name: string) => request<Volume>('GET', `/v1/volumes/${enc(name)}`),
  createVolume: (body: Schemas['CreateVolume']) => request<Volume>('POST', '/v1/volumes', body),
  deleteVolume: (name: string) => request<Volume>('DELETE', `/v1/volumes/${enc(name)}`),
  attach: (name: string, body: Schemas['AttachRequest']) => request<Volume>('POST', `/v1/volumes/${enc(name)}/attach`, body),
  detach: (name: string, body: Schemas['DetachRequest']) => request<Volume>('POST', `/v1/volumes/${enc(name)}/detach`, body),
  expand: (name: string, body: Schemas['ExpandRequest']) => request<Volume>('POST', `/v1/volumes/${enc(name)}/expand`, body),
  activate: (name: string) => request<Volume>('POST', `/v1/volumes/${enc(name)}/activate`),
  trim: (name: string) => request<Schemas['TrimResult']>('POST', `/v1/volumes/${enc(name)}/trim`),
  salvage: (name: string, body: Schemas['SalvageRequest']) => request<Volume>('POST', `/v1/volumes/${enc(name)}/salvage`, body),
  labels: (name: string, body: Schemas['VolumeLabels']) => request<Volume>('POST', `/v1/volumes/${enc(name)}/labels`, body),
  purge: (name: string) => request<void>('POST', `/v1/volumes/${enc(name)}/purge`),
  volumeRuns: (name: string) => data(request<List<RecurringRun>>('GET', `/v1/volumes/${enc(name)}/recurringjobruns`)),

  // Snapshots and backups of a volume.
  snapshots: (volume: string) => data(request<List<Snapshot>>('GET', `/v1/volumes/${enc(volume)}/snapshots`)),
  createSnapshot: (volume: string, body: Schemas['CreateSnapshot']) =>
    request<Snapshot>('POST', `/v1/volumes/${enc(volume)}/snapshots`, body),
  deleteSnapshot: (volume: string, snapshot: string) => request<void>('DELETE', `/v1/volumes/${enc(volume)}/snapshots/${enc(snapshot)}`),
  revertSnapshot: (volume: string, snapshot: string) =>
    request<void>('POST', `/v1/volumes/${enc(volume)}/snapshots/${enc(snapshot)}/revert`),
  createBackup: (volume: string, body: Schemas['CreateBackup']) => request<Backup>('POST', `/v1/volumes/${enc(volume)}/backups`, body),

  // Backup targets, backup volumes, backups.
  backupTargets: () => data(request<List<BackupTarget>>('GET', '/v1/backuptargets')),
  putBackupTarget: (name: string, body: Schemas['BackupTargetSpec']) =>
    request<BackupTarget>('PUT', `/v1/backuptargets/${enc(name)}`, body),
  deleteBackupTarget: (name: string) => request<void>('DELETE', `/v1/backuptargets/${enc(name)}`),
  backupVolumes: (backupTarget?: string) => data(request<List<BackupVolume>>('GET', `/v1/backupvolumes${query({ backupTarget })}`)),
  deleteBackupVolume: (volume: string, backupTarget?: string) =>
    request<void>('DELETE', `/v1/backupvolumes/${enc(volume)}${query({ backupTarget })}`),
  /** Every backup of a backup volume, following `continue` (at most `max`). */
  backups: async (volume: string, backupTarget?: string, max = 5000): Promise<Backup[]> => {
    const out: Backup[] = [];
    let next: string | undefined;
    do {
      const page = await request<Schemas['Page_Backup']>(
        'GET',
        `/v1/backupvolumes/${enc(volume)}/backups${query({ backupTarget, limit: 500, continue: next })}`,
      );
      out.push(...(page.data ?? []));
      next = page.continue ?? undefined;
    } while (next && out.length < max);
    return out;
  },
  deleteBackup: (volume: string, backup: string, backupTarget?: string) =>
    request<void>('DELETE', `/v1/backupvolumes/${enc(volume)}/backups/${enc(backup)}${query({ backupTarget })}`),

  // Nodes and disks.
  nodes: () => data(request<List<Node>>('GET', '/v1/nodes')),
  patchNode: (name: string, body: Schemas['NodeUpdate']) => request<Node>('PATCH', `/v1/nodes/${enc(name)}`, body),
  deleteNode: (name: string) => request<void>('DELETE', `/v1/nodes/${enc(name)}`),
  addDisk: (node: string, body: Schemas['AddDisk']) => request<Node>('POST', `/v1/nodes/${enc(node)}/disks`, body),
  patchDisk: (node: string, disk: string, body: Schemas['DiskUpdate']) =>
    request<Node>('PATCH', `/v1/nodes/${enc(node)}/disks/${enc(disk)}`, body),
  deleteDisk: (node: string, disk: string) => request<Node>('DELETE', `/v1/nodes/${enc(node)}/disks/${enc(disk)}`),

  // Recurring jobs.
  recurringJobs: () => data(request<List<RecurringJob>>('GET', '/v1/recurringjobs')),
  createRecurringJob: (body: RecurringJobSpec) => request<RecurringJob>('POST', '/v1/recurringjobs', body),
  putRecurringJob: (name: string, body: RecurringJobSpec) => request<RecurringJob>('PUT', `/v1/recurringjobs/${enc(name)}`, body),
  deleteRecurringJob: (name: string) => request<void>('DELETE', `/v1/recurringjobs/${enc(name)}`),
  runRecurringJob: (name: string) => request<RecurringJob>('POST', `/v1/recurringjobs/${enc(name)}/run`),
  recurringJobRuns: (name: string) => data(request<List<RecurringRun>>('GET', `/v1/recurringjobs/${enc(name)}/runs`)),

  // Orphans, settings, secrets.
  orphans: () => data(request<List<Orphan>>('GET', '/v1/orphans')),
  deleteOrphan: (name: string) => request<void>('DELETE', `/v1/orphans/${enc(name)}`),
  settings: () => data(request<List<Setting>>('GET', '/v1/settings')),
  putSetting: (name: string, value: string) => request<Setting>('PUT', `/v1/settings/${enc(name)}`, { value }),
  secrets: () => data(request<List<Schemas['SecretView']>>('GET', '/v1/secrets')),
  putSecret: (name: string, body: Schemas['SecretData']) => request<Schemas['SecretView']>('PUT', `/v1/secrets/${enc(name)}`, body),
  deleteSecret: (name: string) => request<void>('DELETE', `/v1/secrets/${enc(name)}`),
};

/**
 * An error as one line for a person: the API's message verbatim, and for 403 what was
 * refused first ("You are not allowed to delete this volume: ...").
 */
export function describeError(error: unknown, action?: string): string {
  if (error instanceof ApiError) {
    if (error.status === 403) {
      return `You are not allowed to ${action ?? 'do this'}: ${error.message}`;
    }
    return error.message;
  }
  if (error instanceof Error) return error.message;
  return String(error);
}

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

/** Whether a user of `role` may make changes that need `need`. */
export function can(role: Role | undefined | null, need: 'operator' | 'admin'): boolean {
  if (!role) return false;
  return (RANK[role] ?? -1) >= RANK[need];
}

/** The labels that make a volume run a recurring job or a job group (Longhorn's). */
export const JOB_LABEL_PREFIX = 'recurring-job.longhorn.io/';
export const GROUP_LABEL_PREFIX = 'recurring-job-group.longhorn.io/';
