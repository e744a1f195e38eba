"""YAML from files devbox does not control (inventory vars, devbox.yml, .devbox/secrets.yml), read with limits.

PyYAML shares an aliased node instead of copying it, so a "billion laughs" document loads in milliseconds and
only explodes when something walks, copies or serialises the data. The loader here counts the nodes the document
stands for once aliases are expanded and refuses it above ``MAX_NODES``, before any value is built. It can also
refuse a key given twice in one mapping (YAML keeps the last one silently), naming both lines.
"""
from __future__ import annotations

import yaml

MAX_NODES = 200_000   # far above any real inventory or devbox.yml; a bomb's expansion is in the billions


class LimitedSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses documents whose aliases expand beyond ``MAX_NODES`` nodes."""

    unique_keys = False

    def construct_document(self, node):
        check_expanded_size(node)
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        if self.unique_keys and isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = key_node.value
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"`{key}` is given twice (lines {seen[key] + 1} and "
                        f"{key_node.start_mark.line + 1}); YAML would keep only the last one", key_node.start_mark)
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


class StrictSafeLoader(LimitedSafeLoader):
    """Also refuses duplicate keys: for devbox's own files, where a silent merge hides a mistake."""

    unique_keys = True


def check_expanded_size(root: yaml.Node, limit: int = MAX_NODES) -> None:
    """Raise a ``yaml.YAMLError`` when ``root`` stands for more than ``limit`` nodes with its aliases expanded."""
    sizes: dict[int, int] = {}
    expanding: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            size = 1 + sum(sizes[id(c)] for c in _children(node))
            if size > limit:
                raise yaml.constructor.ConstructorError(
                    None, None, f"aliases expand to more than {limit:,} values (a \"billion laughs\" document?); "
                    "devbox refuses it", node.start_mark)
            sizes[id(node)] = size
            expanding.discard(id(node))
        elif id(node) not in sizes:
            if id(node) in expanding:   # reached again from inside itself
                raise yaml.constructor.ConstructorError(None, None, "an alias refers to a value that contains it",
                                                        node.start_mark)
            expanding.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in _children(node) if id(c) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load(text: str, loader: type[yaml.SafeLoader] = LimitedSafeLoader):
    return yaml.load(text, Loader=loader)
