"""Tools without rules: a session's declared tools, heard, chosen and filled from speech.

Theory of operation
-------------------
A model reads a tool's name, description and JSON schema and knows when to call it and with
what. The local model does a small, predictable version of that, in three pure steps:

1. **Hear** (:func:`tools_corpus`). Each tool is spelled out as sentences::

       [lead] carrier [preposition value parameter-name] ...

   ``lead`` is a polite opening ("can you", "i'd like to", "what is"); ``carrier`` comes
   from the tool's name ("book table" -> "book a table") and the first clause of its
   description; values come from the parameter's schema: numbers as words for integers,
   clock times for a time, spoken enum values (``"MSFT"`` -> "m s f t"),
   ``examples``/``default`` values, and proper names from the session instructions for
   free strings. The sentences, with the rules' examples, train the session's bigram
   model (:class:`processors.speech.sphinx.Grammar`), and the recogniser falls back to
   the general English model for speech that fits none of it.
2. **Choose** (:meth:`ToolMatcher.match`). Each tool scores the transcript's words
   against its name (weight 3), its description (1) and its parameters' names and values
   (1.5); stop words score nothing. The best tool with at least :data:`MIN_SCORE` wins.
3. **Fill**. Arguments are read from the transcript by type: enum values, clock times,
   known string values, numbers near the parameter's name, a leftover phrase for one free
   string; then converted and validated against the schema (``rules.schema_errors``). A
   required argument that is still missing becomes a spoken question
   (:class:`AskBack`), whose answer :meth:`ToolMatcher.complete` reads.

:func:`describe_result` is the other end: a sentence a person would say from whatever fields
a tool's output has ("The stock price of MSFT is 412.5 dollars.").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .rules import Call, _coerce, _tool_name, _types, normalize_transcript, schema_errors

__all__ = ["AskBack", "MIN_SCORE", "ToolMatcher", "describe_result", "number_words", "parse_number",
           "tools_corpus"]

#: A tool needs this score to be chosen (a name word is 3, an enum value 2, a description word 1).
MIN_SCORE = 2.0

_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
          "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_VALUE = {w: i for i, w in enumerate(_UNITS)} | {w: 10 + i for i, w in enumerate(_TEENS)} | {
    w: 10 * i for i, w in enumerate(_TENS) if w}

STOP = frozenset("""a an the of to in on at for with by from and or is are be it its this that me my i you your
    we our can could would will please want like i'd what's what how much many tell give show get set do does
    some any there here now just need let let's about as into up current""".split())
_PREPS = "for | at | of | in | to | on | with | by | called | named | about"
_LEADS = ("please | can you | could you | would you | i want to | i would like to | i'd like to | i want | "
          "i'd like | what is | what's | how much is | tell me | give me | show me | let's")
_ACTION_VERBS = {"get", "fetch", "lookup", "look", "check", "find", "show", "read", "query", "search", "list"}
#: First words of a tool name that make it an action (its result is spoken as "Done: ...").
_DOING_VERBS = {"set", "book", "create", "send", "add", "make", "start", "stop", "cancel", "delete", "remove",
                "update", "play", "pause", "order", "schedule", "reserve", "turn", "open", "close", "call", "save",
                "buy", "sell", "move", "lock", "unlock", "enable", "disable", "reset", "transfer", "pay", "post"}


def number_words(n: int) -> str:
    """``n`` (0..999) in words, as the recogniser's dictionary spells them ("forty five")."""
    if n < 10:
        return _UNITS[n]
    if n < 20:
        return _TEENS[n - 10]
    if n < 100:
        tens, units = divmod(n, 10)
        return _TENS[tens] + (f" {_UNITS[units]}" if units else "")
    hundreds, rest = divmod(n, 100)
    return f"{_UNITS[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")


def parse_number(words: list[str], start: int = 0) -> tuple[int, int] | None:
    """The number spoken at ``words[start:]`` as (value, words used), or None ("twenty five", "4")."""
    i, total, current, used = start, 0, None, 0
    while i < len(words):
        w = words[i]
        if w.isdigit():
            return (int(w), 1) if current is None else None if used == 0 else (total + current, used)
        if w in ("a", "one") and i + 1 < len(words) and words[i + 1] == "hundred" and current is None:
            current = 1
        elif w == "hundred" and current is not None and current < 10:
            current *= 100
        elif w in _VALUE:
            v = _VALUE[w]
            if current is None:
                current = v
            elif current % 100 == 0 and current >= 100 and v < 100:
                current += v
            elif current >= 20 and current % 10 == 0 and v < 10 and current % 100 != 0:
                current += v
            else:
                break
        elif w == "and" and current is not None and current >= 100:
            pass
        else:
            break
        i += 1
        used = i - start
    if current is None:
        return None
    while used and words[start + used - 1] in ("and", "a"):
        used -= 1
    return total + current, used


