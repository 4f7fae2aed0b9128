"""The pure parts of the role's unacked-task command (files/django_celery_unacked.py): which
entries count as held by a live worker, and which are orphaned."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROLE = Path(__file__).resolve().parent.parent / "roles" / "django_celery"
spec = importlib.util.spec_from_file_location(
    "unacked", ROLE / "files" / "django_celery_unacked.py"
)
unacked = importlib.util.module_from_spec(spec)
spec.loader.exec_module(unacked)
Entry = unacked.Entry

# inspect query_task's replies: each node lists the asked ids it holds, in any state.
REPLIES = {
    "default@w1": {"a1": ["active", {}], "s1": ["scheduled", {}]},
    "slow@w1": {"r2": ["reserved", {}]},
    "default@w2": {},
}


def test_held_task_ids_are_every_id_any_node_reported():
    assert unacked.held_task_ids(REPLIES) == {"a1", "s1", "r2"}


def test_held_task_ids_of_no_reply_are_empty():
    assert unacked.held_task_ids(None) == set()


def test_task_of_reads_the_id_and_name_of_celery_protocol_2():
    message = {"headers": {"id": "t-1", "task": "demo.tasks.slow"}, "properties": {}}
    assert unacked.task_of(json.dumps([message, "", "celery"])) == ("t-1", "demo.tasks.slow")


def test_task_of_falls_back_to_the_correlation_id():
    message = {"properties": {"correlation_id": "t-2"}}
    assert unacked.task_of(json.dumps([message, "", "celery"])) == ("t-2", "")


def test_orphans_are_the_entries_no_worker_holds():
    entries = [
        Entry("tag-a", 1.0, "a1", "x"),
        Entry("tag-x", 2.0, "x9", "x"),
        Entry("tag-r", 3.0, "r2", "x"),
    ]
    assert unacked.orphans(entries, unacked.held_task_ids(REPLIES), set()) == [entries[1]]


def test_a_task_with_a_rate_limit_is_never_an_orphan():
    """A worker holds rate-limited tasks in a token bucket no inspect command sees."""
    entries = [
        Entry("tag-x", 2.0, "x9", "demo.tasks.limited"),
        Entry("tag-y", 2.0, "y8", "demo.tasks.add"),
    ]
    assert unacked.orphans(entries, set(), {"demo.tasks.limited"}) == [entries[1]]
