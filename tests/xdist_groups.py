"""``--dist loadgroup`` (pytest-xdist 3.8) under pytest 9.2: xdist marks each test of an
``xdist_group`` by appending ``@<group>`` to its ``_nodeid``, an attribute pytest 9.2 no longer
reads (the id is ``_id`` now), so every group was silently split over the workers
(pytest-dev/pytest-xdist#1386) and a module's shared fixture was built once on each.
:func:`keep_groups` carries the mark over; once xdist sets the id itself it does nothing."""

from __future__ import annotations


def keep_groups(items) -> None:
    """Give each test that xdist marked with its group the marked id, as xdist meant to."""
    for item in items:
        marked = item.__dict__.get("_nodeid")
        if marked is not None and hasattr(item, "_id") and item.nodeid != marked:
            from _pytest.nodeid import NodeId

            item._id = NodeId.parse(marked)
