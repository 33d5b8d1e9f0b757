"""Monthly spending as text, markdown (the Dagster UI) and a self-contained HTML page.

The HTML page fetches nothing: its style is inline and its chart (spending by category over the
months, one stacked bar per month and currency) is an inline SVG drawn here, each bar segment
carrying its figures as `data-` attributes so the page can be checked in a browser. The chart
gives each of its largest categories its own colour from Tableau 10 (a qualitative palette made
so that no two of its colours are confused); smaller categories share one grey "other" segment.
A month with no ledger rows is drawn as "no data", never as a 0.00 bar, and a month not wholly
imported is marked "partial".
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable
from decimal import Decimal

import pandas as pd

CENT = Decimal("0.01")
TOTAL = "all categories"
HEADERS = ["Account", "Category", "Currency", "Income", "Spending", "Net", "Δ spending", "Δ net", "Txns"]
# Tableau 10 without its grey, which is kept for "other": nine colours no two of which look alike.
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"]
OTHER, OTHER_COLOUR = "other categories", "#bab0ac"


def money(value) -> str:
    return f"{Decimal(value).quantize(CENT):,.2f}"


def change(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    return f"{Decimal(value).quantize(CENT):+,.2f}"


def _account_label(row) -> str:
    name = row.get("display_name") or ""
    key = row.get("account_key") or str(row.get("account_id"))
    return f"{name} ({key})" if name else key


def display_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows to show, per account and currency: categories by spending (largest first), then a total."""
    out: list[dict] = []
    if frame.empty:
        return out
    records = frame.to_dict("records")
    groups: dict[tuple, list[dict]] = {}
    for row in records:
        groups.setdefault((_account_label(row), row["currency"]), []).append(row)
    for (label, currency), rows in sorted(groups.items()):
        rows.sort(key=lambda r: (-r["spending"], -r["income"], r["category"]))
        for row in rows:
            out.append({**row, "account": label, "total": False})
        changes = [r.get("spending_change") for r in rows]
        unknown = any(c is None for c in changes)
        out.append({
            "account": label,
            "account_id": rows[0]["account_id"],
            "category": TOTAL,
            "currency": currency,
            "income": sum((r["income"] for r in rows), Decimal(0)),
            "spending": sum((r["spending"] for r in rows), Decimal(0)),
            "net": sum((r["net"] for r in rows), Decimal(0)),
            "transactions": sum(int(r["transactions"]) for r in rows),
            "spending_change": None if unknown else sum((r["spending_change"] for r in rows), Decimal(0)),
            "net_change": None if unknown else sum((r["net_change"] for r in rows), Decimal(0)),
            "total": True,
        })
    return out


def _cells(row: dict) -> list[str]:
    return [row["account"], row["category"], row["currency"], money(row["income"]), money(row["spending"]),
            money(row["net"]), change(row.get("spending_change")), change(row.get("net_change")),
            str(int(row["transactions"]))]


def text_table(frame: pd.DataFrame) -> str:
    """A fixed-width table for the terminal."""
    rows = [_cells(r) for r in display_rows(frame)]
    if not rows:
        return "(no rows)"
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
    numeric = set(range(3, len(HEADERS)))

    def line(cells):
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(HEADERS), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def markdown_table(frame: pd.DataFrame, title: str | None = None) -> str:
    """A markdown table (Dagster renders it in the materialization's metadata)."""
    head = f"**{title}**\n\n" if title else ""
    rows = display_rows(frame)
    if not rows:
        return head + "No transactions (own-account transfers excluded)."

    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    out = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(HEADERS) - 3)) + "|"]
    for row in rows:
        cells = [esc(c) for c in _cells(row)]
        if row["total"]:
            cells = [f"**{c}**" if c else c for c in cells]
        out.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(out)


