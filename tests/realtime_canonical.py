"""Canonical Realtime API event sequences (reference appendix) and strict SDK validators for tests.

The four sequences are copied verbatim from ``reference/realtime-protocol-appendix/*.jsonl.txt``
(each line: ``S→C`` server event or ``C→S`` client event). The validators rebuild the
``openai`` SDK's client/server event unions as pydantic discriminated unions (reference
§6.3) with strict types; client events are also checked for fields unknown to the SDK at
any depth (the SDK models allow extras, and a typo in a field name must not pass).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Union, get_args

__all__ = ["BETA_VAD_TURN", "GA_BARGE_IN", "GA_FUNCTION_CALL", "GA_VAD_TURN", "client_events", "counter",
           "server_events", "strict_adapter", "validate_client_event", "validate_server_event"]


def _parse(text: str) -> list[tuple[str, dict[str, Any]]]:
    seq = []
    for line in text.strip().splitlines():
        who, _, payload = line.partition(" ")
        seq.append(("S" if who.startswith("S") else "C", json.loads(payload)))
    return seq


GA_VAD_TURN = _parse(r"""
S→C {"type":"input_audio_buffer.speech_started","event_id":"event_1","audio_start_ms":1236,"item_id":"item_U1"}
S→C {"type":"input_audio_buffer.speech_stopped","event_id":"event_2","audio_end_ms":3808,"item_id":"item_U1"}
S→C {"type":"input_audio_buffer.committed","event_id":"event_3","previous_item_id":null,"item_id":"item_U1"}
S→C {"type":"conversation.item.added","event_id":"event_4","previous_item_id":null,"item":{"id":"item_U1","type":"message","status":"completed","role":"user","content":[{"type":"input_audio","transcript":null}]}}
S→C {"type":"conversation.item.done","event_id":"event_5","previous_item_id":null,"item":{"id":"item_U1","type":"message","status":"completed","role":"user","content":[{"type":"input_audio","transcript":null}]}}
S→C {"type":"response.created","event_id":"event_6","response":{"object":"realtime.response","id":"resp_2","status":"in_progress","status_details":null,"output":[],"conversation_id":"conv_1","output_modalities":["audio"],"max_output_tokens":"inf","audio":{"output":{"format":{"type":"audio/pcm","rate":24000},"voice":"marin"}},"usage":null,"metadata":null}}
S→C {"type":"response.output_item.added","event_id":"event_7","response_id":"resp_2","output_index":0,"item":{"id":"item_A1","type":"message","status":"in_progress","role":"assistant","content":[]}}
S→C {"type":"conversation.item.added","event_id":"event_8","previous_item_id":"item_U1","item":{"id":"item_A1","type":"message","status":"in_progress","role":"assistant","content":[]}}
S→C {"type":"response.content_part.added","event_id":"event_9","response_id":"resp_2","item_id":"item_A1","output_index":0,"content_index":0,"part":{"type":"audio","transcript":""}}
S→C {"type":"response.output_audio_transcript.delta","event_id":"event_10","response_id":"resp_2","item_id":"item_A1","output_index":0,"content_index":0,"delta":"Hi","obfuscation":"x9"}
S→C {"type":"response.output_audio.delta","event_id":"event_11","response_id":"resp_2","item_id":"item_A1","output_index":0,"content_index":0,"delta":"AAAAAA=="}
S→C {"type":"response.output_audio_transcript.delta","event_id":"event_12","response_id":"resp_2","item_id":"item_A1","output_index":0,"content_index":0,"delta":" there!"}
S→C {"type":"response.output_audio.done","event_id":"event_13","response_id":"resp_2","item_id":"item_A1","output_index":0,"content_index":0}
S→C {"type":"response.output_audio_transcript.done","event_id":"event_14","response_id":"resp_2","item_id":"item_A1","output_index":0,"content_index":0,"transcript":"Hi there!"}
S→C {"type":"response.content_part.done","event_id":"event_15","response_id":"resp_2","item_id":"item_A1","output_index":0,"content_index":0,"part":{"type":"audio","transcript":"Hi there!"}}
S→C {"type":"response.output_item.done","event_id":"event_16","response_id":"resp_2","output_index":0,"item":{"id":"item_A1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_audio","transcript":"Hi there!"}]}}
S→C {"type":"conversation.item.done","event_id":"event_17","previous_item_id":"item_U1","item":{"id":"item_A1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_audio","transcript":"Hi there!"}]}}
S→C {"type":"rate_limits.updated","event_id":"event_18","rate_limits":[{"name":"tokens","limit":40000,"remaining":38490,"reset_seconds":2.265}]}
S→C {"type":"response.done","event_id":"event_19","response":{"object":"realtime.response","id":"resp_2","status":"completed","status_details":null,"output":[{"id":"item_A1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_audio","transcript":"Hi there!"}]}],"conversation_id":"conv_1","output_modalities":["audio"],"max_output_tokens":"inf","audio":{"output":{"format":{"type":"audio/pcm","rate":24000},"voice":"marin"}},"usage":{"total_tokens":253,"input_tokens":132,"output_tokens":121,"input_token_details":{"text_tokens":119,"audio_tokens":13,"image_tokens":0,"cached_tokens":64,"cached_tokens_details":{"text_tokens":64,"audio_tokens":0,"image_tokens":0}},"output_token_details":{"text_tokens":30,"audio_tokens":91}},"metadata":null}}
S→C {"type":"conversation.item.input_audio_transcription.completed","event_id":"event_20","item_id":"item_U1","content_index":0,"transcript":"Hello?","usage":{"type":"tokens","total_tokens":22,"input_tokens":13,"input_token_details":{"text_tokens":0,"audio_tokens":13},"output_tokens":9}}
""")

GA_FUNCTION_CALL = _parse(r"""
C→S {"type":"session.update","session":{"type":"realtime","tools":[{"type":"function","name":"get_weather","description":"Weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}],"tool_choice":"auto"}}
S→C {"type":"session.updated","event_id":"event_30","session":{"type":"realtime","object":"realtime.session","id":"sess_1","model":"gpt-realtime","output_modalities":["audio"],"tools":[],"tool_choice":"auto"}}
S→C {"type":"response.created","event_id":"event_31","response":{"object":"realtime.response","id":"resp_3","status":"in_progress","status_details":null,"output":[],"conversation_id":"conv_1","output_modalities":["audio"],"max_output_tokens":"inf","audio":{"output":{"format":{"type":"audio/pcm","rate":24000},"voice":"marin"}},"usage":null,"metadata":null}}
S→C {"type":"response.output_item.added","event_id":"event_32","response_id":"resp_3","output_index":0,"item":{"id":"item_F1","type":"function_call","status":"in_progress","name":"get_weather","call_id":"call_abc","arguments":""}}
S→C {"type":"conversation.item.added","event_id":"event_33","previous_item_id":"item_U2","item":{"id":"item_F1","type":"function_call","status":"in_progress","name":"get_weather","call_id":"call_abc","arguments":""}}
S→C {"type":"response.function_call_arguments.delta","event_id":"event_34","response_id":"resp_3","item_id":"item_F1","output_index":0,"call_id":"call_abc","delta":"{\"city\":"}
S→C {"type":"response.function_call_arguments.delta","event_id":"event_35","response_id":"resp_3","item_id":"item_F1","output_index":0,"call_id":"call_abc","delta":"\"Paris\"}"}
S→C {"type":"response.function_call_arguments.done","event_id":"event_36","response_id":"resp_3","item_id":"item_F1","output_index":0,"call_id":"call_abc","name":"get_weather","arguments":"{\"city\":\"Paris\"}"}
S→C {"type":"response.output_item.done","event_id":"event_37","response_id":"resp_3","output_index":0,"item":{"id":"item_F1","type":"function_call","status":"completed","name":"get_weather","call_id":"call_abc","arguments":"{\"city\":\"Paris\"}"}}
S→C {"type":"conversation.item.done","event_id":"event_38","previous_item_id":"item_U2","item":{"id":"item_F1","type":"function_call","status":"completed","name":"get_weather","call_id":"call_abc","arguments":"{\"city\":\"Paris\"}"}}
S→C {"type":"response.done","event_id":"event_39","response":{"object":"realtime.response","id":"resp_3","status":"completed","status_details":null,"output":[{"id":"item_F1","type":"function_call","status":"completed","name":"get_weather","call_id":"call_abc","arguments":"{\"city\":\"Paris\"}"}],"conversation_id":"conv_1","output_modalities":["audio"],"max_output_tokens":"inf","audio":{"output":{"format":{"type":"audio/pcm","rate":24000},"voice":"marin"}},"usage":{"total_tokens":253,"input_tokens":132,"output_tokens":121,"input_token_details":{"text_tokens":119,"audio_tokens":13,"image_tokens":0,"cached_tokens":64,"cached_tokens_details":{"text_tokens":64,"audio_tokens":0,"image_tokens":0}},"output_token_details":{"text_tokens":30,"audio_tokens":91}},"metadata":null}}
C→S {"type":"conversation.item.create","item":{"type":"function_call_output","call_id":"call_abc","output":"{\"temp_c\":21}"}}
S→C {"type":"conversation.item.added","event_id":"event_40","previous_item_id":"item_F1","item":{"id":"item_O1","type":"function_call_output","call_id":"call_abc","output":"{\"temp_c\":21}"}}
S→C {"type":"conversation.item.done","event_id":"event_41","previous_item_id":"item_F1","item":{"id":"item_O1","type":"function_call_output","call_id":"call_abc","output":"{\"temp_c\":21}"}}
C→S {"type":"response.create"}
S→C {"type":"response.created","event_id":"event_42","response":{"object":"realtime.response","id":"resp_4","status":"in_progress","status_details":null,"output":[],"conversation_id":"conv_1","output_modalities":["audio"],"max_output_tokens":"inf","audio":{"output":{"format":{"type":"audio/pcm","rate":24000},"voice":"marin"}},"usage":null,"metadata":null}}
""")

GA_BARGE_IN = _parse(r"""
S→C {"type":"input_audio_buffer.speech_started","event_id":"event_50","audio_start_ms":20100,"item_id":"item_U3"}
C→S {"type":"response.cancel"}
C→S {"type":"conversation.item.truncate","item_id":"item_A1","content_index":0,"audio_end_ms":1500}
S→C {"type":"response.output_audio.done","event_id":"event_51","response_id":"resp_2","item_id":"item_A1","output_index":0,"content_index":0}
S→C {"type":"response.output_audio_transcript.done","event_id":"event_52","response_id":"resp_2","item_id":"item_A1","output_index":0,"content_index":0,"transcript":"Hi there! Let me tell"}
S→C {"type":"response.content_part.done","event_id":"event_53","response_id":"resp_2","item_id":"item_A1","output_index":0,"content_index":0,"part":{"type":"audio","transcript":"Hi there! Let me tell"}}
S→C {"type":"response.output_item.done","event_id":"event_54","response_id":"resp_2","output_index":0,"item":{"id":"item_A1","type":"message","status":"incomplete","role":"assistant","content":[{"type":"output_audio","transcript":"Hi there!"}]}}
S→C {"type":"conversation.item.done","event_id":"event_55","previous_item_id":"item_U1","item":{"id":"item_A1","type":"message","status":"incomplete","role":"assistant","content":[{"type":"output_audio","transcript":"Hi there!"}]}}
S→C {"type":"response.done","event_id":"event_56","response":{"object":"realtime.response","id":"resp_2","status":"cancelled","status_details":{"type":"cancelled","reason":"turn_detected"},"output":[{"id":"item_A1","type":"message","status":"incomplete","role":"assistant","content":[{"type":"output_audio","transcript":"Hi there!"}]}],"conversation_id":"conv_1","output_modalities":["audio"],"max_output_tokens":"inf","audio":{"output":{"format":{"type":"audio/pcm","rate":24000},"voice":"marin"}},"usage":{"total_tokens":253,"input_tokens":132,"output_tokens":121,"input_token_details":{"text_tokens":119,"audio_tokens":13,"image_tokens":0,"cached_tokens":64,"cached_tokens_details":{"text_tokens":64,"audio_tokens":0,"image_tokens":0}},"output_token_details":{"text_tokens":30,"audio_tokens":91}},"metadata":null}}
S→C {"type":"error","event_id":"event_57","error":{"type":"invalid_request_error","code":"response_cancel_not_active","message":"Cancellation failed: no active response found","param":null,"event_id":null}}
S→C {"type":"conversation.item.truncated","event_id":"event_58","item_id":"item_A1","content_index":0,"audio_end_ms":1500}
S→C {"type":"input_audio_buffer.speech_stopped","event_id":"event_59","audio_end_ms":21900,"item_id":"item_U3"}
S→C {"type":"input_audio_buffer.committed","event_id":"event_60","previous_item_id":"item_A1","item_id":"item_U3"}
""")

BETA_VAD_TURN = _parse(r"""
S→C {"type":"input_audio_buffer.speech_started","event_id":"event_1","audio_start_ms":1236,"item_id":"item_U1"}
S→C {"type":"input_audio_buffer.speech_stopped","event_id":"event_2","audio_end_ms":3808,"item_id":"item_U1"}
S→C {"type":"input_audio_buffer.committed","event_id":"event_3","previous_item_id":null,"item_id":"item_U1"}
S→C {"type":"conversation.item.created","event_id":"event_4","previous_item_id":null,"item":{"id":"item_U1","object":"realtime.item","type":"message","status":"completed","role":"user","content":[{"type":"input_audio","transcript":null}]}}
S→C {"type":"response.created","event_id":"event_5","response":{"id":"resp_2","object":"realtime.response","status":"in_progress","status_details":null,"output":[],"usage":null}}
S→C {"type":"rate_limits.updated","event_id":"event_6","rate_limits":[{"name":"requests","limit":1000,"remaining":999,"reset_seconds":0.06},{"name":"tokens","limit":50000,"remaining":49950,"reset_seconds":0.06}]}
S→C {"type":"response.output_item.added","event_id":"event_7","response_id":"resp_2","output_index":0,"item":{"id":"item_A1","object":"realtime.item","type":"message","status":"in_progress","role":"assistant","content":[]}}
S→C {"type":"conversation.item.created","event_id":"event_8","previous_item_id":"item_U1","item":{"id":"item_A1","object":"realtime.item","type":"message","status":"in_progress","role":"assistant","content":[]}}
S→C {"type":"response.content_part.added","event_id":"event_9","response_id":"resp_2","item_id":"item_A1","output_index":0,"content_index":0,"part":{"type":"audio","transcript":""}}
S→C {"type":"response.audio_transcript.delta","event_id":"event_10","response_id":"resp_2","item_id":"item_A1","output_index":0,"content_index":0,"delta":"Hi there!"}
S→C {"type":"response.audio.delta","event_id":"event_11","response_id":"resp_2","item_id":"item_A1","output_index":0,"content_index":0,"delta":"AAAAAA=="}
S→C {"type":"response.audio.done","event_id":"event_12","response_id":"resp_2","item_id":"item_A1","output_index":0,"content_index":0}
S→C {"type":"response.audio_transcript.done","event_id":"event_13","response_id":"resp_2","item_id":"item_A1","output_index":0,"content_index":0,"transcript":"Hi there!"}
S→C {"type":"response.content_part.done","event_id":"event_14","response_id":"resp_2","item_id":"item_A1","output_index":0,"content_index":0,"part":{"type":"audio","transcript":"Hi there!"}}
S→C {"type":"response.output_item.done","event_id":"event_15","response_id":"resp_2","output_index":0,"item":{"id":"item_A1","object":"realtime.item","type":"message","status":"completed","role":"assistant","content":[{"type":"audio","transcript":"Hi there!"}]}}
S→C {"type":"response.done","event_id":"event_16","response":{"id":"resp_2","object":"realtime.response","status":"completed","status_details":null,"output":[{"id":"item_A1","object":"realtime.item","type":"message","status":"completed","role":"assistant","content":[{"type":"audio","transcript":"Hi there!"}]}],"usage":{"total_tokens":253,"input_tokens":132,"output_tokens":121,"input_token_details":{"text_tokens":119,"audio_tokens":13,"image_tokens":0,"cached_tokens":64,"cached_tokens_details":{"text_tokens":64,"audio_tokens":0,"image_tokens":0}},"output_token_details":{"text_tokens":30,"audio_tokens":91}}}}
""")



def server_events(seq: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The server -> client events of a sequence (deep copies)."""
    return [json.loads(json.dumps(ev)) for who, ev in seq if who == "S"]


def client_events(seq: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The client -> server events of a sequence."""
    return [ev for who, ev in seq if who == "C"]


def counter(prefix: str):
    """An id generator: prefix_1, prefix_2, ..."""
    n = 0

    def new_id() -> str:
        nonlocal n
        n += 1
        return f"{prefix}_{n}"

    return new_id


_ADAPTERS: dict[str, Any] = {}


def strict_adapter(which: str):
    """TypeAdapter over the SDK union ``which`` in ga-client, ga-server, beta-client, beta-server."""
    if which not in _ADAPTERS:
        from pydantic import Field, TypeAdapter

        if which == "ga-client":
            from openai.types.realtime.realtime_client_event import (
                RealtimeClientEvent as union,
            )
        elif which == "ga-server":
            from openai.types.realtime.realtime_server_event import (
                RealtimeServerEvent as union,
            )
        elif which == "beta-client":
            from openai.types.beta.realtime.realtime_client_event import (
                RealtimeClientEvent as union,
            )
        else:
            from openai.types.beta.realtime.realtime_server_event import (
                RealtimeServerEvent as union,
            )
        members = get_args(get_args(union)[0])
        _ADAPTERS[which] = TypeAdapter(Annotated[Union[members], Field(discriminator="type")])
    return _ADAPTERS[which]


def _extras(value: Any, path: str) -> list[str]:
    from pydantic import BaseModel

    found: list[str] = []
    if isinstance(value, BaseModel):
        for key in (value.__pydantic_extra__ or {}):
            found.append(f"{path}.{key}")
        for key in type(value).model_fields:
            found += _extras(getattr(value, key), f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found += _extras(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            found += _extras(v, f"{path}.{k}")
    return found


def _validate(which: str, event: dict[str, Any]):
    model = strict_adapter(which).validate_python(event, strict=True)
    # servers may add fields (obfuscation, object, ...: reference §6.3 c); a client must not
    extras = _extras(model, event.get("type", "?")) if which.endswith("client") else []
    if extras:
        raise AssertionError(f"fields unknown to the SDK's {which} union: {', '.join(extras)}")
    return model


def validate_client_event(event: dict[str, Any], dialect: str = "ga"):
    """Validate a client event strictly against the SDK (GA or beta); raises on any drift."""
    return _validate(f"{dialect}-client", event)


def validate_server_event(event: dict[str, Any], dialect: str = "ga"):
    """Validate a server event strictly against the SDK (GA or beta); raises on any drift."""
    return _validate(f"{dialect}-server", event)
