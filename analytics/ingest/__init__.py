"""The worker's side: what applies the events queue's messages and keeps the stores.

``pipeline`` (a batch or a group, in order: rollups, raw store, quota, live push),
``coalesce`` (a pool process's take of the waiting messages), ``rollups`` with its ``lua``,
``store`` (the raw events), ``visits``, ``screen`` (events the store cannot take),
``quota``, ``rebuild``, ``retention``, ``cleanup`` and ``siteinfo`` (what a worker knows of a
site).
"""
