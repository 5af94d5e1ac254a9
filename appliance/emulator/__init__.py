"""The offline Live API emulator: a strict stand-in for the Gemini Live service, on loopback only.

Every test talks to it instead of Google. ``server`` holds ``Emulator`` (and the ``appliance emulator``
CLI); each connection (``connection``, ``playback``, ``wire``) sees the server only through ``host.Host``;
``schema``, ``shapes``, ``model_rules`` and ``setup_message`` decide what a client may send, ``rejections``
how it is refused; ``scenario`` says what to answer and which faults to inject; ``records`` and
``journal`` keep what happened for tests to assert on.
"""
