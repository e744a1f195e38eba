"""A role's tasks read statically, the same way for the change planner (``changes``) and the parity scan.

``include_tasks``/``import_tasks`` are not followed: every YAML file under the role's ``tasks/`` and
``handlers/`` is read instead, which covers the files they pull in whatever their (possibly templated) names.
A block stands for its ``block``, ``rescue`` and ``always`` tasks, in that order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

TASK_FOLDERS = ("tasks", "handlers")
BLOCK_PARTS = ("block", "rescue", "always")
YAML_SUFFIXES = (".yml", ".yaml")


def role_task_files(role_dir: Path, list_files: Callable[[Path], Iterable[Path]]) -> Iterator[tuple[Path, bool]]:
    """``(path, is_handlers)`` for every YAML file in the role's task folders.

    ``list_files`` lists one existing folder: the planner lists a role the way it digests it (hidden files
    skipped, symlinked folders followed), the parity scan its own way, and each keeps its reading order.
    """
    for folder in TASK_FOLDERS:
        if (role_dir / folder).is_dir():
            for path in list_files(role_dir / folder):
                if path.suffix in YAML_SUFFIXES:
                    yield path, folder == "handlers"


def iter_tasks(tasks: Any) -> Iterator[Mapping]:
    """Every task of a task list, each block replaced by its tasks; anything else than a list of mappings
    (an empty file, a stray entry) gives nothing."""
    if not isinstance(tasks, list):
        return
    for task in tasks:
        if not isinstance(task, Mapping):
            continue
        if any(part in task for part in BLOCK_PARTS):
            for part in BLOCK_PARTS:
                yield from iter_tasks(task.get(part))
        else:
            yield task
