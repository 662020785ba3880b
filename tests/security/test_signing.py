"""Finding 17 (HMAC): the replay cache keyed on the raw header while the comparison stripped it, so the same signed
request with a space added was accepted again. A signed request is accepted once, however its header is spelled."""
import time

import pytest

from remediator.engine.errors import AuthError
from remediator.engine.intake.signing import SignatureCheck, sign

pytestmark = [pytest.mark.security, pytest.mark.unit]
BODY = b'{"version": "4"}'


@pytest.mark.parametrize("respelled", [lambda s: s + " ", lambda s: " " + s, lambda s: s + "\t", lambda s: f"  {s}  "])
def test_a_signed_request_is_accepted_once_however_its_header_is_spelled(respelled):
    check, now = SignatureCheck("s3cret", 300), time.time()
    ts = int(now)
    signature = sign("s3cret", ts, BODY)
    check.verify(str(ts), signature, BODY, now=now)
    with pytest.raises(AuthError, match="already received"):
        check.verify(str(ts), respelled(signature), BODY, now=now)


def test_the_control_a_new_request_is_accepted():
    check, now = SignatureCheck("s3cret", 300), time.time()
    check.verify(str(int(now)), sign("s3cret", int(now), BODY), BODY, now=now)
    check.verify(str(int(now) - 1), sign("s3cret", int(now) - 1, BODY), BODY, now=now)   # signed anew: accepted
