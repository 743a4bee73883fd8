"""Consent for restore and delete: tokens, the decision and its words, with no MCP import."""
