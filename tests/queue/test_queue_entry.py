"""A queue entry keeps the whole envelope: what is queued is what a flush sends."""

from __future__ import annotations

import dataclasses
import time

from esmtp_plugins.queue.entry import ENVELOPE_FIELDS, Entry, error_kind, new_id

from esmtp.config.model import Identity
from esmtp.errors import LocalDeliveryError, RecipientsRejected, TemporaryFailure
from esmtp.types import Envelope, EnvelopeDetails


def test_every_optional_envelope_field_survives_the_queue() -> None:
    identity = Identity(address="me@example.org")
    details = {"full_name": "José", "notify": "SUCCESS,FAILURE", "ret": "HDRS", "envid": "env 1",
               "body_type": "8BITMIME", "from_headers": True, "given_sender": "me@example.org", "client": "192.0.2.7",
               "submitter": 33}
    assert set(details) == set(ENVELOPE_FIELDS) == {f.name for f in dataclasses.fields(EnvelopeDetails)}
    envelope = Envelope("me@example.org", ["b@example.net", "c@example.net"], identity, **details)
    entry = Entry.from_envelope(envelope, ["c@example.net"], id=new_id(), created=time.time(), size=0, header_size=0)
    stored = Entry.from_json(entry.to_json())
    assert stored.identity == "me@example.org"
    assert stored.to_envelope(identity) == dataclasses.replace(envelope, recipients=["c@example.net"])


def test_error_kinds_decide_the_retry_schedule() -> None:
    assert error_kind(TemporaryFailure("421 busy", code=421)) == "reply"
    assert error_kind(RecipientsRejected("refused", rejected={"b@x": "450 later"})) == "reply"
    assert error_kind(TemporaryFailure("connection refused")) == "connect"
    assert error_kind(LocalDeliveryError("the MDA failed", exit_code=75)) == "local"
