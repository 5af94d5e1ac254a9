"""The running appliance.

`daemon` wires the parts together and supervises their tasks (`supervisor`); `conductor` is
the state machine from a press to a finished reply (idle, listening, thinking, speaking);
`turntaking` sends what the microphone hears between activityStart and activityEnd, with
the VAD deciding when a tap's turn ends; `alarms` rings timers; `replies` records each
turn's reply in flight and its metrics.
"""
