"""The scripted responder's rules engine: transcript in, a reply or a tool call out.

A pure object (no I/O after loading, no asyncio), used by the ``brain.scripted`` processor
and by the local realtime server. Rules come from YAML::

    fallback: "Sorry, I did not understand."
    out_of_grammar: "Sorry, I can't help with {transcript}."   # speech the recogniser's grammar did not fit
    echo: false                     # true: repeat the user's words, ignore the rules
    rules:
      - pattern: "^(hello|hi)\\b"   # regex, case-insensitive, searched in the normalised transcript
        examples: ["hello"]         # phrases a recogniser should expect (grammar)
        reply: "Hello!"             # {group} placeholders from the pattern's named groups
      - pattern: "weather in (?P<city>paris|london)"
        examples: ["what is the weather in paris"]
        call: {name: get_weather, arguments: {location: "{city!t}"}}
        then: "It is {temp_c} degrees in {location}."   # tool result fields, arguments, groups

The transcript is normalised before matching: lower-case, punctuation dropped, spaces
collapsed (``transcript`` is also a placeholder). Templates are ``str.format`` templates
with three extra conversions: ``!t`` title-case, ``!u`` upper-case, ``!l`` lower-case.

A call is made only to a tool the session declared (flat Realtime function schemas
``{type, name, description, parameters}``), with arguments that validate against that
tool's JSON Schema (:func:`schema_errors`, the subset tools use). Before validation a
placeholder-only string is converted to the integer, number or boolean the schema asks
for, and matched case-insensitively to an ``enum`` value. Anything else becomes a spoken
reply saying what is wrong, so a conversation never dead-ends.
"""

from __future__ import annotations

import json
import logging
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["OUT_OF_GRAMMAR", "Brain", "Call", "Reply", "Rule", "RulesError", "Say", "heard_out_of_grammar",
           "normalize_transcript", "schema_errors"]

log = logging.getLogger("voxpipe.brain")


class RulesError(ValueError):
    """A rules file is malformed; the message names the file, the rule and the fix."""


@dataclass(frozen=True, slots=True)
class Say:
    """Reply by speaking ``text``; ``ask`` is set when it asks for a missing tool argument.

    Keep ``ask`` and pass it back as :meth:`Brain.respond`'s ``pending`` with the user's
    next words: they may be the answer.
    """

    text: str
    ask: Any = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Call:
    """Reply by calling tool ``name`` with ``arguments``; answer with :meth:`Brain.after_tool`.

    ``then`` (the rule's follow-up template) and ``context`` (the match groups and the
    transcript) ride along so that the follow-up needs no other state.
    """

    name: str
    arguments: dict[str, Any]
    then: str | None = field(default=None, compare=False)
    context: dict[str, Any] = field(default_factory=dict, compare=False)


Reply = Say | Call


@dataclass(frozen=True)
class Rule:
    """One pattern and what to do when it matches: a ``reply``, or a ``call`` then ``then``."""

    pattern: re.Pattern[str]
    reply: str | None = None
    call_name: str | None = None
    call_arguments: dict[str, Any] = field(default_factory=dict)
    then: str | None = None
    examples: tuple[str, ...] = ()


_PUNCT = re.compile(r"[^\w']+")

#: The reply to out-of-grammar speech no rule or tool takes (rules files: ``out_of_grammar``).
OUT_OF_GRAMMAR = "Sorry, I can't help with {transcript}."


def heard_out_of_grammar(heard: Any, words: str | None = None) -> bool:
    """Whether ``heard`` is out-of-grammar speech: the general English model's words.

    ``heard`` is what a recogniser returned (a :class:`processors.speech.sphinx.Heard`, whose
    ``fallback`` says so; a plain ``str`` or None is not). ``words``, when given, are the
    words the reply is for: a client may have replaced the transcript since, and then the
    flag no longer applies. Both local servers (Realtime and Live) decide with this, so an
    utterance is answered the same way on either (:meth:`Brain.respond`'s ``out_of_grammar``).
    """
    return bool(getattr(heard, "fallback", False)) and (words is None or words == heard)