# --- reading a tool's schema ---------------------------------------------------------------------


@dataclass
class _Param:
    name: str
    schema: dict[str, Any]
    required: bool
    kind: str  # "enum", "integer", "number", "boolean", "time", "string"
    values: dict[str, Any] = field(default_factory=dict)  # spoken form -> JSON value
    name_words: list[str] = field(default_factory=list)


@dataclass
class _Tool:
    name: str
    schema: dict[str, Any]
    description: str
    carriers: list[str]
    params: list[_Param]
    keywords: dict[str, float]


def _spoken_forms(value: Any) -> list[str]:
    text = str(value)
    forms = []
    words = normalize_transcript(re.sub(r"[_\-/]", " ", text))
    if words:
        forms.append(words)
    if re.fullmatch(r"[A-Z]{2,6}", text):  # a ticker, a code: spelled out
        forms.append(" ".join(text.lower()))
    return forms


def _names_in(instructions: str) -> list[str]:
    """Proper names in free text: runs of capitalised words not at a sentence start."""
    names = []
    for sentence in re.split(r"[.!?;\n]+", instructions):
        words = sentence.split()
        run: list[str] = []
        for i, w in enumerate(words + [""]):
            clean = w.strip(",()\"")
            after_colon = i > 0 and words[i - 1].endswith(":")
            if i > 0 and clean[:1].isupper() and (clean.lower() not in STOP or after_colon):
                run.append(clean)
                if w.endswith(","):  # "Alice, Bob and Carol": a list of names
                    names.append(" ".join(run))
                    run = []
            else:
                if run:
                    names.append(" ".join(run))
                run = []
    return list(dict.fromkeys(names))


def _is_time(name: str, schema: dict[str, Any]) -> bool:
    text = f"{name} {schema.get('description', '')}".lower()
    return schema.get("format") in ("time", "date-time") or bool(re.search(r"\btime\b|\bwhen\b|o'clock", text))


def _param(name: str, schema: dict[str, Any], required: bool, names: list[str]) -> _Param:
    schema = schema if isinstance(schema, dict) else {}
    types = _types(schema)
    p = _Param(name, schema, required, "string", name_words=normalize_transcript(name.replace("_", " ")).split())
    if isinstance(schema.get("enum"), list):
        p.kind = "enum"
        options = schema["enum"]
    elif types & {"integer"}:
        p.kind = "integer"
        options = []
    elif types & {"number"}:
        p.kind = "number"
        options = []
    elif types & {"boolean"}:
        p.kind = "boolean"
        options = []
    elif _is_time(name, schema):
        p.kind = "time"
        options = []
    else:
        options = list(schema.get("examples") or [])
        if "default" in schema:
            options.append(schema["default"])
        described = re.search(r"\b(?:e\.g\.|for example|such as|like)\s*:?\s*(.+)", schema.get("description", ""))
        if described:
            options += [o.strip(" .\"'") for o in re.split(r",|\bor\b", described.group(1)) if o.strip(" .\"'")]
        options += names
    for option in options:
        for form in _spoken_forms(option):
            p.values.setdefault(form, option)
    return p


def _carriers(name_words: list[str], description: str) -> list[str]:
    out = []
    if name_words:
        out.append(" ".join(name_words))
        if len(name_words) >= 2:
            head, rest = name_words[0], " ".join(name_words[1:])
            out += [f"{head} a {rest}", f"{head} the {rest}", f"{head} my {rest}"]
            if head in _ACTION_VERBS:
                out += [rest, f"the {rest}", f"a {rest}"]
    clause = re.split(r"[.,;:(]| for | at | of | in | with | by | to ", " " + description.lower() + " ")[0]
    clause = normalize_transcript(clause)
    if clause and len(clause.split()) <= 6:
        out.append(clause)
        first, _, rest = clause.partition(" ")
        if first in _ACTION_VERBS and rest:
            out.append(rest)
    return list(dict.fromkeys(c for c in out if c))


