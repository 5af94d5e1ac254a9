"""Tools from MCP servers (Home Assistant first), offered to the model beside the device's own.

`config` reads `[mcp]` and `[[mcp.servers]]` and `schema_map` turns a server's tool schemas
into Live API declarations; both use the standard library only.  `manager` keeps one
connection per server, and `client`, the only module that imports the `mcp` SDK, does
the talking.  The SDK is an optional extra (`pip install 'appliance[home]'`) and costs
about a second and 50 MB to import, so only a daemon with servers configured loads it.
"""
