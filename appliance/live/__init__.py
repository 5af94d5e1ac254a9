"""The Gemini Live client.

Sans-I/O first: `messages` (what we send, the events we read), `parser` (a server frame to
events), `cleaning` (bounds and sanitising of everything from the wire), `conversation`
(which turn each event belongs to, and how each turn ended), `link` (link states, close
kinds, retry delays), `held` (the question kept for replay), `profiles` (per-model
differences), `endpoint` (the URL and its loopback/TLS rule).  The I/O is `connection`
(`LiveSession`: one WebSocket at a time, resume after a drop or goAway); `from_config`
builds it from the settings.
"""