def _read_tool(tool: dict[str, Any], names: list[str]) -> _Tool | None:
    name = _tool_name(tool)
    if not name:
        return None
    tool = tool["function"] if isinstance(tool.get("function"), dict) else tool
    schema = tool.get("parameters") or {"type": "object", "properties": {}}
    required = set(schema.get("required") or [])
    params = [_param(n, s, n in required, names) for n, s in (schema.get("properties") or {}).items()]
    description = str(tool.get("description") or "")
    name_words = normalize_transcript(name.replace("_", " ")).split()
    keywords: dict[str, float] = {}

    def add(words: list[str], weight: float) -> None:
        for w in words:
            if w not in STOP and len(w) > 1:
                keywords[w] = max(keywords.get(w, 0.0), weight)
                if w.endswith("s") and len(w) > 3:
                    keywords.setdefault(w[:-1], weight)
                else:
                    keywords.setdefault(w + "s", weight)

    add(normalize_transcript(description).split(), 1.0)
    for p in params:
        add(p.name_words, 1.5)
        if p.kind == "enum":
            add([w for form in p.values for w in form.split() if len(w) > 1], 2.0)
    add(name_words, 3.0)
    return _Tool(name, schema, description, _carriers(name_words, description), params, keywords)


# --- hearing: the grammar -------------------------------------------------------------------------

_LEAD_WORDS = ("please", "can you", "could you", "i want to", "i would like to", "i'd like to", "what is",
               "tell me", "show me", "how much is")
_PREP_WORDS = ("for", "at", "of", "in", "to", "on", "with", "into", "by", "called")
_CLOCKS = tuple(f"{number_words(h)}{m}{s}" for h in range(1, 13) for m in ("", " o'clock", " fifteen", " thirty",
                                                                           " forty five")
                for s in ("", " am", " pm")) + ("noon", "midnight")


def tools_corpus(tools: list[dict[str, Any]], instructions: str = "") -> list[str]:
    """Sentences a user of these ``tools`` may say, to train the session's recogniser model.

    Every carrier phrase (from the tool's name and description) with every parameter's
    values after every preposition and before its name, plus whole requests with all
    arguments, the descriptions themselves and the instructions' sentences. A bigram
    model of these hears new phrasings of the same words; proper names in
    ``instructions`` become values of free string parameters.
    """
    import random

    rng = random.Random(0)  # the same tools give the same corpus (and grammar key)
    names = _names_in(instructions)
    out: list[str] = []
    for raw in tools:
        tool = _read_tool(raw, names) if isinstance(raw, dict) else None
        if tool is None:
            continue
        out.append(normalize_transcript(tool.description))
        slots = [(p, _values_said(p)) for p in tool.params]
        for carrier in tool.carriers:
            out.append(carrier)
            out += [f"{lead} {carrier}" for lead in _LEAD_WORDS]
            for p, values in slots:
                pname = " ".join(p.name_words)
                for value in values:
                    out.append(f"{carrier} {pname} {value}")
                    out += [f"{carrier} {prep} {value} {pname}" for prep in rng.sample(_PREP_WORDS, 3)]
                    out.append(f"{carrier} {rng.choice(_PREP_WORDS)} the {value}")
            for _ in range(20):  # whole requests, arguments in the declared and in random order
                parts = [f"{rng.choice(_PREP_WORDS)} {rng.choice(values)} {' '.join(p.name_words)}"
                         for p, values in slots if values]
                if rng.random() < 0.5:
                    rng.shuffle(parts)
                out.append(" ".join([rng.choice(_LEAD_WORDS), carrier, *parts]))
    out += [normalize_transcript(sentence) for sentence in re.split(r"[.!?\n]+", instructions)]
    return [line for line in out if line]


def _values_said(p: _Param) -> list[str]:
    if p.kind in ("integer", "number"):
        return [number_words(n) for n in range(1, 101)]
    if p.kind == "time":
        return list(_CLOCKS)
    if p.kind == "boolean":
        return ["yes", "no", "true", "false", "on", "off"]
    return list(p.values)


# --- choosing and filling -------------------------------------------------------------------------


@dataclass(frozen=True)
class AskBack:
    """A required argument is missing: speak ``question``; :meth:`ToolMatcher.complete` reads the answer."""

    question: str
    name: str
    arguments: dict[str, Any]
    missing: str


