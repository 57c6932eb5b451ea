// Pure derivations from the API's resources that more than one page needs: cluster
// capacity from nodes' disks, replica counts, recent condition changes, job labels.
import { GROUP_LABEL_PREFIX, JOB_LABEL_PREFIX, type Node, type RecurringJob, type Condition, type Volume, type VolumeReplica } from './api';
import { parseTime } from './format';

export interface Capacity {
  maximum: number;
  available: number;
  scheduled: number;
  reserved: number;
  used: number;
  disks: number;
}

/**
 * Capacity of every disk of `nodes`: maximum and available counted once per filesystem
 * (disks sharing a diskUuid), scheduled and reserved per disk. Used is maximum − available.
 */
export function capacityOf(nodes: readonly Node[]): Capacity {
  const seen = new Set<string>();
  const c: Capacity = { maximum: 0, available: 0, scheduled: 0, reserved: 0, used: 0, disks: 0 };
  for (const node of nodes) {
    const statuses = node.status?.disks ?? {};
    for (const [name, spec] of Object.entries(node.spec.disks ?? {})) {
      c.disks++;
      c.reserved += spec.storageReserved ?? 0;
      const st = statuses[name];
      if (!st) continue;
      c.scheduled += st.storageScheduled ?? 0;
      const fs = st.diskUuid ? `${node.name}/${st.diskUuid}` : `${node.name}/${name}`;
      if (seen.has(fs)) continue;
      seen.add(fs);
      c.maximum += st.storageMaximum ?? 0;
      c.available += st.storageAvailable ?? 0;
    }
  }
  c.used = Math.max(0, c.maximum - c.available);
  return c;
}

/** Healthy replicas and the wanted count: "2/3". */
export function replicaCounts(v: Volume): { healthy: number; desired: number; total: number } {
  const replicas = v.status?.replicas ?? [];
  let healthy = 0;
  for (const r of replicas) if (r.healthy) healthy++;
  return { healthy, desired: v.spec.numberOfReplicas, total: replicas.length };
}

/** When the volume was made (empty for volumes made before the server recorded it). */
export function volumeCreated(v: Volume): string | undefined {
  return v.created || undefined;
}

/** A replica's rebuild progress (0..100) while it is being rebuilt, else undefined. */
export function rebuildProgress(r: VolumeReplica): number | undefined {
  return r.rebuildProgress ?? undefined;
}

/** Whether a replica is being rebuilt: write-only (WO) while attached. */
export function isRebuilding(r: VolumeReplica): boolean {
  return r.mode === 'WO' || (rebuildProgress(r) ?? 100) < 100;
}

export interface ConditionEvent {
  kind: 'volume' | 'node' | 'disk' | 'job';
  name: string;
  href: string;
  condition: Condition;
  at: number | null;
  notable: boolean;
}

/** Whether a condition's type names a problem (`RecurringJobFailed`): then True is bad. */
function negative(type: string): boolean {
  return /(Failed|Failure|Error|Pressure|Required|Unavailable)$/.test(type);
}

/** Whether a condition is in its good state (Ready True, RecurringJobFailed False). */
export function conditionOk(c: Condition): boolean {
  return negative(c.type) ? c.status !== 'True' : c.status === 'True';
}

/** A condition worth a look: one in its bad state, or one that says why. */
function notable(c: Condition): boolean {
  return !conditionOk(c) || (!negative(c.type) && (!!c.reason || !!c.message));
}

/**
 * Conditions of volumes, nodes and their disks, newest change first (those without a
 * transition time after them, notable ones first), at most `limit`.
 */
export function recentConditions(volumes: readonly Volume[], nodes: readonly Node[], limit = 20): ConditionEvent[] {
  const out: ConditionEvent[] = [];
  const add = (kind: ConditionEvent['kind'], name: string, href: string, c: Condition) => {
    out.push({ kind, name, href, condition: c, at: parseTime(c.lastTransitionTime)?.getTime() ?? null, notable: notable(c) });
  };
  for (const v of volumes) {
    for (const c of v.status?.conditions ?? []) add('volume', v.name, `#/volumes/${encodeURIComponent(v.name)}`, c);
  }
  for (const n of nodes) {
    for (const c of n.status?.conditions ?? []) add('node', n.name, '#/nodes', c);
    for (const [disk, st] of Object.entries(n.status?.disks ?? {})) {
      for (const c of st.conditions ?? []) add('disk', `${n.name}/${disk}`, '#/nodes', c);
    }
  }
  out.sort((a, b) => {
    if (a.at !== null && b.at !== null) return b.at - a.at;
    if (a.at !== null) return -1;
    if (b.at !== null) return 1;
    if (a.notable !== b.notable) return a.notable ? -1 : 1;
    return 0;
  });
  return out.slice(0, limit);
}

/** The job's failure condition when it holds. */
export function jobFailure(job: RecurringJob): Condition | undefined {
  return (job.status?.conditions ?? []).find((c) => c.type === 'RecurringJobFailed' && c.status === 'True');
}

/** The jobs and groups a volume's labels select. */
export function volumeJobs(v: Volume): { jobs: string[]; groups: string[] } {
  const jobs: string[] = [];
  const groups: string[] = [];
  for (const [k, value] of Object.entries(v.spec.labels ?? {})) {
    if (value !== 'enabled') continue;
    if (k.startsWith(JOB_LABEL_PREFIX)) jobs.push(k.slice(JOB_LABEL_PREFIX.length));
    else if (k.startsWith(GROUP_LABEL_PREFIX)) groups.push(k.slice(GROUP_LABEL_PREFIX.length));
  }
  return { jobs, groups };
}

/** Nodes that are ready, first the schedulable ones, by name. */
export function readyNodes(nodes: readonly Node[]): Node[] {
  return nodes
    .filter((n) => n.status?.ready)
    .sort((a, b) => Number(b.spec.allowScheduling) - Number(a.spec.allowScheduling) || a.name.localeCompare(b.name));
}

/** Every job group named by any job, sorted. */
export function jobGroups(jobs: readonly RecurringJob[]): string[] {
  const s = new Set<string>();
  for (const j of jobs) for (const g of j.groups ?? []) s.add(g);
  return [...s].sort();
}
