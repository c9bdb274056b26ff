"""Canonical JSON (`model.CANONICAL`) without its per-call cost, for code that encodes one row
or event at a time: content hashes, row text and audit commitments at ingest.

`JSONEncoder.encode` makes a new C encoder on every call, which costs about as much as encoding
a short row; here it is made once. The text is exactly what the encoder gives: the module
checks that on a probe value when it is imported, and tests/test_ingest_shortcuts.py on
random data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from pointbook.engine.model import CANONICAL, Event

__all__ = ["canonical_text", "content_hash", "direct_encoder"]

_PROBE = ['é"\\\n\u2028\x7f', 1, -2.5, 1e300, 10**20, True, False, None, {"b": [1, (2,)], "a": {}}]


def direct_encoder(like: json.JSONEncoder) -> Callable[[Any], str]:
    """``like.encode``, giving the same text, with the C encoder made once. No check for
    circular values (what is encoded here is flat rows). ``like.encode`` itself where the C
    encoder is missing or gives another text for the probe value."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None or like.indent is not None:
        return like.encode
    strings = (
        json.encoder.encode_basestring_ascii
        if like.ensure_ascii
        else json.encoder.encode_basestring
    )
    c_encode = make(
        None,
        like.default,
        strings,
        None,
        like.key_separator,
        like.item_separator,
        like.sort_keys,
        like.skipkeys,
        like.allow_nan,
    )

    def encode(value: Any) -> str:
        return "".join(c_encode(value, 0))

    return encode if encode(_PROBE) == like.encode(_PROBE) else like.encode


canonical_text = direct_encoder(CANONICAL)
_string = json.encoder.encode_basestring  # CANONICAL keeps non-ASCII text as is


def content_hash(event: Event) -> str:
    """`Event.content_hash`, the same digest: the canonical JSON of the same object, written
    out key by key in sorted order instead of built as a dict and sorted for every event."""
    attributes, evidence, issuer, incident = (
        event.attributes,
        event.evidence,
        event.issuer,
        event.incident,
    )
    text = (
        f'{{"attributes":{canonical_text(dict(attributes)) if attributes else "{}"}'
        f',"domain":{_string(event.domain)}'
        f',"evidence":{"null" if evidence is None else _string(evidence)}'
        f"{'' if incident is None else _INCIDENT + _string(incident)}"
        f',"issuer":{"null" if issuer is None else _string(issuer)}'
        f',"occurred_at":{_string(event.occurred_at.isoformat())}'
        f',"subject":{_string(event.subject)},"type":{_string(event.type)}}}'
    )
    return hashlib.sha256(text.encode()).hexdigest()


_INCIDENT = ',"incident":'
