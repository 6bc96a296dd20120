"""Conversation items: a linked list with ``previous_item_id``, item checks, dialect shapes.

The conversation is a doubly linked list keyed by item id (reference §8): appending,
inserting after any item or at the head (``previous_item_id: "root"``) and deleting are
O(1), and deleting repairs the chain so the item after the deleted one now follows the
deleted one's predecessor.

Items are stored in the GA shape (assistant parts ``output_audio`` / ``output_text``); audio
is kept beside the item as raw bytes in the item's wire format, so events can leave it out
(the real GA server omits audio from ``conversation.item.added`` / ``done``) and
``conversation.item.retrieve`` can put it back as base64. :func:`render_item` writes an item
in the connection's dialect (beta items carry ``object`` and use ``audio`` / ``text``).
"""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..wire import decode_base64, duration_ms
from .errors import invalid_type, invalid_value, item_not_found, missing_parameter
from .session import Dialect

__all__ = ["Conversation", "StoredItem", "normalize_client_item", "render_item"]

ROOT = "root"

_GA_PARTS = {
    "system": ("input_text",),
    "user": ("input_text", "input_audio", "input_image"),
    "assistant": ("output_text",),  # assistant audio cannot be created by a client (reference §2)
}
_BETA_PARTS = {"system": ("input_text",), "user": ("input_text", "input_audio"), "assistant": ("text",)}
_TO_BETA_PART = {"output_audio": "audio", "output_text": "text"}
_FROM_BETA_PART = {"audio": "output_audio", "text": "output_text"}


@dataclass
class StoredItem:
    """One conversation item: its GA-shaped dict plus side data that never goes in events.

    ``audio`` maps a content index to raw audio bytes in ``audio_format`` ('pcm16',
    'g711_ulaw' or 'g711_alaw'); ``heard_text`` is what the responder reads for a user
    audio part (the recognised words), filled in when recognition finishes.
    """

    item: dict[str, Any]
    audio: dict[int, bytearray] = field(default_factory=dict)
    audio_format: str = "pcm16"
    heard_text: str | None = None
    response_id: str | None = None  # the response that produced it (assistant output)
    #: content index -> duration (ms) of audio released by :meth:`Conversation.keep_audio`
    released: dict[int, float] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.item["id"]

    def audio_ms(self, content_index: int = 0) -> float:
        """Duration of the audio of one content part, in milliseconds."""
        data = self.audio.get(content_index)
        if not data:
            return self.released.get(content_index, 0.0)
        return duration_ms(self.audio_format, len(data))

    def audio_bytes(self) -> int:
        """Bytes of audio this item still holds."""
        return sum(len(d) for d in self.audio.values())

    def release_audio(self) -> int:
        """Drop the item's audio, keeping each part's duration; the bytes freed."""
        freed = 0
        for index, data in self.audio.items():
            self.released[index] = duration_ms(self.audio_format, len(data))
            freed += len(data)
        self.audio = {}
        return freed


