"""Cutting an LLM's token stream into speakable pieces as it arrives.

A piece ends at a sentence boundary: ``.``, ``!``, ``?`` or an ellipsis, with any closing quotes or
brackets, followed by white space and more text (so a boundary is confirmed one token late, ~10 ms).
What is *not* a boundary: abbreviations ("Dr. Smith", "e.g. this"), initials ("J. K. Rowling"),
decimals ("3.14", no space follows), list numbers ("1. Eggs 2. Milk"), an ellipsis running on in lower case
("well... maybe"). A newline always ends a piece (lists written one item a line).

``first_clause=True`` lets the *first* piece end early at a clause boundary (, ; : or a dash) once
it has ``min_clause_words`` words: first audio sooner, at the cost of prosody that does not know
how the sentence goes on (the essay's trade). A first sentence with no such boundary ("I can assist
with everything from planning a wedding to providing advice on ...") is cut before a word that opens a
phrase (a preposition or conjunction, ``PHRASE_WORDS``) once ``min_phrase_words`` words precede it:
without that, the first audio waits for the whole sentence to be written and synthesised (1.3 s on
the demo's car-repair call). The first piece is what the caller waits for, and its wait grows with
its length: each word is ~1.3 tokens of the embedded LLM (~22 ms each on this project's cores) and
~0.3 s of speech that Piper synthesises whole before any of it plays, so the shortest piece that
still sounds like a phrase ("In recent years," / "I'm here to help") goes first.

Two rules keep what a small model writes badly off the speaker (issue 15): a sentence the reply has
already said is a loop starting ("I'm so sorry. I'm so sorry. I'm so sorry ..."): it and all after it
are dropped and ``looping`` tells the writer to stop; and a reply cut off by the token limit
(``flush(cut_off=True)``) does not end on half a sentence when a whole one was said before it.
"""

from __future__ import annotations

import re

ABBREVIATIONS = {
    "dr", "mr", "mrs", "ms", "prof", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "a.m", "p.m", "approx",
    "no", "fig", "mt", "ft", "lb", "oz", "inc", "ltd", "co", "dept", "jan", "feb", "mar", "apr", "jun",
    "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "u.k",
}
_SENTENCE_END = re.compile(r"(\.\.\.|…|[.!?]+)([\"'”’)\]]*)(\s+)(?=\S)")
_NEWLINE = re.compile(r"\n+")
_ENDS_SENTENCE = re.compile(r"[.!?…][\"'”’)\]]*$")
_CLAUSE_END = re.compile(r"([,;:]|\s[—–-])(\s+)(?=\S)")
PHRASE_WORDS = ("about", "after", "and", "as", "at", "because", "before", "but", "by", "for", "from", "if", "in",
                "into", "like", "on", "or", "since", "so", "than", "that", "to", "until", "when", "where", "which",
                "while", "with", "without")
_PHRASE_START = re.compile(r"\s+(?=(?:%s)\s)" % "|".join(PHRASE_WORDS), re.IGNORECASE)


def _key(sentence: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", sentence.lower()))


def _is_boundary(text: str, m: re.Match) -> bool:
    punct = m.group(1)
    before = text[:m.start()].split()
    word = before[-1] if before else ""
    following = text[m.end()]
    if punct == ".":
        bare = word.lower().strip("\"'(“‘")
        if bare in ABBREVIATIONS:
            return False
        if len(bare) == 1 and bare.isalpha():        # an initial: "J. K. Rowling"
            return False
        if bare.isdigit() and len(bare) <= 2:        # "1. Eggs 2. Milk": list numbers (cost: "to 10. Then" stays one piece)
            return False
    if punct in ("...", "…") and following.islower():
        return False
    return True


class TextPieces:
    def __init__(self, first_clause: bool = False, min_clause_words: int = 3, min_phrase_words: int = 4) -> None:
        self.first_clause = first_clause
        self.min_clause_words = min_clause_words
        self.min_phrase_words = min_phrase_words
        self._buf = ""
        self._pieces_out = 0
        self._sentences: set[str] = set()   # the reply's sentences so far, as _key writes them
        self._open: list[str] = []          # the pieces out of the sentence not yet ended
        self.looping = False                # a sentence came again: nothing more is handed out

    def push(self, token: str) -> list[str]:
        """Add streamed text; return the pieces it completed (in order)."""
        self._buf += token
        pieces = []
        while not self.looping and (cut := self._next_cut()) is not None:
            piece, self._buf = self._buf[:cut].strip(), self._buf[cut:].lstrip()
            if piece and self._keep(piece):
                pieces.append(piece)
        return pieces

    def flush(self, cut_off: bool = False) -> list[str]:
        """The rest, once the stream has ended. ``cut_off``: the writer stopped at its token limit, so
        an unfinished sentence after a finished one is left unsaid (one the reply is already inside is
        finished as far as it goes: its start was heard)."""
        piece, self._buf = self._buf.strip(), ""
        if not piece or self.looping:
            return []
        if cut_off and not self._open and self._pieces_out and not _ENDS_SENTENCE.search(piece):
            return []
        return [piece] if self._keep(piece) else []

    def _keep(self, piece: str) -> bool:
        """Count ``piece`` out, unless it is a whole sentence this reply has said (then it is looping)."""
        self._open.append(piece)
        if _ENDS_SENTENCE.search(piece):
            key, whole = _key(" ".join(self._open)), len(self._open) == 1
            self._open = []
            if whole and key in self._sentences:
                self.looping = True
                return False
            self._sentences.add(key)
        self._pieces_out += 1
        return True

    def _next_cut(self) -> int | None:
        text = self._buf
        cuts = []
        for m in _NEWLINE.finditer(text):
            if text[:m.start()].strip() and m.end() < len(text):
                cuts.append(m.start())
                break
        for m in _SENTENCE_END.finditer(text):
            if _is_boundary(text, m):
                cuts.append(m.end(2))
                break
        if self.first_clause and self._pieces_out == 0:
            for m in _CLAUSE_END.finditer(text):
                if len(text[:m.start()].split()) >= self.min_clause_words:
                    cuts.append(m.end(1))
                    break
            # a long first sentence: before a phrase's first word (the earliest cut wins, so a sentence
            # or clause boundary before it is taken instead, streamed or split at once alike)
            for m in _PHRASE_START.finditer(text):
                if len(text[:m.start()].split()) >= self.min_phrase_words:
                    cuts.append(m.start())
                    break
        return min(cuts) if cuts else None


def ends_sentence(piece: str) -> bool:
    return bool(_ENDS_SENTENCE.search(piece.strip()))


def split_pieces(text: str, first_clause: bool = False) -> list[str]:
    """All pieces of a finished text (what streaming would have produced)."""
    seg = TextPieces(first_clause=first_clause)
    return seg.push(text) + seg.flush()
