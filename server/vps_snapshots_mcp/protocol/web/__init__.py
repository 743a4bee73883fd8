"""The web room: the pages people open in a browser (the approval page), beside /mcp on the same port.

Only this room (with the HTTP transport) may import the web framework; `oidc.py` is the one place besides the
provider client that speaks HTTP (to the OpenID Connect issuer).
"""
