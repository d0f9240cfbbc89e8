"""The reconcile report as one self-contained HTML page.

Inline CSS and a few lines of inline JavaScript; nothing is fetched (no URLs,
fonts or scripts from elsewhere), so the file can be mailed, archived or opened
from a CI artifact as it is. The fleet grid has one row per host and one cell
per area, coloured by status and marked with a sign so that it is not read by
colour alone; clicking a cell opens that host's drill-down. Every string from
the report is escaped.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from urllib.parse import quote

from tfenv.reconcile.report import (
    AREAS,
    EXIT_BAD_INPUT,
    EXIT_CLEAN,
    EXIT_DRIFT,
    EXIT_UNCHECKED,
    STATUSES,
    HostResult,
    Item,
    Report,
)

EXIT_MEANINGS = {
    EXIT_CLEAN: "clean: every host checked, no drift",
    EXIT_UNCHECKED: "some host was not checked",
    EXIT_DRIFT: "drift: every host checked, some drifted",
    EXIT_BAD_INPUT: "bad input",
}

# The sign in each grid cell, so that a status is not told by colour alone.
MARKS = {
    "clean": "✓",
    "rollout-in-progress": "→",
    "drift": "~",
    "needs-a-person": "!",
    "unreachable": "✗",
}

LABELS = {
    "clean": "clean",
    "rollout-in-progress": "rollout in progress (not drift)",
    "drift": "drift (--apply fixes it)",
    "needs-a-person": "needs a person",
    "unreachable": "not checked",
}

ACTIONS = {
    "apply": "--apply fixes it",
    "person": "needs a person",
    "rollout": "rollout in progress",
}

CSS = """
:root { --clean: #cdebd3; --drift: #ffe08a; --person: #f7a8a0; --unreachable: #c8c8d0;
        --rollout: #c9def7; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 1.5em; color: #1d1d1f; background: #fff; }
h1 { font-size: 1.5em; margin: 0 0 .3em; }
h2 { font-size: 1.2em; margin: 1.5em 0 .5em; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
              font-size: 0.92em; }
dl.run { display: grid; grid-template-columns: max-content auto; gap: .15em 1em; margin: 0; }
dl.run dt { font-weight: 600; }
dl.run dd { margin: 0; }
.exit { display: inline-block; padding: .3em .7em; border-radius: 4px; font-weight: 600;
        margin: .5em 0; }
.exit-0 { background: var(--clean); }
.exit-1 { background: var(--unreachable); }
.exit-2 { background: var(--drift); }
.exit-3 { background: var(--person); }
ul.totals { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: .6em; }
ul.totals li { border: 1px solid #ccc; border-radius: 4px; padding: .4em .8em; min-width: 7em; }
ul.totals .n { display: block; font-size: 1.6em; font-weight: 700; }
.legend span { display: inline-block; margin-right: 1em; }
.legend i { display: inline-block; width: 1.6em; text-align: center; font-style: normal;
            border: 1px solid #999; border-radius: 3px; margin-right: .3em; }
table { border-collapse: collapse; }
table.grid th, table.grid td { border: 1px solid #bbb; padding: .25em .45em; }
table.grid thead th { font-weight: 600; background: #f3f3f5; }
table.grid th.area { writing-mode: vertical-rl; transform: rotate(180deg);
                     white-space: nowrap; padding: .5em .25em; }
table.grid th.host { text-align: left; font-weight: 600; }
td.cell { text-align: center; cursor: pointer; min-width: 2.2em; font-weight: 700; }
td.cell:hover, td.cell:focus { outline: 2px solid #1d1d1f; outline-offset: -2px; }
.cell-clean, .st-clean { background: var(--clean); }
.cell-drift, .st-drift { background: var(--drift); }
.cell-rollout-in-progress, .st-rollout-in-progress { background: var(--rollout); }
.cell-needs-a-person, .st-needs-a-person { background: var(--person); }
.cell-unreachable, .st-unreachable { background: var(--unreachable); }
.badge { display: inline-block; padding: 0 .5em; border-radius: 3px; border: 1px solid #999; }
details.host { border: 1px solid #ccc; border-radius: 4px; margin: .4em 0; padding: .3em .7em; }
details.host > summary { cursor: pointer; font-weight: 600; }
details.host[open] > summary { margin-bottom: .5em; }
.error { color: #8b1a10; white-space: pre-wrap; }
table.items th, table.items td { border: 1px solid #ccc; padding: .25em .45em;
                                 text-align: left; vertical-align: top; }
table.items th { background: #f3f3f5; }
table.items td { word-break: break-word; max-width: 32em; white-space: pre-wrap; }
tr.item-person td.action { font-weight: 700; }
tr.focus td { box-shadow: inset 0 0 0 9999px rgba(255, 200, 0, .25); }
.muted { color: #666; }
"""

SCRIPT = """
(function () {
  function openHost(host, area) {
    var d = document.getElementById("host-" + host);
    if (!d) { return; }
    d.open = true;
    document.querySelectorAll("tr.item.focus").forEach(function (r) {
      r.classList.remove("focus");
    });
    if (area) {
      d.querySelectorAll("tr.item").forEach(function (r) {
        if (r.getAttribute("data-area") === area) { r.classList.add("focus"); }
      });
    }
    d.scrollIntoView({block: "start"});
  }
  document.querySelectorAll("td.cell").forEach(function (c) {
    var go = function () { openHost(c.getAttribute("data-host"), c.getAttribute("data-area")); };
    c.addEventListener("click", go);
    c.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(); }
    });
  });
  function fromHash() {
    var h = decodeURIComponent(location.hash.slice(1));
    if (h.indexOf("host-") === 0) { openHost(h.slice(5), null); }
  }
  window.addEventListener("hashchange", fromHash);
  fromHash();
})();
"""


def render_html(report: Report, history_since: dict[str, str] | None = None) -> str:
    """The page for ``report``. ``history_since`` maps a host to when its drift
    history begins (ISO 8601 UTC): shown in its drill-down, and an item first seen
    then reads "at least" its age (it may have drifted before the history began)."""
    history_since = history_since or {}
    hosts = sorted(report.hosts.values(), key=lambda h: h.name)
    code = report.exit_code
    title = f"tfenv reconcile: {report.inventory}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        f'<h1>tfenv reconcile: <span class="inventory">{_e(report.inventory)}</span></h1>',
        f'<p class="exit exit-{code}" id="exit-code">Exit code {code}: '
        f"{_e(EXIT_MEANINGS.get(code, 'unknown'))}</p>",
        _run_facts(report),
        "</header>",
        _totals(report),
        _grid(hosts),
        '<section id="hosts">',
        "<h2>Hosts</h2>",
        *(_host_details(h, report, history_since.get(h.name)) for h in hosts),
        "</section>",
        f"<script>{SCRIPT}</script>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _run_facts(report: Report) -> str:
    facts = [
        ("Started", report.started),
        ("Finished", report.finished or "(not finished)"),
        ("Duration", format_duration(report.duration_s)),
        ("Mode", "check and apply (--apply)" if report.apply else "check only"),
        ("Deep", "yes" if report.deep else "no"),
    ]
    if report.shard:
        facts.append(("Shard", report.shard))
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    return f'<dl class="run">{rows}</dl>'


def _totals(report: Report) -> str:
    totals = report.totals
    names = [
        ("hosts", "hosts"),
        ("checked", "checked"),
        ("clean", "clean"),
        ("drift", "drift"),
        ("needs_a_person", "need a person"),
        ("unreachable", "unreachable"),
        ("rollout_in_progress", "rollout in progress"),
        ("items", "drift items"),
    ]
    items = "".join(
        f'<li id="total-{key}"><span class="n">{totals[key]}</span>{_e(label)}</li>'
        for key, label in names
    )
    return f'<section id="totals"><h2>Totals</h2><ul class="totals">{items}</ul></section>'


def _grid(hosts: list[HostResult]) -> str:
    legend = "".join(
        f'<span><i class="cell-{s}">{MARKS[s]}</i>{_e(LABELS[s])}</span>'
        for s in reversed(STATUSES)
    )
    head = "".join(f'<th class="area" scope="col"><span>{_e(a)}</span></th>' for a in AREAS)
    rows = []
    for host in hosts:
        status = host.status
        name_cell = (
            f'<th class="host" scope="row"><a href="#host-{_e(quote(host.name))}">'
            f"{_e(host.name)}</a></th>"
            f'<td class="st-{status}" title="{_e(host.error or "")}">{MARKS[status]} '
            f"{_e(LABELS[status])}</td>"
        )
        cells = "".join(_grid_cell(host, area) for area in AREAS)
        rows.append(f'<tr data-host="{_e(host.name)}">{name_cell}{cells}</tr>')
    if not rows:
        rows.append(f'<tr><td colspan="{len(AREAS) + 2}" class="muted">No hosts.</td></tr>')
    return (
        '<section id="grid"><h2>Fleet</h2>'
        f'<p class="legend">{legend}</p>'
        '<table class="grid"><thead><tr><th scope="col">Host</th><th scope="col">Status</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _grid_cell(host: HostResult, area: str) -> str:
    status = host.area_status(area)
    count = sum(1 for item in host.items if item.area == area)
    text = MARKS[status] + (f" {count}" if count else "")
    tip = f"{host.name}: {area}: {LABELS[status]}" + (f" ({count} items)" if count else "")
    return (
        f'<td class="cell cell-{status}" data-host="{_e(host.name)}" data-area="{_e(area)}" '
        f'data-status="{status}" title="{_e(tip)}" tabindex="0" role="button">{_e(text)}</td>'
    )


def _host_details(host: HostResult, report: Report, since: str | None) -> str:
    status = host.status
    summary = (
        f'<summary>{_e(host.name)} <span class="badge st-{status}">{MARKS[status]} '
        f"{_e(LABELS[status])}</span> "
        f'<span class="muted">{_e(_summary_note(host))}</span></summary>'
    )
    body = []
    if not host.checked:
        body.append(f'<p class="error">Not checked: {_e(host.error or "(no reason given)")}</p>')
    if host.applied:
        body.append(f'<p class="applied">--apply: {_e(host.applied)}</p>')
    if since:
        body.append(f'<p class="muted since">Drift history since {_e(since)}.</p>')
    if host.items:
        body.append(_items_table(host.items, report.finished or report.started, since))
    elif host.checked:
        body.append('<p class="muted">No drift.</p>')
    return (
        f'<details class="host" id="host-{_e(host.name)}" data-status="{status}">'
        f"{summary}{''.join(body)}</details>"
    )


def _summary_note(host: HostResult) -> str:
    if not host.checked:
        return host.error or "not checked"
    count = len(host.items)
    return f"{count} item{'' if count == 1 else 's'}"


def _items_table(items: list[Item], finished: str, since: str | None) -> str:
    order = {area: i for i, area in enumerate(AREAS)}
    rows = []
    for item in sorted(items, key=lambda i: (order.get(i.area, len(AREAS)), i.area, i.field)):
        seen = ""
        if item.first_seen:
            seen = format_age(item.first_seen, finished)
            if since and _not_after(item.first_seen, since):
                seen = f"at least {seen}"
        cells = [
            item.area,
            item.field,
            item.declared,
            item.observed,
            ACTIONS.get(item.action, item.action),
        ]
        tds = "".join(f"<td>{_e(c)}</td>" for c in cells[:4])
        tds += f'<td class="action">{_e(cells[4])}</td>'
        tds += f"<td><code>{_e(item.command)}</code></td>" if item.command else "<td></td>"
        tds += f'<td title="{_e(item.first_seen or "")}">{_e(seen)}</td>'
        rows.append(
            f'<tr class="item item-{_e(item.action)}" data-area="{_e(item.area)}" '
            f'data-field="{_e(item.field)}">{tds}</tr>'
        )
    head = "".join(
        f'<th scope="col">{h}</th>'
        for h in ("Area", "Field", "Declared", "Observed", "Action", "Command", "First seen")
    )
    return (
        f'<table class="items"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def format_age(since: str, until: str) -> str:
    """How long from ``since`` to ``until`` (ISO 8601), coarsely: "3 d 4 h",
    "5 h 12 min", "7 min", "< 1 min". Unparseable times give ``since`` as it is."""
    try:
        seconds = int((_parse(until) - _parse(since)).total_seconds())
    except ValueError:
        return since
    seconds = max(seconds, 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return "< 1 min"


def format_duration(seconds: float) -> str:
    """A run's duration: "4.2 s", "1 min 23 s", "1 h 2 min"."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s"


def _parse(iso: str) -> datetime:
    when = datetime.fromisoformat(iso)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _not_after(first: str, since: str) -> bool:
    try:
        return _parse(first) <= _parse(since)
    except ValueError:
        return False


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