class ToolMatcher:
    """Chooses the declared tool an utterance asks for and fills its arguments from it.

    Build one per set of tools (cheap); :meth:`match` a transcript to get a
    :class:`~.rules.Call`, an :class:`AskBack` or None (no tool fits).
    """

    def __init__(self, tools: list[dict[str, Any]], instructions: str = "") -> None:
        names = _names_in(instructions)
        self.tools = [t for t in (_read_tool(raw, names) for raw in tools if isinstance(raw, dict)
                                  and raw.get("type", "function") == "function") if t is not None]

    def scores(self, transcript: str) -> dict[str, float]:
        """Each tool's score for ``transcript`` (see the module docstring)."""
        words = normalize_transcript(transcript).split()
        return {t.name: sum(t.keywords.get(w, 0.0) for w in dict.fromkeys(words)) for t in self.tools}

    def match(self, transcript: str) -> Call | AskBack | None:
        """The call ``transcript`` asks for, a question for a missing argument, or None."""
        scores = self.scores(transcript)
        if not scores:
            return None
        best = max(self.tools, key=lambda t: scores[t.name])
        if scores[best.name] < MIN_SCORE:
            return None
        return self._fill(best, normalize_transcript(transcript).split(), {})

    def complete(self, ask: AskBack, transcript: str) -> Call | AskBack | None:
        """Read the answer to ``ask`` ("seven pm", "four"); None when it does not answer it."""
        tool = next((t for t in self.tools if t.name == ask.name), None)
        if tool is None:
            return None
        words = normalize_transcript(transcript).split()
        param = next(p for p in tool.params if p.name == ask.missing)
        used: set[int] = set()
        value = _read_value(param, words, used, bare=True)
        if value is None:
            return None
        return self._fill(tool, words, {**ask.arguments, param.name: value}, used)

    def _fill(self, tool: _Tool, words: list[str], given: dict[str, Any],
              used: set[int] | None = None) -> Call | AskBack:
        used = set() if used is None else used
        arguments = dict(given)
        order = sorted(tool.params, key=lambda p: ["enum", "time", "boolean", "string", "integer", "number"].index(p.kind))
        for p in order:
            if p.name in arguments:
                continue
            value = _read_value(p, words, used, bare=False, carriers=tool)
            if value is not None:
                arguments[p.name] = value
        arguments = _coerce(arguments, tool.schema)
        problems = [e for e in schema_errors(arguments, tool.schema) if not e.endswith("is required")]
        missing = [p for p in tool.params if p.required and p.name not in arguments]
        if problems:
            bad = next((p for p in tool.params if any(e.startswith(p.name) for e in problems)), None)
            if bad is not None:
                arguments.pop(bad.name, None)
                missing.insert(0, bad)
        if missing:
            p = missing[0]
            return AskBack(_question(tool, p), tool.name, arguments, p.name)
        return Call(tool.name, arguments)


def _question(tool: _Tool, p: _Param) -> str:
    what = " ".join(p.name_words)
    subject = _subject(tool.name)
    if p.kind == "enum":
        options = list(dict.fromkeys(str(v) for v in p.values.values()))
        return f"Which {what} for the {subject}: {', '.join(options[:-1])} or {options[-1]}?" if len(options) > 1 \
            else f"Which {what} for the {subject}?"
    if p.kind == "time":
        return f"For what time should I {_action(tool.name)}?"
    if p.kind in ("integer", "number"):
        return f"How many {what} for the {subject}?"
    return f"What {what} should I use for the {subject}?"


def _find_phrase(words: list[str], phrase: list[str], used: set[int]) -> int | None:
    n = len(phrase)
    for i in range(len(words) - n + 1):
        if words[i:i + n] == phrase and not used.intersection(range(i, i + n)):
            return i
    return None


_CLOCK = re.compile(r"\b(?:(half|quarter) past (\w+)|quarter to (\w+)|(noon|midnight)|(\w+)(?: (o'clock|oh \w+|"
                    r"(?:twenty|thirty|forty|fifty)(?: \w+)?|fifteen|ten|eleven|twelve|thirteen|fourteen|sixteen|"
                    r"seventeen|eighteen|nineteen|\d{2}))?(?: (am|pm|in the morning|in the evening|tonight))?)\b")