def chart_series(history: pd.DataFrame) -> dict[str, dict[str, dict[str, Decimal]]]:
    """{currency: {category: {YYYY-MM: spending}}} summed over accounts (categories with spending)."""
    series: dict[str, dict[str, dict[str, Decimal]]] = {}
    for row in history.to_dict("records"):
        if row["spending"] == 0:
            continue
        per_month = series.setdefault(row["currency"], {}).setdefault(row["category"], {})
        key = f"{row['month']:%Y-%m}"
        per_month[key] = per_month.get(key, Decimal(0)) + row["spending"]
    return series


def grouped_series(series: dict[str, dict[str, Decimal]]) -> tuple[dict[str, dict[str, Decimal]], list[str]]:
    """The largest categories as they are and the rest summed as `OTHER` (when more than the
    palette holds); also the names folded into `OTHER`."""
    order = sorted(series, key=lambda c: (-sum(series[c].values()), c))
    if len(order) <= len(PALETTE):
        return dict(series), []
    keep, rest = order[: len(PALETTE) - 1], order[len(PALETTE) - 1:]
    out = {c: series[c] for c in keep}
    other: dict[str, Decimal] = {}
    for category in rest:
        for month, value in series[category].items():
            other[month] = other.get(month, Decimal(0)) + value
    out[OTHER] = other
    return out, rest


