"""Nothing the server sends can crash the parser: random bytes, text and message-shaped JSON.

Kept out of the unit tier because a few thousand generated frames take seconds.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.live import messages as p
from appliance.live.parser import parse_server_frame


def frame(obj, binary=True):
    data = json.dumps(obj)
    return data.encode() if binary else data


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=30,
)
known_keys = st.sampled_from(
    ["setupComplete", "serverContent", "toolCall", "toolCallCancellation", "goAway", "sessionResumptionUpdate", "usageMetadata", "server_content", "tool_call"]
)
inner_keys = st.sampled_from(
    ["modelTurn", "parts", "inlineData", "data", "mimeType", "turnComplete", "interrupted", "inputTranscription", "text", "functionCalls", "id", "name", "args", "ids", "timeLeft", "newHandle", "resumable", "promptTokenCount", "finished"]
)
shaped = st.recursive(
    json_values,
    lambda children: st.dictionaries(inner_keys, children, max_size=5) | st.lists(children, max_size=3),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_parser_never_raises_on_bytes(data):
    events = parse_server_frame(data)
    assert isinstance(events, list)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(known_keys, shaped, max_size=3), st.booleans())
def test_parser_never_raises_on_message_shaped_json(obj, binary):
    events = parse_server_frame(frame(obj, binary))
    assert all(isinstance(e, p.ServerEvent) for e in events)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_parser_never_raises_on_text(text):
    assert isinstance(parse_server_frame(text), list)
