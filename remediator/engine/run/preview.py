"""Turn ansible-runner events into a Preview: per host, per task, what changed, the diff, and a summary."""
from __future__ import annotations

import difflib
from typing import Any

from remediator.engine.model.records import HostPreview, Preview, TaskResult

__all__ = ["build_preview", "reports_from_events"]

_STATUS = {"runner_on_ok": "ok", "runner_on_failed": "failed", "runner_on_skipped": "skipped",
           "runner_on_unreachable": "unreachable"}


def _render_diff(diff: Any) -> str:
    if not diff:
        return ""
    parts = diff if isinstance(diff, list) else [diff]
    out: list[str] = []
    for d in parts:
        if not isinstance(d, dict):
            continue
        if d.get("prepared"):
            out.append(str(d["prepared"]))
            continue
        before, after = d.get("before", ""), d.get("after", "")
        if isinstance(before, dict) or isinstance(after, dict):
            before = "\n".join(f"{k}: {v}" for k, v in sorted((before or {}).items())) + "\n"
            after = "\n".join(f"{k}: {v}" for k, v in sorted((after or {}).items())) + "\n"
        before_header, after_header = str(d.get("before_header", "before")), str(d.get("after_header", "after"))
        if "/.ansible/tmp/" in after_header:   # a template's render: a temporary file, named anew on every run
            after_header = before_header      # (the approval's digest covers this diff: it must not drift by itself)
        out.extend(difflib.unified_diff(
            str(before).splitlines(keepends=True), str(after).splitlines(keepends=True),
            fromfile=before_header, tofile=after_header))
    return "".join(out)


def _item_label(res: dict[str, Any]) -> str:
    label = res.get("_ansible_item_label", res.get("item", ""))
    if isinstance(label, dict):
        label = label.get("path") or label.get("name") or str(label)
    return str(label)


def _task_result(event: dict[str, Any]) -> TaskResult:
    data = event["event_data"]
    res: dict[str, Any] = data.get("res") or {}
    status = _STATUS[event["event"]]
    items: list[str] = []
    paths: list[str] = []
    diffs: list[str] = []
    changed = bool(res.get("changed"))
    for item in res.get("results") or []:
        if not isinstance(item, dict):
            continue
        if item.get("changed"):
            items.append(_item_label(item))
            if item.get("path"):
                paths.append(str(item["path"]))
        diffs.append(_render_diff(item.get("diff")))
    if res.get("path") and changed:
        paths.append(str(res["path"]))
    if changed:     # a module that changes many paths at once names them (clean_logs' remove_under)
        paths.extend(str(p) for p in res.get("changed_paths") or [])
    if res.get("dest") and changed:
        paths.append(str(res["dest"]))
    diffs.append(_render_diff(res.get("diff")))
    if status == "ok" and changed:
        status = "changed"
    msg = res.get("msg", "")
    if not isinstance(msg, str):
        msg = str(msg)
    return TaskResult(task=data.get("task", ""), status=status, changed=changed, msg=msg.strip(),
                      diff="".join(diffs), items=items, paths=paths)


def build_preview(entry: str, events: list[dict[str, Any]], check: bool, hosts: list[str]) -> Preview:
    """Fold the runner's per-task events into a Preview of the run."""
    per_host: dict[str, list[TaskResult]] = {h: [] for h in hosts}
    for ev in events:
        if ev.get("event") in _STATUS:
            host = ev["event_data"].get("host", "?")
            per_host.setdefault(host, []).append(_task_result(ev))
    host_previews = []
    for host, tasks in per_host.items():
        host_previews.append(HostPreview(
            host=host, tasks=tasks, changed=sum(t.changed for t in tasks),
            failed=any(t.status == "failed" for t in tasks),
            unreachable=any(t.status == "unreachable" for t in tasks) or not tasks))
    ok = all(not h.failed and not h.unreachable for h in host_previews) and bool(host_previews)
    return Preview(entry=entry, hosts=host_previews, summary=_summary(entry, host_previews, check), ok=ok)


def _summary(entry: str, hosts: list[HostPreview], check: bool) -> str:
    verb = "would" if check else "did"
    sentences: list[str] = []
    for h in hosts:
        if h.unreachable and not h.tasks:
            sentences.append(f"{h.host}: no result (host not reached or not in the play).")
            continue
        if h.unreachable:   # ssh's own words say why (a changed host key, a refused login, no route)
            why = next((t.msg for t in h.tasks if t.status == "unreachable" and t.msg), "")
            sentences.append(f"{h.host}: unreachable" + (f": {why[-300:]}" if why else "."))
            continue
        failed = [t for t in h.tasks if t.status == "failed"]
        if failed:
            sentences.append(f"{h.host}: failed at '{failed[0].task}': {failed[0].msg[:300]}")
            continue
        sentences.append(f"{h.host}: {_host_sentence(h, verb)}.")
    return f"{entry}: " + " ".join(sentences)


def _host_sentence(h: HostPreview, verb: str) -> str:
    changed = [t for t in h.tasks if t.changed]
    if not changed:
        return f"{verb} change nothing"
    # A task that says in words what it does was written for this summary; prefer those.
    spoken = [t.msg for t in changed if t.msg and not t.items]
    if spoken:
        return "; ".join(spoken)
    parts = []
    for t in changed:
        name = t.task.split(" : ", 1)[-1]
        if t.items:
            shown = ", ".join(t.items[:5]) + (f" and {len(t.items) - 5} more" if len(t.items) > 5 else "")
            parts.append(f"{name}: {shown}")
        else:
            parts.append(f"{verb} {name[0].lower() + name[1:]}")
    return "; ".join(parts)


def reports_from_events(entry: str, events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A diagnostic's report per host: the `<entry>_report` fact its last task sets."""
    key = f"{entry}_report"
    out: dict[str, dict[str, Any]] = {}
    for ev in events:
        if ev.get("event") == "runner_on_ok":
            facts = (ev["event_data"].get("res") or {}).get("ansible_facts") or {}
            if key in facts:
                out[ev["event_data"]["host"]] = facts[key]
    return out
