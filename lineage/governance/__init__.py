"""Governance: classification levels, the policy that assigns them, API keys and the audit log."""
