"""Small HTML pieces the dashboard's sections share: escaped tables, figure cards, and
seconds and USD as the page shows them."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from routing.cost import format_usd


def table(header: Sequence[str], rows: Sequence[Sequence[str]], table_id: str = "") -> str:
    ident = f' id="{escape(table_id)}"' if table_id else ""
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    if not rows:
        body = f'<tr><td colspan="{len(header)}" class="empty">none yet</td></tr>'
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def usd(value: float | None) -> str:
    return format_usd(value) if value is not None else "-"


def figures(cells: Sequence[tuple[str, str]]) -> str:
    """Label and value cards."""
    items = "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in cells)
    return f'<dl class="figures">{items}</dl>'
