"""Credentials in recorded text are masked: an ``x-api-key`` or ``authorization`` header
or assignment whose value has no recognisable key shape (not ``sk-...``, not ``Bearer``)
loses its value in the ledger's ``mask_secrets`` and in the adapters' ``redact``; the
text around it stays."""

import pytest

from compactor.adapters._resilience import redact
from compactor.ledger._codec import mask_secrets

SECRET = "live9f8e7d6c5b4a3210"

CASES = [
    f"x-api-key: {SECRET}",
    f"X-Api-Key={SECRET}",
    f"authorization: {SECRET}",
    f"Authorization={SECRET}",
    f'{{"x-api-key": "{SECRET}", "status": 401}}',
    f"upstream said: invalid request (authorization: {SECRET}); retry later",
]


@pytest.mark.parametrize("text", CASES)
@pytest.mark.parametrize("mask", [mask_secrets, redact], ids=["mask_secrets", "redact"])
def test_header_secret_without_a_key_shape_is_masked(mask, text):
    """The value after x-api-key / authorization is gone, the text around it stays, and
    masking twice changes nothing more."""
    out = mask(text)
    assert SECRET not in out, out
    for around in ("upstream said", "retry later", '"status": 401'):
        assert (around in out) == (around in text)
    assert mask(out) == out


@pytest.mark.parametrize("mask", [mask_secrets, redact], ids=["mask_secrets", "redact"])
def test_prose_about_authorization_is_left_alone(mask):
    """Words without a value are not secrets: prose about authorization passes unchanged."""
    text = "the authorization step failed before the api key was checked"
    assert mask(text) == text