def svg_chart(
    currency: str,
    series: dict[str, dict[str, Decimal]],
    months: list[dt.date],
    with_data: set[str] | None = None,
    partial: set[str] | frozenset = frozenset(),
) -> str:
    """One stacked bar per month; a segment per category, its height proportional to its spending.
    A month not in `with_data` (YYYY-MM with ledger rows) says "no data" instead of a bar; a month
    in `partial` is marked so."""
    labels = [f"{m:%Y-%m}" for m in months]
    with_data = set(labels) if with_data is None else with_data
    series, folded = grouped_series(series)
    totals = {m: sum((per.get(m, Decimal(0)) for per in series.values()), Decimal(0)) for m in labels}
    top = max(totals.values(), default=Decimal(0)) or Decimal(1)
    order = sorted((c for c in series if c != OTHER), key=lambda c: (-sum(series[c].values()), c))
    colour = {c: PALETTE[i] for i, c in enumerate(order)}
    if OTHER in series:
        order.append(OTHER)
        colour[OTHER] = OTHER_COLOUR
    plot_h, bar_w, gap, left, top_pad = 240, 48, 24, 80, 20
    width = left + len(labels) * (bar_w + gap) + gap
    height = top_pad + plot_h + 40
    base = top_pad + plot_h
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-currency="{html.escape(currency)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Spending by category per month ({html.escape(currency)})">',
        f'<line x1="{left}" y1="{base}" x2="{width - gap / 2}" y2="{base}" stroke="#333"/>',
        f'<text x="{left - 8}" y="{top_pad + 4}" text-anchor="end" class="axis">{money(top)}</text>',
        f'<text x="{left - 8}" y="{base}" text-anchor="end" class="axis">0</text>',
    ]
    for i, label in enumerate(labels):
        x = left + gap + i * (bar_w + gap)
        y = float(base)
        for category in order:
            value = series[category].get(label)
            if not value:
                continue
            h = float(value / top) * plot_h
            y -= h
            title = category if category != OTHER else f"{OTHER} ({', '.join(folded)})"
            parts.append(
                f'<rect class="segment" x="{x}" y="{y:.3f}" width="{bar_w}" height="{h:.3f}" '
                f'fill="{colour[category]}" data-month="{label}" data-category="{html.escape(category)}" '
                f'data-spending="{value.quantize(CENT)}"><title>{html.escape(title)} {label}: '
                f'{money(value)} {html.escape(currency)}</title></rect>'
            )
        mark = " (partial)" if label in partial else ""
        parts.append(f'<text x="{x + bar_w / 2}" y="{base + 18}" text-anchor="middle" class="axis">{label}</text>')
        if mark:
            parts.append(f'<text x="{x + bar_w / 2}" y="{base + 32}" text-anchor="middle" class="axis partial" '
                         f'data-month="{label}">partial</text>')
        if label not in with_data:
            parts.append(f'<text x="{x + bar_w / 2}" y="{base - 6}" text-anchor="middle" class="no-data" '
                         f'data-month="{label}">no data</text>')
        else:
            parts.append(
                f'<text x="{x + bar_w / 2}" y="{max(y - 4, 10):.3f}" text-anchor="middle" class="bar-total" '
                f'data-month="{label}">{money(totals[label])}</text>'
            )
    parts.append("</svg>")
    names = {c: c for c in order} | ({OTHER: f"{OTHER}: " + ", ".join(folded)} if folded else {})
    legend = "".join(
        f'<li data-colour="{colour[c]}"><span class="swatch" style="background:{colour[c]}"></span>'
        f"{html.escape(names[c])}</li>"
        for c in order
    )
    return "\n".join(parts) + f'\n<ul class="legend">{legend}</ul>'


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: bold; border-bottom: 2px solid #999; }
.axis, .bar-total { font-size: 11px; fill: #444; }
.no-data { font-size: 11px; fill: #999; font-style: italic; }
.partial { fill: #b05a00; }
.asof { color: #555; }
.legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 12px; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: middle; }
"""


def html_page(
    month: dt.date,
    frame: pd.DataFrame,
    history: pd.DataFrame,
    months: Iterable[dt.date],
    *,
    asof: dt.datetime | None = None,
    partial: Iterable[dt.date] = (),
) -> str:
    """The whole page: a chart per currency of `history` over `months`, then `month`'s table;
    `asof`, the instant the figures were computed from the ledger; `partial`, the months not
    wholly imported."""
    months = sorted(months)
    partial_labels = {f"{m:%Y-%m}" for m in partial}
    with_data = {f"{m:%Y-%m}" for m in history["month"]} if not history.empty else set()
    title = f"Monthly spending {month:%Y-%m}"
    numeric = {"Income", "Spending", "Net", "Δ spending", "Δ net", "Txns"}
    head = "".join(f'<th{" class=num" if h in numeric else ""}>{html.escape(h)}</th>' for h in HEADERS)
    body = []
    for row in display_rows(frame):
        cells = _cells(row)
        tds = "".join(
            f'<td{" class=num" if HEADERS[i] in numeric else ""}>{html.escape(c)}</td>' for i, c in enumerate(cells)
        )
        body.append(
            f'<tr class="{"total" if row["total"] else "row"}" data-account-id="{row["account_id"]}" '
            f'data-category="{html.escape(row["category"])}" data-currency="{html.escape(row["currency"])}">{tds}</tr>'
        )
    series = chart_series(history)
    charts = "\n".join(
        f"<h2>Spending by category, {html.escape(cur)}, {months[0]:%Y-%m} to {months[-1]:%Y-%m}</h2>\n"
        + svg_chart(cur, series[cur], months, with_data, partial_labels)
        for cur in sorted(series)
    ) or "<p>No spending in these months.</p>"
    table = (
        f'<table id="monthly-spending" data-month="{month:%Y-%m}"><thead><tr>{head}</tr></thead>'
        f'<tbody>{"".join(body)}</tbody></table>'
        if body else "<p>No transactions this month.</p>"
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        "<p>Income and spending per account and category; own-account transfers (card repayments too) "
        "are excluded. Δ: change against the previous month, left out (–) where that month is not wholly "
        "imported.</p>\n"
        + (f'<p class="asof" data-asof="{asof.isoformat()}">Figures as of {asof:%Y-%m-%d %H:%M:%S %Z}, '
           "computed from the ledger when this page was written.</p>\n" if asof else "")
        + (f'<p class="partial-months">Not wholly imported: {", ".join(sorted(partial_labels))}.</p>\n'
           if partial_labels else "")
        + f"{charts}\n<h2>{month:%Y-%m} by account and category</h2>\n{table}\n</body></html>\n"
    )
