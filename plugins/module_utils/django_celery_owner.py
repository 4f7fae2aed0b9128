"""Shared by the role's modules: the numeric owner and group a file or directory should have."""

from __future__ import annotations

import grp
import pwd


def owner_ids(owner: str, group: str, check: bool) -> tuple[int, int] | None:
    """(uid, gid) of the names; None in check mode when one does not exist yet (on a new host
    the role creates the app's user before it creates anything owned by it). A name missing
    outside check mode raises KeyError."""
    try:
        return pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
    except KeyError:
        if not check:
            raise
        return None
