"""The customer's copy of a receipt as one self-contained, printable HTML page.

Written with the standard library's ``html.escape`` on every value: the page is one small
fixed layout, and the project has no template engine (``/ui`` is a static file that reads the
API), so Jinja2 would be a dependency for ~40 lines. The QR code is drawn by ``segno`` as an
SVG data URI inside an ``<img>``: the page needs nothing else, and prints as drawn.
"""

from __future__ import annotations

from html import escape

import segno

from kkt_adapter.domain.money import format_money
from kkt_adapter.domain.receipt_copy import ReceiptCopy

QR_SCALE = 4
"""Pixels per QR module: a 2026 receipt's QR string (~70 characters) makes a 37-module code,
~150 px on screen, and 4 px modules decode reliably from a screenshot."""

STYLE = """
body { font-family: "DejaVu Sans Mono", monospace; max-width: 32em; margin: 1em auto; }
h1 { font-size: 1.1em; text-align: center; margin: 0.3em 0; }
.emulator { border: 3px solid #b00; color: #b00; font-weight: bold; text-align: center;
  padding: 0.3em; margin-bottom: 0.5em; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 0.1em 0.2em; vertical-align: top; }
td.n { text-align: right; white-space: nowrap; }
tr.total td { font-weight: bold; border-top: 1px dashed #000; }
.qr { text-align: center; margin-top: 0.8em; }
.qr img { image-rendering: pixelated; }
@media print {
  body { max-width: none; margin: 0; font-size: 10pt; }
  .noprint { display: none; }
  .emulator { border-width: 2px; }
}
"""


def receipt_page(receipt_id: str, copy: ReceiptCopy, qr: str, *, emulator: bool) -> str:
    """The HTML copy of receipt ``receipt_id``; ``qr`` is the receipt's QR string."""
    banner = (
        '<div class="emulator" data-testid="emulator">EMULATOR: not a real cash register;'
        " this document is not fiscal</div>"
        if emulator
        else ""
    )
    lines = "".join(
        f'<tr data-testid="line"><td>{escape(line.name)}</td>'
        f'<td class="n">{escape(line.quantity)}</td>'
        f'<td class="n">{format_money(line.price)}</td>'
        f'<td class="n">{format_money(line.amount)}</td><td>{escape(line.vat)}</td></tr>'
        for line in copy.lines
    )
    payments = "".join(
        f'<tr data-testid="payment"><td>{escape(title)}</td>'
        f'<td class="n">{format_money(amount)}</td></tr>'
        for title, amount in copy.payments
    )
    attributes = [
        ("ФН", "fn", copy.fn),
        ("ФД", "fd", str(copy.fd)),
        ("ФП", "fp", copy.fp),
        ("Смена", "shift", str(copy.shift)),
        ("Чек в смене", "number-in-shift", str(copy.number_in_shift)),
        ("Дата и время", "datetime", copy.datetime),
    ]
    if copy.registration_number is not None:
        attributes.append(("РН ККТ", "registration-number", copy.registration_number))
    if copy.cashier is not None:
        attributes.append(("Кассир", "cashier", copy.cashier))
    fiscal = "".join(
        f'<tr><th>{label}</th><td data-testid="{testid}">{escape(value)}</td></tr>'
        for label, testid, value in attributes
    )
    image = segno.make(qr, error="m").svg_data_uri(scale=QR_SCALE, border=4)
    return (
        '<!DOCTYPE html><html lang="ru"><head><meta charset="utf-8">'
        f"<title>Кассовый чек {escape(receipt_id)}</title><style>{STYLE}</style></head><body>"
        f'{banner}<h1 data-testid="title">Кассовый чек · {escape(copy.title)}</h1>'
        "<table><thead><tr><th>Наименование</th><th>Кол-во</th><th>Цена</th><th>Сумма</th>"
        f'<th>НДС</th></tr></thead><tbody data-testid="lines">{lines}</tbody></table>'
        f'<table><tbody><tr class="total"><td>ИТОГО</td><td class="n" data-testid="total">'
        f"{format_money(copy.total)}</td></tr>{payments}</tbody></table>"
        f'<table data-testid="fiscal"><tbody>{fiscal}</tbody></table>'
        f'<div class="qr"><img data-testid="qr" alt="QR code" src="{escape(image)}"'
        f' title="{escape(qr)}"></div>'
        f'<p class="noprint"><small data-testid="receipt-id">{escape(receipt_id)}</small></p>'
        "</body></html>"
    )
