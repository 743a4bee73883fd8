"""The provider: its client (HTTP plumbing, endpoints, parsing) and the cleaning of what it sends."""
