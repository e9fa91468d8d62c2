"""The operator's pages: dashboard, playground (server-rendered, staff only)."""
