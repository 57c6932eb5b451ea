// Pagination controls: page size (25, 50, 100, All), previous/next, and "1–50 of 1000".

export const PAGE_SIZES = [25, 50, 100, 0] as const; // 0 is "All"

export function Pager(props: {
  total: number;
  page: number;
  pageSize: number;
  onPage: (page: number) => void;
  onPageSize: (size: number) => void;
}) {
  const { total, page, pageSize } = props;
  const pages = pageSize > 0 ? Math.max(1, Math.ceil(total / pageSize)) : 1;
  const first = total === 0 ? 0 : pageSize > 0 ? page * pageSize + 1 : 1;
  const last = pageSize > 0 ? Math.min(total, (page + 1) * pageSize) : total;
  return (
    <div class="pager" data-testid="pager">
      <label class="pager-size">
        Rows
        <select name="pageSize" value={String(pageSize)} onChange={(e) => props.onPageSize(Number((e.target as HTMLSelectElement).value))}>
          {PAGE_SIZES.map((s) => (
            <option value={String(s)}>{s === 0 ? 'All' : s}</option>
          ))}
        </select>
      </label>
      <span class="pager-range" data-testid="pager-range">
        {first}–{last} of {total}
      </span>
      <button
        type="button"
        class="button button-small"
        data-testid="pager-prev"
        disabled={page <= 0}
        onClick={() => props.onPage(page - 1)}
      >
        ‹ Prev
      </button>
      <button
        type="button"
        class="button button-small"
        data-testid="pager-next"
        disabled={page >= pages - 1}
        onClick={() => props.onPage(page + 1)}
      >
        Next ›
      </button>
    </div>
  );
}
