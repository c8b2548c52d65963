"""The access rules: grant, extend, revoke, invites, removals."""
