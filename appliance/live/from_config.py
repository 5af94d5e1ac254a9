"""The Live session as the config describes it.

One place turns `[live]` settings into `SessionSettings` and `SessionOptions`, so the
daemon, `ask`, the demo and `doctor` all open the same session.
"""

from __future__ import annotations

import logging

from appliance.live import messages as p
from appliance.live.connection import LiveSession, SessionOptions
from appliance.live.endpoint import endpoint_url
from appliance.live.profiles import profile_for
from appliance.settings.schema import Config
from appliance.settings.secrets import Secret

log = logging.getLogger(__name__)


def session_settings(
    cfg: Config,
    *,
    functions: tuple[dict, ...] = (),
    function_source: p.FunctionSource | None = None,
    google_search: bool = False,
) -> p.SessionSettings:
    """What `setup` asks for, as the config says; `function_source` is asked again at each setup."""
    live = cfg.live
    return p.SessionSettings(
        model=live.model,
        voice=live.voice,
        language=live.language,
        system_instruction=live.system_instruction,
        input_transcription=live.input_transcription,
        output_transcription=live.output_transcription,
        compression_trigger_tokens=live.compression_trigger_tokens,
        compression_target_tokens=live.compression_target_tokens,
        functions=functions,
        function_source=function_source,
        google_search=google_search,
    )


def session_from_config(
    cfg: Config,
    api_key: Secret | None,
    *,
    functions: tuple[dict, ...] = (),
    function_source: p.FunctionSource | None = None,
    google_search: bool = False,
) -> LiveSession:
    """The session as the config describes it; the daemon adds its tools' declarations
    (`functions`, fixed) and the MCP servers' (`function_source`, asked at each setup)."""
    live = cfg.live
    options = SessionOptions(
        setup_timeout_s=live.setup_timeout_s,
        keepalive_interval_s=live.keepalive_interval_s,
        keepalive_timeout_s=live.keepalive_timeout_s,
        auth=live.auth,
        reply_timeout_s=live.reply_timeout_s,
    )
    settings = session_settings(cfg, functions=functions, function_source=function_source,
                                google_search=google_search)
    return LiveSession(endpoint_url(live), settings, api_key, options)


def use_for_next_session(session: LiveSession, settings: p.SessionSettings) -> None:
    """The next `setup` asks for `settings` (a reload); the caller starts the new conversation.

    The connection in use keeps what it was set up with: the service takes these only in setup.
    """
    session.settings = settings
    session.profile = profile_for(settings.model)
    if not session.profile.known:
        log.warning("model %s is new to this version: the next session sends only the fields every "
                    "Live model accepts", session.profile.name)
