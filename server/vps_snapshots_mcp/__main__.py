"""`python -m vps_snapshots_mcp` runs the same CLI as the `vps-snapshots-mcp` command."""

from .start import main

if __name__ == "__main__":
    raise SystemExit(main())
