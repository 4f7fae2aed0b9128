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

ACTIVE = {"default@w1": [{"id": "a1"}], "slow@w1": []}
RESERVED = {"default@w1": [{"id": "r1"}], "slow@w1": [{"id": "r2"}]}
SCHEDULED = {"default@w1": [{"eta": "2026-11-25T03:00:00", "request": {"id": "s1"}}], "slow@w1": []}


def test_held_task_ids_gather_active_reserved_and_scheduled_tasks():
    assert unacked.held_task_ids(ACTIVE, RESERVED, SCHEDULED) == {"a1", "r1", "r2", "s1"}


def test_held_task_ids_of_no_reply_are_empty():
    assert unacked.held_task_ids(None, None, None) == set()


def test_a_node_counts_as_answering_only_if_it_answered_every_call():
    assert unacked.answering_nodes(ACTIVE, RESERVED, {"default@w1": []}) == {"default@w1"}


def test_task_id_reads_the_celery_protocol_2_header():
    entry = json.dumps(
        [{"headers": {"id": "t-1"}, "properties": {"correlation_id": "t-1"}}, "", "celery"]
    )
    assert unacked.task_id(entry) == "t-1"


def test_task_id_falls_back_to_the_correlation_id():
    entry = json.dumps([{"properties": {"correlation_id": "t-2"}}, "", "celery"])
    assert unacked.task_id(entry) == "t-2"


def test_orphans_are_the_entries_no_worker_holds():
    entries = [("tag-a", "a1"), ("tag-x", "x9"), ("tag-s", "s1"), ("tag-y", "y8")]
    held = unacked.held_task_ids(ACTIVE, RESERVED, SCHEDULED)
    assert unacked.orphans(entries, held) == ["tag-x", "tag-y"]
