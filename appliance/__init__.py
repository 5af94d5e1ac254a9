"""Push-to-talk voice appliance for the Raspberry Pi, talking to the Gemini Live API."""

__version__ = "0.1.0"
