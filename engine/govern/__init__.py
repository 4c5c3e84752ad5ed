"""Governance: agent identities and scopes, the verification gate, the review queue."""
