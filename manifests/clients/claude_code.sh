#!/bin/sh
# Claude Code: add the server for your user. /path/to/vps-snapshots-mcp is your clone (docs/install.md).
# The token stays in a file only you can read:
#   mkdir -p ~/.config/vps-snapshots-mcp && (umask 077 && printf '%s' 'YOUR TOKEN' > ~/.config/vps-snapshots-mcp/token)
claude mcp add vps-snapshots --scope user --env VPS_API_TOKEN_FILE="$HOME/.config/vps-snapshots-mcp/token" -- /path/to/vps-snapshots-mcp/.venv/bin/vps-snapshots-mcp --no-destructive

# Or a team's shared server over HTTP, with its client token taken from your environment:
# claude mcp add --transport http vps-snapshots https://mcp.example.com/mcp --header "Authorization: Bearer $VPS_MCP_AUTH_TOKEN"
