"""The topology picture: production groups on the left, the development VMs on the right, one line per
(group, VM) pair. Pure: a layout (boxes and links as numbers, testable) and its SVG text (every name escaped).

Readable at 100+ production hosts because a group is one box whatever its size: its name, how many hosts it has,
and the first few host names; the picture grows with groups and VMs, never with hosts.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape

from provisioner.report.model import TopologyView

WIDTH = 720
BOX_W = 260
BOX_H = 52
GAP = 14
TOP = 34            # room for the column titles
NAMES_SHOWN = 3     # host names written in a group's box; the rest are counted
NAME_CHARS = 40     # a line of host names is cut to this


@dataclass(frozen=True)
class Box:
    key: str
    x: int
    y: int
    title: str
    lines: tuple[str, ...]
    kind: str   # "group", "machine" or "excluded"

    @property
    def bottom(self) -> int:
        return self.y + BOX_H


@dataclass(frozen=True)
class Link:
    group: str
    machine: str
    hosts: int   # how many of the group's hosts this VM stands for


@dataclass(frozen=True)
class Layout:
    width: int
    height: int
    boxes: tuple[Box, ...]
    links: tuple[Link, ...]

    def box(self, kind: str, key: str) -> Box:
        return next(b for b in self.boxes if b.kind == kind and b.key == key)


def _names(hosts: tuple[str, ...]) -> str:
    shown = ", ".join(hosts[:NAMES_SHOWN])
    if len(shown) > NAME_CHARS:
        shown = shown[:NAME_CHARS - 1] + "…"
    more = len(hosts) - NAMES_SHOWN
    return shown + (f" +{more} more" if more > 0 else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def layout(view: TopologyView) -> Layout:
    left: list[tuple[str, str, tuple[str, ...], str]] = [
        (g.name, g.name, (_plural(len(g.hosts), "production host"), _names(g.hosts)), "group") for g in view.groups]
    if view.excluded:
        hosts = tuple(h for h, _ in view.excluded)
        left.append(("(no VM)", "not in development", (_plural(len(hosts), "production host"), _names(hosts)),
                     "excluded"))
    # each VM beside the first of its groups (fewer crossing lines); the plan's order among equals
    row = {g.name: i for i, g in enumerate(view.groups)}
    machines = sorted(view.machines, key=lambda m: min((row[g] for g in m.groups if g in row), default=len(row)))
    right = [(m.name, m.name, (f"{m.address} · {m.memory} MiB · {_plural(m.cpus, 'CPU')}",
                               f"stands for {_plural(len(m.represents), 'host')}"), "machine")
             for m in machines]
    column = lambda n: n * BOX_H + max(0, n - 1) * GAP  # noqa: E731
    height = TOP + max(column(len(left)), column(len(right)), BOX_H) + GAP

    def place(items, x: int) -> list[Box]:
        offset = TOP + (height - TOP - GAP - column(len(items))) // 2   # the shorter column is centred
        return [Box(key, x, offset + i * (BOX_H + GAP), title, lines, kind)
                for i, (key, title, lines, kind) in enumerate(items)]

    boxes = place(left, 8) + place(right, WIDTH - 8 - BOX_W)
    links = []
    for g in view.groups:
        members = set(g.hosts)
        for m in view.machines:
            if g.name in m.groups:
                links.append(Link(g.name, m.name, sum(1 for h in m.represents if h in members)))
    return Layout(WIDTH, height, tuple(boxes), tuple(links))


def render_svg(view: TopologyView) -> str:
    """The picture as inline SVG (scales to the page's width; text stays selectable)."""
    lay = layout(view)
    out = [f'<svg id="topology" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {lay.width} {lay.height}" '
           f'role="img" aria-labelledby="topology-title" width="100%">',
           f'<title id="topology-title">production groups ({len(view.groups)}, {view.production_hosts} hosts) '
           f'and the {len(view.machines)} development VMs standing for them</title>',
           f'<text class="col" x="8" y="20">production groups</text>',
           f'<text class="col" x="{lay.width - 8 - BOX_W}" y="20">development VMs</text>']
    for link in lay.links:
        a, b = lay.box("group", link.group), lay.box("machine", link.machine)
        x1, y1, x2, y2 = a.x + BOX_W, a.y + BOX_H // 2, b.x, b.y + BOX_H // 2
        mid = (x1 + x2) // 2
        out.append(f'<path class="link" d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}">'
                   f'<title>{escape(link.group)} → {escape(link.machine)}: '
                   f'{_plural(link.hosts, "host")}</title></path>')
    for box in lay.boxes:
        out.append(f'<g class="{box.kind}" data-name="{escape(box.key)}">'
                   f'<rect x="{box.x}" y="{box.y}" width="{BOX_W}" height="{BOX_H}" rx="6"/>'
                   f'<text x="{box.x + 10}" y="{box.y + 18}" class="name">{escape(box.title)}</text>'
                   + "".join(f'<text x="{box.x + 10}" y="{box.y + 32 + 13 * i}">{escape(line)}</text>'
                             for i, line in enumerate(box.lines))
                   + "</g>")
    out.append("</svg>")
    return "\n".join(out)
