"""Nightly fleet reconciliation: check every host against its declared state,
report per field, keep history, fix what is safe to fix unattended.

- :mod:`tfenv.reconcile.report`: the report (hosts, drift items, exit code), its
  versioned JSON schema, and merging shard reports.
- :mod:`tfenv.reconcile.check`: one ``pyinfra --dry`` of the tf_node deploy,
  with the operations' own drift records collected per host.
- :mod:`tfenv.reconcile.history`: the SQLite history in the state directory.
- :mod:`tfenv.reconcile.html` and :mod:`tfenv.reconcile.prom`: the HTML page and
  the node_exporter textfile.
"""
