"""Read pack files safely and keep the line of every key, so findings can say `file:line`.

YAML is parsed with PyYAML's safe composer; anchors, aliases and tags are refused (they are
never needed in a pack and are how "billion laughs" files and object construction attacks
work). Each document becomes a plain Python value plus a map from its key path to its line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pointbook.errors import PackError

__all__ = ["PackDocument", "PathKey", "read_pack_documents"]

PathKey = tuple[str | int, ...]

MAX_PACK_BYTES = 2_000_000
MAX_DEPTH = 64
# Numbers a pack may hold: exactly representable as a double and far inside the 64-bit
# integers the stores keep points in, so no sum of them can overflow a column.
MAX_NUMBER = 2**53 - 1


@dataclass(frozen=True)
class PackDocument:
    """One YAML document of a pack file: its data, where each key is, and its own text."""

    file: str
    index: int
    data: Any
    lines: dict[PathKey, int]
    start_line: int
    text: str = field(repr=False)

    def line_of(self, path: PathKey) -> int:
        """The line of the deepest known prefix of ``path``."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.start_line


_SAFE = yaml.SafeLoader


def _construct(node: Node, path: PathKey, lines: dict[PathKey, int], depth: int, file: str) -> Any:
    if depth > MAX_DEPTH:
        raise PackError(
            f"{file}:{node.start_mark.line + 1}: nesting deeper than {MAX_DEPTH} levels"
        )
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, file)
            if not isinstance(key, str | int | bool | float) or isinstance(key, bool):
                key = str(key)
            if key in out:
                raise PackError(f"{file}:{key_node.start_mark.line + 1}: duplicate key {key!r}")
            child = (*path, str(key))
            lines[child] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, child, lines, depth + 1, file)
        return out
    if isinstance(node, SequenceNode):
        return [
            _construct(item, (*path, i), lines, depth + 1, file)
            for i, item in enumerate(node.value)
        ]
    return _scalar(node, file)


def _scalar(node: Node, file: str) -> Any:
    if not isinstance(node, ScalarNode):
        raise PackError(f"{file}:{node.start_mark.line + 1}: keys must be plain scalars")
    loader = _SAFE("")
    line = node.start_mark.line + 1
    try:
        value = loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        # PyYAML's constructors raise ValueError for a date such as 2021-02-30 or an integer
        # of thousands of digits: a finding at its line, never a traceback.
        why = "an integer of thousands of digits" if "digits" in str(exc) else str(exc)
        raise PackError(f"{file}:{line}: not a plain YAML value: {why}") from exc
    finally:
        loader.dispose()
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if is_number and (value != value or abs(value) > MAX_NUMBER):
        shown = str(value) if len(str(value)) <= 30 else str(value)[:27] + "..."
        raise PackError(
            f"{file}:{line}: the number {shown} is out of range: numbers in a pack are "
            f"finite and at most {MAX_NUMBER:,} in magnitude"
        )
    return value


_PLAIN_TAGS = {"!"} | {
    f"tag:yaml.org,2002:{t}"
    for t in ("str", "int", "float", "bool", "null", "timestamp", "map", "seq")
}


def _check_events(text: str, file: str) -> None:
    # Streamed, so a file is refused at its first anchor, tag or level too deep, before it is
    # composed: composing is recursive, and PyYAML's scanner slows quadratically with the
    # depth of flow collections ("[[[[..." of a few thousand levels takes minutes).
    depth = 0
    for event in yaml.parse(text, Loader=_SAFE):
        line = event.start_mark.line + 1 if event.start_mark else 0
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise PackError(f"{file}:{line}: nesting deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise PackError(
                f"{file}:{line}: YAML anchors and aliases are not allowed in packs; write the "
                "value out in full"
            )
        tag = getattr(event, "tag", None)
        if tag and tag not in _PLAIN_TAGS:
            raise PackError(f"{file}:{line}: YAML tag {tag!r} is not allowed in packs")


def read_pack_documents(source: str | Path, text: str | None = None) -> list[PackDocument]:
    """Parse a pack file (or ``text`` named ``source``) into documents; raise PackError if unreadable."""
    file = str(source)
    if text is None:
        try:
            raw = Path(source).read_bytes()
        except OSError as exc:
            raise PackError(f"{file}: cannot read pack file: {exc.strerror or exc}") from exc
        if len(raw) > MAX_PACK_BYTES:
            raise PackError(f"{file}: pack file is over {MAX_PACK_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise PackError(f"{file}:{line}: pack file is not UTF-8 (byte {exc.start})") from exc
    try:
        _check_events(text, file)
        nodes = list(yaml.compose_all(text, Loader=_SAFE))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise PackError(f"{file}:{line}: not valid YAML: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise PackError(f"{file}:1: not valid YAML: {exc}") from exc
    docs: list[PackDocument] = []
    text_lines = text.splitlines(keepends=True)
    present = [n for n in nodes if n is not None]
    # A document's text runs from its `---` marker (the file's start for the first one, so the
    # header comment belongs to it) to the next document's marker.
    bounds = [0]
    for node in present[1:]:
        line = node.start_mark.line
        while line > bounds[-1] and not text_lines[line].startswith("---"):
            line -= 1
        bounds.append(line)
    bounds.append(len(text_lines))
    for i, node in enumerate(present):
        lines: dict[PathKey, int] = {}
        data = _construct(node, (), lines, 0, file)
        doc_text = "".join(text_lines[bounds[i] : bounds[i + 1]])
        docs.append(PackDocument(file, i, data, lines, node.start_mark.line + 1, doc_text))
    if not docs:
        raise PackError(f"{file}:1: the file holds no YAML document")
    return docs