def normalize_transcript(text: str) -> str:
    """Lower-case words of ``text`` separated by single spaces (punctuation dropped)."""
    return " ".join(w.strip("'") for w in _PUNCT.split(text.lower()) if w.strip("'"))


class _Formatter(string.Formatter):
    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if value is None:
            return ""
        if conversion == "t":
            return str(value).title()
        if conversion == "u":
            return str(value).upper()
        if conversion == "l":
            return str(value).lower()
        return super().convert_field(value, conversion)


_FORMAT = _Formatter()


def _fields(template: str) -> set[str]:
    """Top-level field names a template uses ({a.b!t} -> a)."""
    names = set()
    for _, name, _, _ in _FORMAT.parse(template):
        if name:
            names.add(re.split(r"[.\[]", name, maxsplit=1)[0])
    return names


class Brain:
    """Rules that turn a user's transcript into a :class:`Say` or a :class:`Call`.

    Build it with :meth:`from_yaml` (or :meth:`from_dict`); ask :meth:`respond` for each
    final transcript; after a :class:`Call`, give the tool's JSON output to
    :meth:`after_tool` for the spoken follow-up. :meth:`phrases` lists what a speech
    recogniser should expect.
    """

    def __init__(self, rules: list[Rule], *, fallback: str = "Sorry, I did not understand that.", echo: bool = False,
                 out_of_grammar: str = OUT_OF_GRAMMAR) -> None:
        self.rules = list(rules)
        self.fallback = fallback
        self.out_of_grammar = out_of_grammar
        self.echo = echo

    # --- loading ----------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, path: str | Path) -> Brain:
        """Load rules from a YAML file; raises :class:`RulesError` naming what to fix."""
        import yaml

        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RulesError(f"cannot read rules file {path}: {exc.strerror or exc}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RulesError(f"{path}: not valid YAML: {exc}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<rules>") -> Brain:
        """Build from parsed YAML: a mapping with ``rules``/``fallback``/``out_of_grammar``/``echo``, or a bare list."""
        if data is None:
            data = {}
        if isinstance(data, list):
            data = {"rules": data}
        if not isinstance(data, dict):
            raise RulesError(f"{source}: expected a mapping with `rules:`, `fallback:` and `echo:`, got {type(data).__name__}")
        unknown = set(data) - {"rules", "fallback", "out_of_grammar", "echo"}
        if unknown:
            raise RulesError(f"{source}: unknown top-level key(s) {sorted(unknown)}; allowed: rules, fallback, "
                             "out_of_grammar, echo")
        rules_data = data.get("rules") or []
        if not isinstance(rules_data, list):
            raise RulesError(f"{source}: `rules` must be a list of {{pattern, reply}} or {{pattern, call, then}} entries")
        fallback = data.get("fallback", "Sorry, I did not understand that.")
        if not isinstance(fallback, str):
            raise RulesError(f"{source}: `fallback` must be a string")
        _check_template(fallback, {"transcript"}, f"{source}: fallback")
        out_of_grammar = data.get("out_of_grammar", OUT_OF_GRAMMAR)
        if not isinstance(out_of_grammar, str):
            raise RulesError(f"{source}: `out_of_grammar` must be a string (a template; {{transcript}} is what was heard)")
        _check_template(out_of_grammar, {"transcript"}, f"{source}: out_of_grammar")
        rules = [_parse_rule(item, f"{source}: rule {i + 1}") for i, item in enumerate(rules_data)]
        return cls(rules, fallback=fallback, echo=bool(data.get("echo", False)), out_of_grammar=out_of_grammar)

    # --- the pure API -------------------------------------------------------------------

    def phrases(self) -> list[str]:
        """Every rule's ``examples``, in order, de-duplicated (empty in echo mode: say anything)."""
        if self.echo:
            return []
        return list(dict.fromkeys(p for rule in self.rules for p in rule.examples))

    def respond(self, transcript: str, tools: list[dict[str, Any]] | None = None, *,
                instructions: str = "", pending: Any = None, out_of_grammar: bool | None = None) -> Reply:
        """The reply to a final user transcript, given the session's declared ``tools``.

        Rules win where they match. Otherwise the session's tools are matched by purpose
        (:class:`processors.brain.tools.ToolMatcher`, with proper names from
        ``instructions``): a :class:`Call`, or a :class:`Say` asking for a missing
        argument (its ``ask`` goes back in as ``pending`` with the next transcript).

        ``out_of_grammar``: the words are the general English model's, because the
        recogniser's grammar (the rules' phrases, the session's tools) did not fit the
        speech (None: read it from a :class:`processors.speech.sphinx.Heard` transcript).
        A rule still answers when its pattern matches, and a tool is still called when the
        words name it and fill every required argument; anything else is answered with
        the ``out_of_grammar`` template ("Sorry, I can't help with {transcript}."), not
        with the nearest phrase's answer and not with a question for an argument.
        """
        from .tools import AskBack, ToolMatcher

        if out_of_grammar is None:
            out_of_grammar = heard_out_of_grammar(transcript)
        text = normalize_transcript(transcript)
        if self.echo:
            return Say(transcript.strip()) if transcript.strip() else self._fallback(text)
        for rule in self.rules:
            match = rule.pattern.search(text)
            if match is None:
                continue
            groups = {**{k: v for k, v in match.groupdict().items()}, "transcript": text}
            if rule.reply is not None:
                return Say(_FORMAT.format(rule.reply, **groups))
            return self._call(rule, groups, tools or [])
        if tools:
            matcher = ToolMatcher(tools, instructions)
            found = matcher.match(text)
            if isinstance(pending, AskBack) and (found is None or found.name == pending.name):
                found = matcher.complete(pending, text) or found
            if out_of_grammar and not isinstance(found, Call):
                found = None  # half a request in words we were not listening for: do not ask back
            if isinstance(found, AskBack):
                return Say(found.question, ask=found)
            if found is not None:
                return found
        if out_of_grammar and text:
            return Say(_FORMAT.format(self.out_of_grammar, transcript=text))
        return self._fallback(text)

    def after_tool(self, call: Call, result_json: str) -> Say:
        """The spoken follow-up once tool ``call`` answered with ``result_json``.

        The rule's ``then`` template sees the result's fields (when it is a JSON object,
        else ``{result}``), the call's arguments and the match groups, in that precedence.
        A ``call`` rebuilt from the wire (name and arguments only, no ``then``) gets the
        template of the first rule that calls that tool.
        """
        try:
            result = json.loads(result_json)
        except (TypeError, ValueError):
            result = result_json
        fields = dict(call.context)
        fields.update(call.arguments)
        if isinstance(result, dict):
            fields.update(result)
        fields["result"] = result
        then = call.then if call.then is not None else self._then_for(call.name)
        if then is None:
            return Say(_describe(call, result_json))
        try:
            return Say(_FORMAT.format(then, **fields))
        except (KeyError, IndexError, AttributeError, ValueError) as exc:
            missing = exc.args[0] if isinstance(exc, KeyError) else str(exc)
            log.info("reply template %r cannot be filled from the %s result %s (no %s): describing the result",
                     then, call.name, result_json[:200] if isinstance(result_json, str) else result_json, missing)
            return Say(_describe(call, result_json))

    # --- helpers ------------------------------------------------------------------------

    def _then_for(self, tool_name: str) -> str | None:
        for rule in self.rules:
            if rule.call_name == tool_name and rule.then is not None:
                return rule.then
        return None

    def _fallback(self, text: str) -> Say:
        return Say(_FORMAT.format(self.fallback, transcript=text))

    def _call(self, rule: Rule, groups: dict[str, Any], tools: list[dict[str, Any]]) -> Reply:
        name = rule.call_name or ""
        tool = _find_tool(tools, name)
        if tool is None:
            log.info("rule wants tool %r, but the session declared %s", name, [_tool_name(t) for t in tools] or "none")
            return Say(f"I would use the {_words(name)} tool for that, but this session has not declared it.")
        schema = tool.get("parameters") or {"type": "object", "properties": {}}
        arguments = _fill(rule.call_arguments, groups)
        arguments = _coerce(arguments, schema)
        problems = schema_errors(arguments, schema)
        if problems:
            log.info("arguments %s for tool %r do not match its schema: %s", arguments, name, "; ".join(problems))
            return Say(f"I cannot call the {_words(name)} tool: {'; '.join(problems)}.")
        return Call(name, arguments, then=rule.then, context=groups)


# --- rules parsing ----------------------------------------------------------------------------

_RULE_KEYS = {"pattern", "reply", "call", "then", "examples"}


def _parse_rule(item: Any, where: str) -> Rule:
    if not isinstance(item, dict):
        raise RulesError(f"{where}: expected a mapping like {{pattern: ..., reply: ...}}, got {type(item).__name__}")
    unknown = set(item) - _RULE_KEYS
    if unknown:
        raise RulesError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_RULE_KEYS)}")
    source = item.get("pattern")
    if not isinstance(source, str) or not source:
        raise RulesError(f"{where}: `pattern` (a regular expression) is required")
    try:
        pattern = re.compile(source, re.IGNORECASE)
    except re.error as exc:
        raise RulesError(f"{where}: pattern {source!r} is not a valid regex: {exc}") from None
    where = f"{where} (pattern {source!r})"
    groups = set(pattern.groupindex) | {"transcript"}
    examples = item.get("examples") or []
    if isinstance(examples, str):
        examples = [examples]
    if not isinstance(examples, list) or not all(isinstance(e, str) for e in examples):
        raise RulesError(f"{where}: `examples` must be a list of phrases")
    for example in examples:
        if not pattern.search(normalize_transcript(example)):
            raise RulesError(f"{where}: example {example!r} does not match the pattern; fix the example or the pattern")
    reply, call, then = item.get("reply"), item.get("call"), item.get("then")
    if (reply is None) == (call is None):
        raise RulesError(f"{where}: give either `reply: text` or `call: {{name, arguments}}` (with `then: text`)")
    if reply is not None:
        if not isinstance(reply, str):
            raise RulesError(f"{where}: `reply` must be a string")
        if then is not None:
            raise RulesError(f"{where}: `then` goes with `call`, not with `reply`")
        _check_template(reply, groups, f"{where}: reply")
        return Rule(pattern, reply=reply, examples=tuple(examples))
    if not isinstance(call, dict) or not isinstance(call.get("name"), str) or set(call) - {"name", "arguments"}:
        raise RulesError(f"{where}: `call` must be {{name: tool_name, arguments: {{...}}}}")
    arguments = call.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise RulesError(f"{where}: `call.arguments` must be a mapping of argument name to value or template")
    for template in _strings(arguments):
        _check_template(template, groups, f"{where}: call.arguments")
    if then is not None and not isinstance(then, str):
        raise RulesError(f"{where}: `then` must be a string")
    if then is not None:
        try:
            _fields(then)
        except ValueError as exc:
            raise RulesError(f"{where}: `then` is not a valid template: {exc}") from None
    return Rule(pattern, call_name=call["name"], call_arguments=arguments, then=then, examples=tuple(examples))


