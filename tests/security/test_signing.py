"""Finding 17 (HMAC): the replay cache keyed on the raw header while the comparison stripped it, so the same signed
request with a space added was accepted again. A signed request is accepted once, however its header is spelled.
N16 of the second review: the cache was one process' memory, so each replica, and each restart, took a replay once
more; the signatures seen are in the store now."""
import time

import pytest

from remediator.engine.errors import AuthError
from remediator.engine.people.signing import SignatureCheck, sign
from remediator.engine.store.db import Store

pytestmark = [pytest.mark.security, pytest.mark.unit, pytest.mark.store]
BODY = b'{"version": "4"}'


@pytest.fixture
def store(tmp_path, database_url):
    s = Store(database_url or f"sqlite:///{tmp_path / 'r-inbox.db'}")
    s.migrate()
    return s


@pytest.mark.parametrize("respelled", [lambda s: s + " ", lambda s: " " + s, lambda s: s + "\t", lambda s: f"  {s}  "])
def test_a_signed_request_is_accepted_once_however_its_header_is_spelled(store, respelled):
    check, now = SignatureCheck("s3cret", 300, store), time.time()
    ts = int(now)
    signature = sign("s3cret", ts, BODY)
    check.verify(str(ts), signature, BODY, now=now)
    with pytest.raises(AuthError, match="already received"):
        check.verify(str(ts), respelled(signature), BODY, now=now)


def test_a_replay_to_another_replica_or_after_a_restart_is_refused(store):
    """N16: replica A accepts a signed request; the same request sent to replica B (or to A restarted) is a replay."""
    now = time.time()
    signature = sign("s3cret", int(now), BODY)
    SignatureCheck("s3cret", 300, store).verify(str(int(now)), signature, BODY, now=now)
    with pytest.raises(AuthError, match="already received"):
        SignatureCheck("s3cret", 300, store).verify(str(int(now)), signature, BODY, now=now + 5)


def test_the_control_a_new_request_is_accepted_and_one_not_taken_may_come_again(store):
    check, now = SignatureCheck("s3cret", 300, store), time.time()
    check.verify(str(int(now)), sign("s3cret", int(now), BODY), BODY, now=now)
    seen = check.verify(str(int(now) - 1), sign("s3cret", int(now) - 1, BODY), BODY, now=now)   # signed anew
    check.forget(seen)   # that request got a 503: the sender's retry is not a replay
    check.verify(str(int(now) - 1), sign("s3cret", int(now) - 1, BODY), BODY, now=now + 1)


def test_signatures_are_kept_only_while_their_timestamp_is_in_the_window(store):
    from sqlalchemy import func, select

    from remediator.engine.store.tables import SeenSignature
    check, now = SignatureCheck("s3cret", 60, store), time.time()
    for n in range(5):
        check.verify(str(int(now)), sign("s3cret", int(now), BODY + bytes([n])), BODY + bytes([n]), now=now)
    later = now + 120
    check.verify(str(int(later)), sign("s3cret", int(later), BODY), BODY, now=later)
    with store.read() as session:
        assert session.execute(select(func.count()).select_from(SeenSignature)).scalar_one() == 1
