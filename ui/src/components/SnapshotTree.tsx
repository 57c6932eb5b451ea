// A volume's snapshots as an indented tree, newest first: the live chain from the volume
// head down to the oldest snapshot at the left, and each branch (what a revert left behind)
// indented under the snapshot it forked from. Per-snapshot actions come from the page.
import type { ComponentChildren } from 'preact';
import type { Snapshot } from '../api';
import { formatBytes } from '../format';
import { Time } from './Time';

export interface TreeLine {
  snap: Snapshot;
  depth: number;
  head: boolean;
}

const isHead = (s: Snapshot) => s.name === 'volume-head';

/** The snapshots in display order, each with its depth. Pure. */
export function layoutSnapshots(snapshots: readonly Snapshot[]): TreeLine[] {
  const byName = new Map<string, Snapshot>();
  for (const s of snapshots) byName.set(s.name, s);
  const children = new Map<string, string[]>();
  for (const s of snapshots) {
    const kids = (s.children ?? []).filter((c) => byName.has(c));
    // Children listed by parent only (some servers list one side): merge both.
    children.set(s.name, kids);
  }
  for (const s of snapshots) {
    if (s.parent && byName.has(s.parent)) {
      const kids = children.get(s.parent)!;
      if (!kids.includes(s.name)) kids.push(s.name);
    }
  }
  // Nodes that lead to the head (the live chain).
  const onChain = new Set<string>();
  const head = snapshots.find(isHead);
  for (let n: Snapshot | undefined = head; n && !onChain.has(n.name); n = n.parent ? byName.get(n.parent) : undefined) {
    onChain.add(n.name);
  }
  const created = (name: string) => Date.parse(byName.get(name)?.created ?? '') || 0;
  const out: TreeLine[] = [];
  const placed = new Set<string>();

  // A subtree rooted at `root`: its main line (towards the head, else the newest child)
  // deepest first at `depth`, each other child's subtree one level in, below its fork.
  const subtree = (root: string, depth: number) => {
    const line: string[] = [];
    for (let n: string | undefined = root; n !== undefined && !placed.has(n) && !line.includes(n);) {
      line.push(n);
      const kids: string[] = children.get(n) ?? [];
      const next: string | undefined = kids.find((k) => onChain.has(k)) ?? [...kids].sort((a, b) => created(b) - created(a))[0];
      n = next;
    }
    line.forEach((n) => placed.add(n));
    for (let i = line.length - 1; i >= 0; i--) {
      const name = line[i];
      const snap = byName.get(name)!;
      out.push({ snap, depth, head: isHead(snap) });
      const next = line[i + 1];
      for (const k of children.get(name) ?? []) {
        if (k !== next && !placed.has(k)) subtree(k, depth + 1);
      }
    }
  };

  const roots = snapshots
    .filter((s) => !s.parent || !byName.has(s.parent))
    .sort((a, b) => Number(onChain.has(b.name)) - Number(onChain.has(a.name)) || created(a.name) - created(b.name));
  for (const r of roots) subtree(r.name, 0);
  // Anything in a cycle (should not happen) still shows.
  for (const s of snapshots) if (!placed.has(s.name)) out.push({ snap: s, depth: 0, head: isHead(s) });
  return out;
}

export function SnapshotTree(props: { snapshots: readonly Snapshot[]; now: number; actions?: (line: TreeLine) => ComponentChildren }) {
  const lines = layoutSnapshots(props.snapshots);
  if (lines.length === 0) return <p class="muted">No snapshots.</p>;
  return (
    <ul class="snap-tree" data-testid="snapshot-tree">
      {lines.map((l) => (
        <li
          class={`snap${l.head ? ' snap-head' : ''}${l.snap.removed ? ' snap-removed' : ''}`}
          data-snapshot={l.snap.name}
          data-depth={String(l.depth)}
        >
          <span class={`snap-indent snap-indent-${Math.min(l.depth, 8)}`} aria-hidden="true" />
          <span class="snap-dot" aria-hidden="true" />
          <span class="snap-name">
            {l.head ? <strong>Volume head</strong> : l.snap.name}
            {l.snap.removed ? <span class="tag tag-muted">removed</span> : null}
            {!l.head && !l.snap.userCreated ? (
              <span class="tag tag-muted" title="Made by the system (a backup, rebuild or job)">
                system
              </span>
            ) : null}
            {Object.entries(l.snap.labels ?? {}).map(([k, v]) => (
              <span class="tag" title={`${k}=${v}`}>
                {k}={v}
              </span>
            ))}
          </span>
          <span class="snap-meta">
            <span class="num">{formatBytes(l.snap.size)}</span>
            {l.head ? null : <Time value={l.snap.created} now={props.now} />}
          </span>
          <span class="snap-actions">{props.actions ? props.actions(l) : null}</span>
        </li>
      ))}
    </ul>
  );
}
