"""The Live session as the config describes it.

One place turns `[live]` settings into `SessionSettings` and `SessionOptions`, so the
daemon, `ask`, the demo and `doctor` all open the same session.
"""

from __future__ import annotations

from appliance.live import messages as p
from appliance.live.connection import LiveSession, SessionOptions
from appliance.live.endpoint import endpoint_url
from appliance.settings.schema import Config
from appliance.settings.secrets import Secret


def session_from_config(
    cfg: Config,
    api_key: Secret | None,
    *,
    functions: tuple[dict, ...] = (),
    google_search: bool = False,
) -> LiveSession:
    """The session as the config describes it; the daemon adds its tools' declarations."""
    live = cfg.live
    settings = p.SessionSettings(
        model=live.model,
        voice=live.voice,
        language=live.language,
        system_instruction=live.system_instruction,
        input_transcription=live.input_transcription,
        output_transcription=live.output_transcription,
        compression_trigger_tokens=live.compression_trigger_tokens,
        compression_target_tokens=live.compression_target_tokens,
        functions=functions,
        google_search=google_search,
    )
    options = SessionOptions(
        setup_timeout_s=live.setup_timeout_s,
        keepalive_interval_s=live.keepalive_interval_s,
        keepalive_timeout_s=live.keepalive_timeout_s,
        auth=live.auth,
        reply_timeout_s=live.reply_timeout_s,
    )
    return LiveSession(endpoint_url(live), settings, api_key, options)
