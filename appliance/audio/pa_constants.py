"""PortAudio's numbers (portaudio.h), for the virtual card: sample formats, callback results, flags, errors.

PyAudio exports the same values; defining them here lets the virtual card run on a machine with neither
pyaudio nor libportaudio. The names are PortAudio's own, so a test can compare them with PyAudio's.
"""

from __future__ import annotations

paFloat32 = 0x01
paInt32 = 0x02
paInt24 = 0x04
paInt16 = 0x08
paInt8 = 0x10
paUInt8 = 0x20
paContinue = 0
paComplete = 1
paAbort = 2
paInputUnderflow = 0x01
paInputOverflow = 0x02
paOutputUnderflow = 0x04
paOutputOverflow = 0x08
paPrimingOutput = 0x10
paFramesPerBufferUnspecified = 0
paNoDevice = -1
paInDevelopment = 0  # the host API type id PortAudio reserves for APIs without an official number
# Error codes, carried by the OSError/ValueError the card raises, as PyAudio's are.
paUnanticipatedHostError = -9999
paNotInitialized = -10000
paInvalidChannelCount = -9998
paInvalidSampleRate = -9997
paInvalidDevice = -9996
paSampleFormatNotSupported = -9994
paBadIODeviceCombination = -9993
paBadStreamPtr = -9988
paDeviceUnavailable = -9985
paCanNotReadFromACallbackStream = -9977
paCanNotWriteToACallbackStream = -9976

#: Bytes per sample of each format (Pa_GetSampleSize).
SAMPLE_SIZES: dict[int, int] = {paFloat32: 4, paInt32: 4, paInt24: 3, paInt16: 2, paInt8: 1, paUInt8: 1}
