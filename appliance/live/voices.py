"""The prebuilt voices the Live API speaks with: the one list every part of the appliance reads.

A voice is named in setup as `speechConfig.voiceConfig.prebuiltVoiceConfig.voiceName`.  These
are the 30 names Google's Live API page "Configure language and voice" lists for that field,
in its order and spelled as the service expects them; every Live model takes the same set.
The settings refuse any other name (`live.voice`), so a typo is caught before a session opens.
"""

from __future__ import annotations

__all__ = ["PREBUILT_VOICES"]

PREBUILT_VOICES: tuple[str, ...] = (
    "Zephyr", "Puck", "Charon", "Kore", "Fenrir", "Leda", "Orus", "Aoede", "Callirrhoe", "Autonoe",
    "Enceladus", "Iapetus", "Umbriel", "Algieba", "Despina", "Erinome", "Algenib", "Rasalgethi",
    "Laomedeia", "Achernar", "Alnilam", "Schedar", "Gacrux", "Pulcherrima", "Achird", "Zubenelgenubi",
    "Vindemiatrix", "Sadachbia", "Sadaltager", "Sulafat",
)
