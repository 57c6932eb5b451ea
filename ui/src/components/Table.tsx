// A dense data table: columns with render functions, sortable headers, an empty message,
// and one delegated click handler for whole-row links (no per-row handlers or effects);
// TableHead and EmptyRow (the empty message's row) serve the pages' hand-written tables too.
import { Component, type ComponentChildren, type JSX } from 'preact';

export interface Column<T> {
  key: string;
  label: ComponentChildren;
  render: (row: T) => ComponentChildren;
  sortable?: boolean;
  /** Class of the header and cells (`num` right-aligns). */
  class?: string;
  title?: string;
}

export interface Sort {
  key: string;
  dir: 'asc' | 'desc';
}

export function Table<T>(props: {
  columns: Column<T>[];
  rows: readonly T[];
  rowKey: (row: T) => string;
  /** Extra attributes of each row (`data-volume`). */
  rowAttrs?: (row: T) => Record<string, string | undefined>;
  /** Clicking a row (outside its links, buttons and fields) calls this with its key. */
  onRowClick?: (key: string) => void;
  sort?: Sort;
  onSort?: (sort: Sort) => void;
  empty?: ComponentChildren;
  testid?: string;
  class?: string;
}) {
  const { columns, rows, sort, onSort, onRowClick } = props;

  const onClick = onRowClick
    ? (e: JSX.TargetedMouseEvent<HTMLTableSectionElement>) => {
        const target = e.target as HTMLElement;
        if (target.closest('a, button, input, select, textarea, label, .modal-backdrop')) return;
        const tr = target.closest('tr');
        const key = tr?.getAttribute('data-key');
        if (key !== null && key !== undefined) onRowClick(key);
      }
    : undefined;

  return (
    <div class="table-wrap">
      <table class={`table${onRowClick ? ' table-clickable' : ''}${props.class ? ' ' + props.class : ''}`} data-testid={props.testid}>
        <thead>
          <tr>
            {columns.map((c) => {
              const active = sort?.key === c.key;
              if (!c.sortable || !onSort) {
                return (
                  <th class={c.class} title={c.title} scope="col">
                    {c.label}
                  </th>
                );
              }
              const next: Sort = { key: c.key, dir: active && sort?.dir === 'asc' ? 'desc' : 'asc' };
              return (
                <th
                  class={`${c.class ?? ''} sortable`}
                  title={c.title}
                  scope="col"
                  aria-sort={active ? (sort?.dir === 'asc' ? 'ascending' : 'descending') : 'none'}
                >
                  <button type="button" class="sort-button" data-sort={c.key} onClick={() => onSort(next)}>
                    {c.label}
                    <span class="sort-mark">{active ? (sort?.dir === 'asc' ? '▲' : '▼') : ''}</span>
                  </button>
                </th>
              );
            })}
          </tr>
        </thead>
        <tbody onClick={onClick}>
          {rows.length === 0 ? (
            <EmptyRow span={columns.length}>{props.empty ?? 'Nothing here.'}</EmptyRow>
          ) : (
            rows.map((row) => {
              const key = props.rowKey(row);
              return <Row key={key} rowKey={key} row={row} columns={columns} attrs={props.rowAttrs} />;
            })
          )}
        </tbody>
      </table>
    </div>
  );
}

/** A column heading: its label, or a label with the class (`num` right-aligns) and title of its cell. */
export type Heading = string | { label: string; class?: string; title?: string };

/** The head of a hand-written table; '' heads an unlabelled column (row actions), null leaves one out. */
export function TableHead(props: { columns: (Heading | null)[] }) {
  return (
    <thead>
      <tr>
        {props.columns.map((c) =>
          c === null ? null : typeof c === 'string' ? (
            <th>{c || null}</th>
          ) : (
            <th class={c.class} title={c.title}>
              {c.label}
            </th>
          ),
        )}
      </tr>
    </thead>
  );
}

/** The one row of a table with nothing to list (or nothing loaded yet), across `span` columns. */
export function EmptyRow(props: { span: number; children: ComponentChildren }) {
  return (
    <tr class="empty-row">
      <td colSpan={props.span}>{props.children}</td>
    </tr>
  );
}

interface RowProps<T> {
  rowKey: string;
  row: T;
  columns: Column<T>[];
  attrs?: (row: T) => Record<string, string | undefined>;
}

/** A row renders again only when its item or the columns changed (refetches share items). */
class Row<T> extends Component<RowProps<T>> {
  shouldComponentUpdate(next: RowProps<T>): boolean {
    return next.row !== this.props.row || next.columns !== this.props.columns || next.rowKey !== this.props.rowKey;
  }

  render() {
    const { rowKey, row, columns, attrs } = this.props;
    return (
      <tr data-key={rowKey} {...(attrs ? attrs(row) : {})}>
        {columns.map((c) => (
          <td class={c.class}>{c.render(row)}</td>
        ))}
      </tr>
    );
  }
}