def _read_time(words: list[str], used: set[int], bare: bool) -> tuple[str, int, int] | None:
    """A clock time in ``words``: ("7:30 pm", first word, words used)."""
    for i in range(len(words)):
        if i in used:
            continue
        w = words[i]
        if w in ("noon", "midnight"):
            return ("12:00 pm" if w == "noon" else "12:00 am"), i, 1
        if w in ("half", "quarter") and i + 2 < len(words) and words[i + 1] in ("past", "to"):
            hour = parse_number(words, i + 2)
            if hour and 1 <= hour[0] <= 12:
                h, m = hour[0], 30 if w == "half" else 15
                if words[i + 1] == "to":
                    h, m = (h - 1) or 12, 45
                n = 2 + hour[1]
                suffix, k = _ampm(words, i + n)
                return f"{h}:{m:02d}{suffix}", i, n + k
        hour = parse_number(words, i)
        if not hour or not 1 <= hour[0] <= 12 or hour[1] != 1:
            continue
        j = i + 1
        minute = 0
        if j < len(words) and words[j] == "o'clock":
            j += 1
        elif j + 1 < len(words) and words[j] == "oh" and words[j + 1] in _VALUE and _VALUE[words[j + 1]] < 10:
            minute, j = _VALUE[words[j + 1]], j + 2
        else:
            m = parse_number(words, j)
            if m and 10 <= m[0] < 60:
                minute, j = m[0], j + m[1]
        suffix, k = _ampm(words, j)
        # a bare hour is a time only when it says so (o'clock, am/pm, minutes) or follows "at"
        if j == i + 1 and not k and not (i > 0 and words[i - 1] == "at") and not bare:
            continue
        return f"{hour[0]}:{minute:02d}{suffix}", i, j - i + k
    return None


def _ampm(words: list[str], j: int) -> tuple[str, int]:
    if j < len(words) and words[j] in ("am", "pm"):
        return f" {words[j]}", 1
    if words[j:j + 3] in (["in", "the", "morning"], ["in", "the", "evening"]):
        return (" am" if words[j + 2] == "morning" else " pm"), 3
    if j < len(words) and words[j] == "tonight":
        return " pm", 1
    return "", 0


def _spelled_enum(p: _Param, words: list[str], used: set[int]) -> Any:
    """An enum value spelled in letters, allowing one letter misheard ("a p l" -> AAPL)."""
    import difflib

    runs, run = [], []
    for i, w in enumerate(words + [""]):
        if len(w) == 1 and i not in used:
            run.append(i)
        else:
            if len(run) >= 2:
                runs.append(run)
            run = []
    best, best_ratio = None, 0.0
    for run in runs:
        said = "".join(words[i] for i in run)
        for form, value in p.values.items():
            letters = form.replace(" ", "")
            ratio = difflib.SequenceMatcher(None, said, letters).ratio()
            if ratio > best_ratio and len(form.split()) == len(letters):  # a spelled form
                best, best_ratio, best_run = value, ratio, run
    if best is None or best_ratio < 0.75:
        return None
    used.update(best_run)
    return best


def _read_value(p: _Param, words: list[str], used: set[int], *, bare: bool, carriers: _Tool | None = None) -> Any:
    """``p``'s value in ``words`` (marking the words it used), or None."""
    if p.kind in ("enum", "string") and p.values:
        for form in sorted(p.values, key=lambda f: -len(f.split())):
            at = _find_phrase(words, form.split(), used)
            if at is not None:
                used.update(range(at, at + len(form.split())))
                return p.values[form]
        if p.kind == "enum":
            return _spelled_enum(p, words, used)
    if p.kind == "time":
        found = _read_time(words, used, bare)
        if found is None:
            return None
        text, at, n = found
        used.update(range(at, at + n))
        return text
    if p.kind == "boolean":
        for i, w in enumerate(words):
            if i not in used and w in ("yes", "true", "on", "no", "false", "off"):
                used.add(i)
                return w in ("yes", "true", "on")
        return None
    if p.kind in ("integer", "number"):
        candidates = []
        i = 0
        while i < len(words):
            if i in used:
                i += 1
                continue
            got = parse_number(words, i)
            if got is None or got[1] == 0:
                i += 1
                continue
            value, n = got
            if used.intersection(range(i, i + n)):
                i += 1
                continue
            # near the parameter's name ("four people", "for ten minutes") scores best
            near = p.name_words and any(w in words[max(0, i - 2):i + n + 2] for w in p.name_words
                                        + [w.rstrip("s") for w in p.name_words])
            if value == 1 and words[i] == "a" and not near:
                i += 1
                continue
            candidates.append((not near, i, value, n))
            i += n
        if not candidates:
            return None
        _, at, value, n = min(candidates)
        used.update(range(at, at + n))
        return value
    # a free string: the words left once known words are taken away
    if bare:
        return " ".join(words) or None
    if carriers is None:
        return None
    known = set(STOP) | set(carriers.keywords) | {w for c in carriers.carriers for w in c.split()}
    known |= {"people", "person", "minutes", "minute", "hours", "o'clock", "am", "pm"}
    run: list[str] = []
    best: list[str] = []
    for i, w in enumerate(words + [""]):
        if w and i not in used and w not in known and parse_number(words, i) is None:
            run.append(w)
        else:
            if len(run) > len(best):
                best = run
            run = []
    return " ".join(best) or None


