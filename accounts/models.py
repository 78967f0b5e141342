"""The accounts app has no tables: users, roles, permissions and token generations are
replicated through Raft (``accounts.directory``), so every member agrees. Issue #8's per-member
``TokenGeneration`` table is dropped by migration 0002."""
