"""Finding and opening sound devices by name, and choosing a format they accept.

PortAudio indices move with USB hotplug and card order, so devices are chosen by
name; formats are probed with `is_format_supported` because I2S HATs often accept
only one combination (S32_LE, 48 kHz, stereo).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

log = logging.getLogger(__name__)


class AudioDeviceError(Exception):
    """A sound-device problem the owner has to fix (wrong name, unsupported format, busy)."""


_ALSA_ERROR_HANDLER_TYPE = ctypes.CFUNCTYPE(
    None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p
)


def _ignore_alsa_error(_file: bytes, _line: int, _func: bytes, _err: int, _fmt: bytes) -> None:
    return None


# Module-level reference: alsa-lib keeps only the raw pointer, so the ctypes
# object must outlive every PyAudio instance or the next error would crash.
_alsa_error_handler: Any = None


def silence_alsa_errors() -> bool:
    """Install a no-op alsa-lib error handler once; False when libasound is not available."""
    global _alsa_error_handler
    if _alsa_error_handler is not None:
        return True
    try:
        libasound = ctypes.cdll.LoadLibrary(ctypes.util.find_library("asound") or "libasound.so.2")
        handler = _ALSA_ERROR_HANDLER_TYPE(_ignore_alsa_error)
        libasound.snd_lib_error_set_handler(handler)
    except (OSError, AttributeError):
        return False
    _alsa_error_handler = handler
    return True


def open_pyaudio() -> Any:
    """A fresh `pyaudio.PyAudio()` (a new instance rescans devices), without alsa-lib's stderr noise."""
    silence_alsa_errors()
    import pyaudio

    return pyaudio.PyAudio()