# --- speaking a result ----------------------------------------------------------------------------

_UNIT_SUFFIXES = (
    ("_celsius", "degrees Celsius"), ("_c", "degrees Celsius"), ("_fahrenheit", "degrees Fahrenheit"),
    ("_f", "degrees Fahrenheit"), ("_pct", "percent"), ("_percent", "percent"), ("_usd", "dollars"),
    ("_eur", "euros"), ("_gbp", "pounds"), ("_kmh", "kilometres an hour"), ("_mph", "miles an hour"),
    ("_km", "kilometres"), ("_m", "metres"), ("_minutes", "minutes"), ("_min", "minutes"), ("_seconds", "seconds"),
    ("_s", "seconds"), ("_ms", "milliseconds"), ("_kg", "kilograms"),
)


def _subject(tool_name: str) -> str:
    words = tool_name.replace("-", "_").split("_")
    if len(words) > 1 and words[0] in _ACTION_VERBS | _DOING_VERBS:
        words = words[1:]
    return " ".join(words)


def _action(tool_name: str) -> str:
    words = tool_name.replace("-", "_").split("_")
    return " ".join(words[:1] + (["the"] if len(words) > 1 else []) + words[1:])


def _field(name: str) -> tuple[str, str]:
    """A result field's words and unit: ``temperature_c`` -> ("temperature", "degrees Celsius")."""
    low = name.lower()
    for suffix, unit in _UNIT_SUFFIXES:
        if low.endswith(suffix) and len(low) > len(suffix):
            return low[: -len(suffix)].replace("_", " "), unit
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).replace("_", " ").lower(), ""


def _say_value(value: Any, unit: str = "") -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, list):
        items = [_say_value(v) for v in value]
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else "nothing"
    if isinstance(value, dict):
        return ", ".join(f"{_field(k)[0]} {_say_value(v, _field(k)[1])}" for k, v in value.items())
    return f"{value} {unit}".strip()


def describe_result(tool_name: str, arguments: dict[str, Any], output: str) -> str:
    """A sentence about a tool's ``output`` (JSON or text), whatever its fields are.

    ``{"location": "Berlin", "temperature_c": 21, "conditions": "sunny"}`` from
    ``get_weather`` -> "The weather in Berlin: the temperature is 21 degrees Celsius and the
    conditions are sunny." Fields that repeat an argument name the subject instead.
    """
    try:
        result = json.loads(output)
    except (TypeError, ValueError):
        result = output
    subject = _subject(tool_name)
    about = [str(v) for v in arguments.values() if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
    if isinstance(result, dict) and set(result) & {"error", "message"} == {"error"}:
        return f"Sorry, I could not {_action(tool_name)}: {_say_value(result['error'])}."
    if not isinstance(result, dict):
        text = _say_value(result).strip() or "done"
        return f"The {subject}{_about(about)} is {text}."
    doing = tool_name.replace("-", "_").split("_")[0] in _DOING_VERBS
    parts = []
    for key, value in result.items():
        if value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool)
                             and str(value) in about):
            continue
        words, unit = _field(key)
        if isinstance(value, bool):
            parts.append(f"it is {'' if value else 'not '}{words}")
        elif words.split()[-1] in ("at", "in", "on", "by", "until", "from", "to"):
            parts.append(f"it {words} {_say_value(value, unit)}")  # ends_at -> "it ends at 10:42"
        else:
            plural = words.endswith("s") and not words.endswith(("ss", "us", "is"))
            parts.append(f"the {words} {'are' if plural else 'is'} {_say_value(value, unit)}")
    if not parts:
        return f"Done: {_action(tool_name)}{_about(about)}." if doing else f"I have no {subject}{_about(about)}."
    joined = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    if doing:
        return f"Done, {joined}."
    if len(parts) == 1 and parts[0].startswith(f"the {subject.split()[-1]} "):
        return f"The {subject}{_about(about)} is {_say_value(next(v for v in result.values() if str(v) not in about), _field(next(k for k, v in result.items() if str(v) not in about))[1])}."
    return f"The {subject}{_about(about)}: {joined}."


def _about(values: list[str]) -> str:
    if not values:
        return ""
    return " for " + " ".join(values[:3])