class Conversation:
    """The default conversation: items in order, addressed by id."""

    def __init__(self, conversation_id: str) -> None:
        self.id = conversation_id
        self._items: dict[str, StoredItem] = {}
        self._prev: dict[str, str | None] = {}
        self._next: dict[str, str | None] = {}
        self.head: str | None = None
        self.tail: str | None = None

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def __iter__(self) -> Iterator[StoredItem]:
        node = self.head
        while node is not None:
            yield self._items[node]
            node = self._next[node]

    def ids(self) -> list[str]:
        """Item ids from first to last."""
        return [s.id for s in self]

    def get(self, item_id: str, param: str = "item_id") -> StoredItem:
        """The item with ``item_id``; ClientEventError ``item_not_found`` if there is none."""
        try:
            return self._items[item_id]
        except (KeyError, TypeError):
            raise item_not_found(param, str(item_id)) from None

    def find(self, item_id: str) -> StoredItem | None:
        """The item with ``item_id``, or None."""
        return self._items.get(item_id)

    def previous_of(self, item_id: str) -> str | None:
        """The id of the item before ``item_id`` (None for the first item)."""
        return self._prev[item_id]

    def insert(self, stored: StoredItem, previous_item_id: str | None = None) -> str | None:
        """Add ``stored`` after ``previous_item_id`` (None: at the end; 'root': at the start).

        Returns the id of the item it now follows (None at the head). An unknown
        ``previous_item_id`` raises ``item_not_found`` and adds nothing.
        """
        item_id = stored.id
        if item_id in self._items:
            raise invalid_value("item.id", f"Item with id '{item_id}' already exists in the conversation.")
        if previous_item_id is None:
            after = self.tail
        elif previous_item_id == ROOT:
            after = None
        elif previous_item_id in self._items:
            after = previous_item_id
        else:
            raise item_not_found("previous_item_id", previous_item_id, "previous item")
        before = self.head if after is None else self._next[after]
        self._items[item_id] = stored
        self._prev[item_id], self._next[item_id] = after, before
        if after is None:
            self.head = item_id
        else:
            self._next[after] = item_id
        if before is None:
            self.tail = item_id
        else:
            self._prev[before] = item_id
        return after

    def keep_audio(self, max_ms: float) -> int:
        """Release the audio of all but the newest items holding ``max_ms`` of it; bytes freed.

        Walks back from the last item; once the newest items hold ``max_ms`` of audio, every
        older item's audio is released (its duration stays, for truncate and usage). The walk
        stops at the first older item with nothing to release, so each call costs the items
        that still hold audio, not the whole conversation.
        """
        kept_ms, freed, node = 0.0, 0, self.tail
        while node is not None:
            stored = self._items[node]
            node = self._prev[node]
            if not stored.audio:
                if stored.released and kept_ms >= max_ms:
                    break  # released before: so were the items before it
                continue
            if kept_ms >= max_ms:
                freed += stored.release_audio()
            else:
                kept_ms += sum(duration_ms(stored.audio_format, len(d)) for d in stored.audio.values())
        return freed

    def pop_oldest(self) -> StoredItem:
        """Remove and return the first item (the conversation is not empty)."""
        assert self.head is not None
        return self.delete(self.head)

    def delete(self, item_id: str) -> StoredItem:
        """Remove ``item_id`` and join its neighbours; ``item_not_found`` if it is unknown."""
        stored = self.get(item_id)
        before, after = self._prev.pop(item_id), self._next.pop(item_id)
        del self._items[item_id]
        if before is None:
            self.head = after
        else:
            self._next[before] = after
        if after is None:
            self.tail = before
        else:
            self._prev[after] = before
        return stored


def _b64(value: Any, param: str) -> bytes:
    if not isinstance(value, str):
        raise invalid_type(param, "a string", value)
    try:
        return decode_base64(value)
    except ValueError:
        raise invalid_value(param, f"Invalid '{param}': expected base64-encoded audio.") from None


def normalize_client_item(item: Any, dialect: Dialect, item_id: str, call_id: str) -> StoredItem:
    """Check a ``conversation.item.create`` item and return it in the stored GA shape.

    ``item_id`` and ``call_id`` are used when the client did not give them. Raises
    ClientEventError with the param path of the first problem found.
    """
    if item is None:
        raise missing_parameter("item")
    if not isinstance(item, dict):
        raise invalid_type("item", "an object", item)
    given_id = item.get("id")
    if given_id is not None and (not isinstance(given_id, str) or not given_id):
        raise invalid_type("item.id", "a non-empty string", given_id)
    kind = item.get("type")
    if kind is None:
        raise missing_parameter("item.type")
    out: dict[str, Any] = {"id": given_id or item_id, "type": kind, "status": "completed"}
    stored = StoredItem(out)
    if kind == "message":
        _normalize_message(item, dialect, stored)
    elif kind == "function_call":
        for key in ("name", "arguments"):
            if item.get(key) is None:
                raise missing_parameter(f"item.{key}")
            if not isinstance(item[key], str):
                raise invalid_type(f"item.{key}", "a string", item[key])
        out.update(name=item["name"], call_id=item.get("call_id") or call_id, arguments=item["arguments"])
    elif kind == "function_call_output":
        for key in ("call_id", "output"):
            if item.get(key) is None:
                raise missing_parameter(f"item.{key}")
            if not isinstance(item[key], str):
                raise invalid_type(f"item.{key}", "a string", item[key])
        out.update(call_id=item["call_id"], output=item["output"])
    else:
        raise invalid_value("item.type", f"Invalid value: '{kind}'. Supported values are: 'message', "
                            "'function_call' and 'function_call_output'.")
    return stored


