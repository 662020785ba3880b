#!/usr/bin/python
"""Delete regular files below allowed roots without following any symlink on the way (race-free)."""
from __future__ import annotations

import errno
import os
import stat

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: remove_under
short_description: Delete regular files below allowed roots, following no symlink
description:
  - Each path is walked from its root one directory at a time with O_NOFOLLOW, so a directory swapped for a
    symlink after the files were found makes that file refused, never followed. Only regular files are removed.
options:
  roots: {description: Directories the files must be below (each a real directory, not a link)., type: list, elements: str, required: true}
  paths: {description: Absolute paths of the files to delete., type: list, elements: str, required: true}
"""

_GONE = "gone already"
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _root_of(path: str, roots: list[str]) -> str | None:
    for root in roots:
        base = root.rstrip("/") or "/"
        if path.startswith(base.rstrip("/") + "/") and ".." not in path.split("/"):
            return base
    return None


def _remove(path: str, root: str, check: bool) -> str | None:
    """None when removed (or removable in check mode), else why not."""
    parts = [p for p in path[len(root):].split("/") if p]
    try:
        fd = os.open(root, _DIR)
    except OSError as exc:
        return f"root {root}: {os.strerror(exc.errno or 0)}"
    try:
        for part in parts[:-1]:
            try:
                nxt = os.open(part, _DIR, dir_fd=fd)
            except OSError as exc:
                why = "a symlink or not a directory" if exc.errno in (errno.ELOOP, errno.ENOTDIR) else os.strerror(exc.errno or 0)
                return f"{part}: {why}"
            os.close(fd)
            fd = nxt
        st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if not check:
            os.unlink(parts[-1], dir_fd=fd)
        return None
    except FileNotFoundError:
        return _GONE
    finally:
        os.close(fd)


def main() -> None:
    module = AnsibleModule(argument_spec={"roots": {"type": "list", "elements": "str", "required": True},
                                          "paths": {"type": "list", "elements": "str", "required": True}},
                           supports_check_mode=True)
    removed: list[str] = []
    refused: dict[str, str] = {}
    for path in module.params["paths"]:
        root = _root_of(path, module.params["roots"])
        why = _remove(path, root, module.check_mode) if root else "not below an allowed root"
        if why is None:
            removed.append(path)
        elif why != _GONE:          # rotated away since it was found: nothing to do
            refused[path] = why
    # changed_paths: what the engine's preview lists and its policy review checks against the allow-list
    result = {"changed": bool(removed), "changed_paths": removed, "refused": refused}
    if refused:
        module.fail_json(msg=f"refused to delete {len(refused)} files: {refused}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
