"""Does the text so far stop mid-sentence? A small lexical check of a recogniser's words.

English sentences do not end on a function word: an article ("the", "a"), a preposition
("for", "to", "of"), a conjunction ("and", "but", "because"), a possessive ("my", "your"),
an auxiliary or copula ("is", "are", "can", "would"), a subject pronoun ("I", "we") or a
word that announces more ("then", "like", "um"). Nor does a caller stop after announcing a
value ("my number is", "the address is ...") or in the middle of reading digits out ("four
one five" after "number", "code", "card"...). :func:`incomplete_reason` names the rule that
fired, or returns None when the words could end a sentence. It only ever says *unfinished*:
a sentence that ends well may still go on, which is for the pitch and the model to hear.

The word lists are general English, not fitted to any test sentence; the check is a few set
look-ups on the last three words (microseconds).
"""

from __future__ import annotations

import re

__all__ = ["incomplete_reason", "words_of"]

_WORD = re.compile(r"[a-z0-9']+")

_ARTICLES = {"a", "an", "the", "this", "that", "these", "those", "some", "any", "every", "each", "another",
             "no"}
_PREPOSITIONS = {"to", "for", "of", "in", "on", "at", "by", "with", "from", "into", "onto", "about", "than",
                 "via", "per", "towards", "toward", "between", "through", "under", "over", "after", "before",
                 "until", "till", "during", "without", "within", "near", "like", "as"}
_CONJUNCTIONS = {"and", "or", "but", "so", "because", "if", "when", "while", "although", "though", "unless",
                 "whether", "nor", "since", "where", "which", "who", "whose", "whom", "what", "how", "then",
                 "plus", "also"}
_POSSESSIVES = {"my", "your", "his", "her", "its", "our", "their"}
_AUXILIARIES = {"is", "are", "was", "were", "be", "been", "being", "am", "i'm", "it's", "that's", "there's",
                "do", "does", "did", "have", "has", "had", "can", "could", "would", "should", "will", "shall",
                "may", "might", "must", "want", "need", "like", "let's", "gonna", "wanna", "i'd", "i'll",
                "we're", "you're", "they're", "we'll", "we'd"}
_PRONOUNS = {"i", "we", "they", "he", "she"}  # not "you": "thank you", "see you"
_FILLERS = {"um", "uh", "er", "erm", "hmm", "mm", "uhm", "like", "basically", "actually", "just", "very",
            "really", "more", "most", "less", "quite", "rather", "too"}
_FUNCTION = _ARTICLES | _PREPOSITIONS | _CONJUNCTIONS | _POSSESSIVES | _AUXILIARIES | _PRONOUNS | _FILLERS
#: Words that may close a sentence although they are in the lists above ("that's it", "go on").
_CAN_END = {"it", "in", "on", "off", "out", "up", "too", "that", "this", "more", "over", "after", "before",
            "since", "so", "like", "then", "though", "do", "did", "does", "can", "will", "have", "had", "am",
            "is", "are", "be", "was", "were", "would", "should", "could", "must", "may", "might", "what", "who",
            "where", "how", "which", "any", "some", "no", "just", "really", "too", "also", "as well"}
_COPULAS = {"is", "are", "was", "were", "'s"}
#: Before a final copula these let the sentence end ("here it is", "that's where it was").
_COPULA_CAN_END = {"it", "that", "this", "there", "here", "what", "who", "which", "he", "she", "they", "we",
                   "you", "i", "one", "ones", "so"}

_NUMBERS = {"zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
            "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
            "nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
            "hundred", "thousand", "double", "triple"}
#: Nouns whose value is read out next ("my number is", "the code is four one ...").
_VALUE_NOUNS = {"number", "phone", "code", "address", "postcode", "zip", "card", "account", "pin", "id",
                "reference", "email", "name", "password", "extension", "date", "time", "street", "flat",
                "room", "order", "booking", "ticket", "license", "licence", "passport", "seat", "gate"}


def words_of(text: str) -> list[str]:
    """Lower-case words (letters, digits, apostrophes); digits become number words for the checks."""
    out = []
    for w in _WORD.findall(text.lower()):
        out.append("one" if w.isdigit() else w)  # a digit string is read out like number words
    return out


def incomplete_reason(text: str) -> str | None:
    """Why ``text`` cannot be the end of a sentence (the rule's name), or None when it could be."""
    words = words_of(text)
    if not words:
        return None
    last = words[-1]
    tail2 = " ".join(words[-2:])
    if last in _FUNCTION and last not in _CAN_END:
        return f"ends on '{last}'"
    if last in _COPULAS and len(words) >= 2 and words[-2] not in _COPULA_CAN_END:
        return f"ends on '{tail2}'"  # "my number is", "what I was thinking is"
    if last == "then" and len(words) >= 2 and words[-2] in _CONJUNCTIONS:
        return f"ends on '{tail2}'"  # "and then"
    # a value being read out: number words after "<value noun> is" (or after "is" + digits)
    run = 0
    for w in reversed(words):
        if w not in _NUMBERS:
            break
        run += 1
    if run:
        before = words[: len(words) - run]
        announced = len(before) >= 2 and before[-1] in _COPULAS and any(w in _VALUE_NOUNS for w in before[-3:])
        if announced and run < 10:
            return f"reading out a value ({run} number word{'s' if run > 1 else ''} so far)"
    return None