def _normalize_message(item: dict[str, Any], dialect: Dialect, stored: StoredItem) -> None:
    role = item.get("role")
    if role is None:
        raise missing_parameter("item.role")
    allowed = (_GA_PARTS if dialect is Dialect.GA else _BETA_PARTS).get(role)
    if allowed is None:
        raise invalid_value("item.role", f"Invalid value: '{role}'. Supported values are: 'system', 'user' "
                            "and 'assistant'.")
    content = item.get("content")
    if content is None:
        raise missing_parameter("item.content")
    if not isinstance(content, list):
        raise invalid_type("item.content", "an array", content)
    parts = []
    for i, part in enumerate(content):
        p = f"item.content[{i}]"
        if not isinstance(part, dict):
            raise invalid_type(p, "an object", part)
        ptype = part.get("type")
        if ptype not in allowed:
            if role == "assistant" and ptype in ("output_audio", "audio"):
                raise invalid_value(f"{p}.type", "Assistant audio messages cannot be created; create an "
                                    f"assistant message with '{allowed[0]}' content instead.")
            listed = ", ".join(f"'{a}'" for a in allowed)
            raise invalid_value(f"{p}.type", f"Invalid value: '{ptype}'. Supported values for {role} "
                                f"messages are: {listed}.")
        ptype = _FROM_BETA_PART.get(ptype, ptype)
        if ptype in ("input_text", "output_text"):
            if part.get("text") is None:
                raise missing_parameter(f"{p}.text")
            if not isinstance(part["text"], str):
                raise invalid_type(f"{p}.text", "a string", part["text"])
            parts.append({"type": ptype, "text": part["text"]})
        elif ptype == "input_audio":
            transcript = part.get("transcript")
            if part.get("audio") is None and transcript is None:
                raise missing_parameter(f"{p}.audio")
            if part.get("audio") is not None:
                stored.audio[i] = bytearray(_b64(part["audio"], f"{p}.audio"))
            if transcript is not None and not isinstance(transcript, str):
                raise invalid_type(f"{p}.transcript", "a string", transcript)
            parts.append({"type": "input_audio", "transcript": transcript})
        else:  # input_image
            if not isinstance(part.get("image_url"), str):
                raise missing_parameter(f"{p}.image_url")
            parts.append({"type": "input_image", "image_url": part["image_url"], "detail": part.get("detail", "auto")})
    stored.item.update(role=role, content=parts)


def render_item(stored: StoredItem, dialect: Dialect, *, with_audio: bool = False) -> dict[str, Any]:
    """The item as it goes on the wire: GA or beta shape; base64 audio only if ``with_audio``."""
    item = copy.deepcopy(stored.item)
    if with_audio:
        for index, data in stored.audio.items():
            if index < len(item.get("content", ())):
                item["content"][index]["audio"] = base64.b64encode(bytes(data)).decode("ascii")
    if dialect is Dialect.BETA:
        item = {"id": item.pop("id"), "object": "realtime.item", **item}
        for part in item.get("content", ()):
            part["type"] = _TO_BETA_PART.get(part["type"], part["type"])
    return item