def _check_template(template: str, names: set[str], where: str) -> None:
    try:
        used = _fields(template)
        for _, _, _, conversion in _FORMAT.parse(template):
            if conversion and conversion not in "rsatul":
                raise ValueError(f"unknown conversion !{conversion} (use !t, !u, !l, !r or !s)")
    except ValueError as exc:
        raise RulesError(f"{where}: {template!r} is not a valid template: {exc}") from None
    missing = used - names
    if missing:
        raise RulesError(
            f"{where}: {template!r} uses {', '.join('{' + m + '}' for m in sorted(missing))}, but the pattern's "
            f"named groups are {sorted(names - {'transcript'}) or 'none'}; add (?P<name>...) to the pattern"
        )


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _fill(value: Any, groups: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return _FORMAT.format(value, **groups)
    if isinstance(value, dict):
        return {k: _fill(v, groups) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, groups) for v in value]
    return value


# --- tools ------------------------------------------------------------------------------------


def _tool_name(tool: dict[str, Any]) -> str | None:
    if isinstance(tool.get("function"), dict):  # Chat Completions shape, tolerated
        return tool["function"].get("name")
    return tool.get("name")


def _find_tool(tools: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    for tool in tools:
        if isinstance(tool, dict) and tool.get("type", "function") == "function" and _tool_name(tool) == name:
            return tool["function"] if isinstance(tool.get("function"), dict) else tool
    return None


def _describe(call: Call, result_json: Any) -> str:
    from .tools import describe_result

    return describe_result(call.name, call.arguments, result_json if isinstance(result_json, str)
                           else json.dumps(result_json))


def _words(name: str) -> str:
    return name.replace("_", " ")


def _spoken(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{_words(str(k))} {_spoken(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_spoken(v) for v in value)
    return str(value)


def _coerce(value: Any, schema: dict[str, Any]) -> Any:
    """Convert template strings to what ``schema`` asks for, where that is unambiguous."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        return {k: _coerce(v, props.get(k, {})) for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce(v, schema.get("items") or {}) for v in value]
    if not isinstance(value, str):
        return value
    types = _types(schema)
    text = value.strip()
    if "integer" in types and re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    if "number" in types and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        return float(text)
    if "boolean" in types and text.lower() in ("true", "false", "yes", "no"):
        return text.lower() in ("true", "yes")
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        for option in enum:
            if isinstance(option, str) and option.lower() == text.lower():
                return option
    return value


def _types(schema: dict[str, Any]) -> set[str]:
    t = schema.get("type")
    found = {t} if isinstance(t, str) else set(t) if isinstance(t, list) else set()
    for key in ("anyOf", "oneOf"):
        for branch in schema.get(key) or []:
            if isinstance(branch, dict):
                found |= _types(branch)
    return found


_JSON_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def schema_errors(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Why ``value`` does not match JSON Schema ``schema`` (empty list: it matches).

    The subset tool schemas use: ``type`` (one or a list), ``enum``, ``const``,
    ``properties``, ``required``, ``additionalProperties``, ``items``, ``minItems``/
    ``maxItems``, ``minLength``/``maxLength``, ``minimum``/``maximum``, ``anyOf``/``oneOf``.
    Other keywords are ignored (accepted).
    """
    if not isinstance(schema, dict):
        return []
    where = path or "arguments"
    errors: list[str] = []
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            if not any(not schema_errors(value, b, path) for b in branches):
                errors.append(f"{where} matches none of the allowed forms")
                return errors
    types = schema.get("type")
    if types is not None:
        allowed = [types] if isinstance(types, str) else list(types)
        if not any(_JSON_TYPES.get(t, lambda v: True)(value) for t in allowed):
            return [f"{where} must be {' or '.join(allowed)}, not {_json_type(value)} {value!r}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where} must be one of {', '.join(map(repr, schema['enum']))}, not {value!r}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where} must be {schema['const']!r}, not {value!r}")
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for name in schema.get("required") or []:
            if name not in value:
                errors.append(f"{_join(path, name)} is required")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in props:
                errors.extend(schema_errors(item, props[name], _join(path, name)))
            elif extra is False:
                errors.append(f"{_join(path, name)} is not an argument of this tool")
            elif isinstance(extra, dict):
                errors.extend(schema_errors(item, extra, _join(path, name)))
    elif isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{where} needs at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{where} takes at most {schema['maxItems']} items")
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                errors.extend(schema_errors(item, schema["items"], f"{where}[{i}]"))
    elif isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{where} must have at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{where} must have at most {schema['maxLength']} characters")
    elif _JSON_TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where} must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where} must be at most {schema['maximum']}")
    return errors


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _JSON_TYPES[name](value):
            return name
    return type(value).__name__
