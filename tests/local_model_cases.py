"""Tools the demo rules know nothing about, and spoken requests for them with the calls they mean.

Shared by the local model's tests and ``benchmarks/local_model.py``. Every request is a
sentence for eSpeak NG (numbers as words, as a person says them) and the exact call a
model should make for it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from processors.brain.tools import number_words

__all__ = ["BOOK_TABLE", "GATE_TUNING", "GATE_VOICES", "HELD_OUT", "INSTRUCTIONS", "OUT_OF_GRAMMAR", "Request",
           "SET_TIMER", "STOCK_PRICE", "TOOLS", "TUNING_SEED", "requests"]


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "function", "name": name, "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required}}


BOOK_TABLE = _tool("book_table", "Book a table at a restaurant", {
    "restaurant": {"type": "string", "description": "the restaurant's name"},
    "time": {"type": "string", "description": "when, like 7:30 pm"},
    "people": {"type": "integer", "minimum": 1}}, ["restaurant", "time", "people"])
STOCK_PRICE = _tool("get_stock_price", "Get the current price of a stock", {
    "symbol": {"type": "string", "enum": ["AAPL", "MSFT", "GOOG", "TSLA"]}}, ["symbol"])
SET_TIMER = _tool("set_timer", "Set a countdown timer", {
    "minutes": {"type": "integer", "minimum": 1, "maximum": 120}}, ["minutes"])
PLAY_MUSIC = _tool("play_music", "Play music of a genre", {
    "genre": {"type": "string", "enum": ["jazz", "rock", "classical", "pop"]}}, ["genre"])
THERMOSTAT = _tool("set_thermostat", "Set the heating temperature in a room", {
    "room": {"type": "string", "enum": ["living room", "bedroom", "kitchen"]},
    "degrees": {"type": "integer", "minimum": 10, "maximum": 30}}, ["room", "degrees"])
CALL_CONTACT = _tool("call_contact", "Phone one of the user's contacts", {
    "name": {"type": "string"}}, ["name"])
CONVERT = _tool("convert_currency", "Convert an amount of money into another currency", {
    "amount": {"type": "number"},
    "currency": {"type": "string", "enum": ["euros", "dollars", "pounds", "yen"]}}, ["amount", "currency"])

TOOLS = [BOOK_TABLE, STOCK_PRICE, SET_TIMER, PLAY_MUSIC, THERMOSTAT, CALL_CONTACT, CONVERT]
#: Names the session instructions give (the free-string values: restaurants, contacts).
INSTRUCTIONS = ("You are a helpful assistant. Restaurants you can book: Luigi's, Golden Dragon and Blue Lagoon. "
                "The user's contacts are Alice, Bob and Carol.")


@dataclass(frozen=True)
class Request:
    """A spoken request and the call it means."""

    text: str
    name: str
    arguments: dict[str, Any]


_HOURS = {7: "seven", 8: "eight", 6: "six", 9: "nine"}
_SPELLED = {"AAPL": "a a p l", "MSFT": "m s f t", "GOOG": "g o o g", "TSLA": "t s l a"}


def _book(rng: random.Random) -> Request:
    restaurant = rng.choice(["Luigi's", "Golden Dragon", "Blue Lagoon"])
    hour = rng.choice(list(_HOURS))
    half = rng.random() < 0.4
    people = rng.randint(2, 8)
    said_time = f"{_HOURS[hour]} thirty pm" if half else f"{_HOURS[hour]} pm"
    time = f"{hour}:{'30' if half else '00'} pm"
    template = rng.choice([
        "book a table at {r} for {n} people at {t}",
        "i would like to book a table for {n} people at {r} at {t}",
        "can you book a table at {r} at {t} for {n} people",
    ])
    return Request(template.format(r=restaurant.lower(), n=number_words(people), t=said_time), "book_table",
                   {"restaurant": restaurant, "time": time, "people": people})


def _stock(rng: random.Random) -> Request:
    symbol = rng.choice(list(_SPELLED))
    template = rng.choice(["what is the stock price of {s}", "get the price of {s}", "how much is the stock {s}"])
    return Request(template.format(s=_SPELLED[symbol]), "get_stock_price", {"symbol": symbol})


def _timer(rng: random.Random) -> Request:
    minutes = rng.choice([2, 5, 10, 15, 20, 25, 30, 45, 60, 90])
    template = rng.choice(["set a timer for {m} minutes", "please set a countdown timer for {m} minutes",
                           "start a timer of {m} minutes"])
    return Request(template.format(m=number_words(minutes)), "set_timer", {"minutes": minutes})


def _music(rng: random.Random) -> Request:
    genre = rng.choice(["jazz", "rock", "classical", "pop"])
    template = rng.choice(["play some {g} music", "can you play {g}", "i want to listen to {g} music"])
    return Request(template.format(g=genre), "play_music", {"genre": genre})


def _thermostat(rng: random.Random) -> Request:
    room = rng.choice(["living room", "bedroom", "kitchen"])
    degrees = rng.randint(16, 24)
    template = rng.choice(["set the temperature in the {r} to {d} degrees",
                           "set the heating in the {r} to {d} degrees", "make the {r} {d} degrees"])
    return Request(template.format(r=room, d=number_words(degrees)), "set_thermostat",
                   {"room": room, "degrees": degrees})


def _call(rng: random.Random) -> Request:
    name = rng.choice(["Alice", "Bob", "Carol"])
    template = rng.choice(["call {n}", "phone {n} please", "can you call my contact {n}"])
    return Request(template.format(n=name.lower()), "call_contact", {"name": name})


def _convert(rng: random.Random) -> Request:
    amount = rng.choice([20, 50, 100, 30, 75])
    currency = rng.choice(["euros", "dollars", "pounds", "yen"])
    template = rng.choice(["convert {a} into {c}", "how much is {a} in {c}", "convert {a} to {c} please"])
    return Request(template.format(a=number_words(amount), c=currency), "convert_currency",
                   {"amount": amount, "currency": currency})


_MAKERS = [_book, _stock, _timer, _music, _thermostat, _call, _convert]


def requests(per_tool: int, seed: int = 18) -> list[Request]:
    """``per_tool`` requests for each of the seven tools, in a seeded order."""
    rng = random.Random(seed)
    out = [make(rng) for make in _MAKERS for _ in range(per_tool)]
    rng.shuffle(out)
    return out


#: Sentences outside every grammar of these tests (no rule's phrase, no tool's purpose): the
#: out-of-grammar gate is tuned on the even ones (:data:`GATE_TUNING`) and measured on the odd
#: ones (:data:`HELD_OUT`), where the general model's word error rate is reported too.
OUT_OF_GRAMMAR = (
    "i like to walk my dog in the park",
    "please remind me to buy milk tomorrow",
    "how are you doing today",
    "what is the capital of france",
    "send an email to my boss",
    "the meeting starts at noon",
    "my sister lives in a small town",
    "we need more coffee in the office",
    "open the window and let the air in",
    "i forgot my keys at home",
    "the children are running in the garden",
    "where did you put the car keys",
    "this novel is really interesting",
    "she bought a new pair of shoes",
    "the train was late again this morning",
    "do you know a good recipe for soup",
    "my computer is running very slowly",
    "let us go for a walk after lunch",
    "the river flows through the old city",
    "he practices the violin every evening",
    "can you explain how this works",
    "i would love a cup of tea",
    "the dog barked at the mailman",
    "we should clean the house on saturday",
    "my favorite color is green",
    "please close the door behind you",
    "the store opens early on sundays",
    "who wrote this letter",
    "i am going to the dentist next week",
    "the garden needs water",
    "turn off the lights in the hall",
    "what does this word mean",
    "the baby is sleeping upstairs",
    "can you tell me a joke",
    "i need to wash my hair",
    "our neighbors have a big black cat",
    "the bus leaves from the corner",
    "she is learning to speak spanish",
    "how far is the airport from here",
    "my brother fixed the bike yesterday",
    "let me know when you are ready",
    "the soup is too hot to eat",
    "we watched a movie last night",
    "please water the plants while i am away",
    "the office is closed for the holidays",
    "i cannot find my glasses",
    "what should i cook for dinner",
    "the printer is out of paper",
)
GATE_TUNING = OUT_OF_GRAMMAR[0::2]
HELD_OUT = OUT_OF_GRAMMAR[1::2]
#: eSpeak NG voices and rates (words a minute) the gate was tuned and is measured with.
GATE_VOICES = (("en-us+klatt", 160), ("en-us+f5", 140), ("en-us+adam", 185), ("en-us+klatt3", 170))
#: The seed of the tool requests the gate was tuned on; the accuracy test's are ``requests(9)`` (seed 18).
TUNING_SEED = 7
