"""The DKIM-Signature field (RFC 6376 3.5, 5): made over the message exactly as the SMTP client will send it.

The message is streamed once from its spool for the body hash (``bh=``), then the chosen header fields and the new
field itself (with ``b=`` empty) are canonicalized and signed. The receiver holds what the wire carried with the
dot-stuffing undone: the same line-ending conversion as :mod:`esmtp.smtp.wire`, which is applied here before
canonicalization, so the signature covers the bytes sent whatever line endings the caller used. The header block
and the body are bytes as given (8-bit and UTF-8 headers included: SMTPUTF8 and 8BITMIME send them unchanged).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import NamedTuple

from esmtp.message import Message
from esmtp.smtp.wire import crlf_lines

from .dkim_canon import BodyHasher, canonical_header, crlf
from .dkim_keys import SigningKey

#: Folded lines of the new field stay within this many characters.
WIDTH = 78


class Signature(NamedTuple):
    """What one signature is made with."""

    domain: str  # d=, in ASCII (IDNA)
    selector: str  # s=
    key: SigningKey
    headers: tuple[str, ...]  # lower-case names to sign, in order; From is signed once more than it occurs
    header_canon: str
    body_canon: str


def body_chunks(message: Message) -> Iterator[bytes]:
    """The body as the receiver holds it: what :meth:`Message.chunks` yields after the header block and its blank
    line, with CRLF line endings."""
    head = message.header_bytes()
    skip = len(head) + len(message.newline) if head else 0

    def raw() -> Iterator[bytes]:
        left = skip
        for chunk in message.chunks():
            if left:
                if len(chunk) <= left:
                    left -= len(chunk)
                    continue
                chunk, left = chunk[left:], 0
            yield chunk

    return crlf_lines(raw())


def body_hashes(message: Message, canons: set[str]) -> dict[str, bytes]:
    """The SHA-256 body hash for each body canonicalization in ``canons``, all in one pass over the spool."""
    hashers = {canon: BodyHasher(canon) for canon in canons}
    for chunk in body_chunks(message):
        for hasher in hashers.values():
            hasher.update(chunk)
    return {canon: hasher.finish() for canon, hasher in hashers.items()}


def _field_name(raw: bytes) -> str:
    return raw.split(b":", 1)[0].strip().decode("ascii", "replace").lower()


def signed_names(message: Message, wanted: tuple[str, ...]) -> list[str]:
    """``h=``: each wanted name once per field of that name in the message, From once more (oversigned: a From
    added later breaks the signature)."""
    present = [_field_name(raw) for raw in message.headers]
    names: list[str] = []
    for name in wanted:
        names += [name] * (present.count(name) + (name == "from"))
    return names


def _selected(message: Message, names: list[str], canon: str) -> bytes:
    """The canonicalized fields ``names`` picks, each name taking its fields from the bottom up (RFC 6376 5.4.2);
    a name with no field left contributes nothing."""
    fields: dict[str, list[bytes]] = {}
    for raw in message.headers:
        fields.setdefault(_field_name(raw), []).append(raw)
    out = []
    for name in names:
        stack = fields.get(name)
        if stack:
            out.append(canonical_header(stack.pop(), canon))
    return b"".join(out)


def _fold(words: list[str], newline: str, first: int) -> str:
    """``words`` joined by spaces (a word ending in ``:`` by nothing), broken before a word that would pass
    :data:`WIDTH`. ``first``: the columns already used on the first line."""
    lines, line, used = [], "", first
    for word in words:
        gap = "" if not line or line.endswith(":") else " "
        if line and used + len(gap) + len(word) > WIDTH:
            lines.append(line)
            line, used, gap = "", 1, ""
        line += gap + word
        used += len(gap) + len(word)
    lines.append(line)
    return (newline + "\t").join(lines)


def make_field(message: Message, signature: Signature, body_hash: bytes, now: int) -> bytes:
    """The complete ``DKIM-Signature:`` field (with the message's line ending) for ``signature``."""
    newline = message.newline.decode("ascii")
    names = signed_names(message, signature.headers)
    h_words = [f"{name}:" for name in names[:-1]] + [names[-1]] if names else []
    h_words[0] = "h=" + h_words[0] if h_words else "h="
    words = [
        "v=1;", f"a={signature.key.algorithm};", f"c={signature.header_canon}/{signature.body_canon};",
        f"d={signature.domain};", f"s={signature.selector};", f"t={now};", *h_words[:-1], h_words[-1] + ";",
        f"bh={base64.b64encode(body_hash).decode('ascii')};", "b=",
    ]
    unsigned = "DKIM-Signature: " + _fold(words, newline, len("DKIM-Signature: "))
    # The field as signed: b= empty, no line ending (RFC 6376 3.7).
    data = _selected(message, names, signature.header_canon)
    data += canonical_header(unsigned.encode("ascii"), signature.header_canon)[:-2]
    value = base64.b64encode(signature.key.sign(data)).decode("ascii")
    last = len(unsigned) - max(unsigned.rfind("\n"), -1) - 1
    room = max(WIDTH - last, 8)
    pieces = [value[:room], *(value[i : i + WIDTH - 1] for i in range(room, len(value), WIDTH - 1))]
    return (unsigned + (newline + "\t").join(pieces)).encode("ascii") + message.newline


def tags(raw: bytes) -> dict[str, str]:
    """The tags of a DKIM-Signature field (white space removed), for finding a signature of our own."""
    value = crlf(raw).split(b":", 1)[1].decode("ascii", "replace")
    found = {}
    for part in value.split(";"):
        name, _, text = part.partition("=")
        found[name.strip()] = "".join(text.split())
    return found


def sign(message: Message, signatures: list[Signature], now: int | None = None) -> int:
    """Add one DKIM-Signature field per entry of ``signatures`` at the top of the header block, after removing any
    earlier field with the same ``d=`` and ``s=`` (a try of this message that was queued after it failed). Returns
    the number of fields removed."""
    removed = 0
    ours = {(s.domain.lower(), s.selector) for s in signatures}
    kept = []
    for raw in message.headers:
        if _field_name(raw) == "dkim-signature":
            found = tags(raw)
            if (found.get("d", "").lower(), found.get("s", "")) in ours:
                removed += 1
                continue
        kept.append(raw)
    message.headers[:] = kept
    stamp = int(time.time()) if now is None else now
    hashes = body_hashes(message, {s.body_canon for s in signatures})
    fields = [make_field(message, s, hashes[s.body_canon], stamp) for s in signatures]
    message.headers[:0] = fields
    return removed
