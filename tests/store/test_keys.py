"""Redis key names: one builder, prefixed, and usage buckets that sort by hour."""

from __future__ import annotations

import pytest

from botline.store.keys import RedisKeys, UsageBucket


def test_every_key_starts_with_the_prefix() -> None:
    keys = RedisKeys("tenant-a")
    assert keys.account("42") == "tenant-a:account:42"
    assert keys.gateway_by_slug("42", "support") == "tenant-a:account:42:gateway_slug:support"
    assert keys.message_ids("s1") == "tenant-a:session:s1:message_ids"
    assert keys.pattern() == "tenant-a:*"


def test_chat_client_and_session_index_keys() -> None:
    keys = RedisKeys("p")
    assert keys.chat_client("c1") == "p:chat_client:c1"
    assert keys.chat_clients_of_account("42") == "p:account:42:chat_clients"
    assert keys.sessions_by_expiry() == "p:sessions_by_expiry"


def test_a_free_form_tag_is_the_last_part_and_names_no_other_key() -> None:
    keys = RedisKeys("p")
    assert keys.sessions_with_tag("42", "c1", "wa:+33 6:x") == "p:account:42:client:c1:tag:wa:+33 6:x"
    assert keys.sessions_with_tag("42", "c1", "sessions") != keys.sessions_of_client("42", "c1")


def test_an_empty_prefix_is_refused() -> None:
    with pytest.raises(ValueError):
        RedisKeys("")


def test_glob_characters_in_the_prefix_are_escaped_in_the_pattern() -> None:
    assert RedisKeys("a*b?[c]").pattern() == r"a\*b\?\[c\]:*"


def test_a_usage_member_round_trips_any_model_name() -> None:
    bucket = UsageBucket(hour="2026-11-25T09", gateway_id="gw:1", model='vendor/model:free "beta"')
    assert UsageBucket.from_member(bucket.member()) == bucket


def test_usage_members_from_an_hour_sort_at_or_above_its_lex_bound() -> None:
    bound = UsageBucket.lex_from_hour("2026-11-25T09").removeprefix("[")
    before = UsageBucket(hour="2026-11-25T08", gateway_id="g", model="zzz").member()
    same = UsageBucket(hour="2026-11-25T09", gateway_id="a", model="a").member()
    after = UsageBucket(hour="2026-11-25T10", gateway_id="a", model="a").member()
    assert before < bound <= same < after


def test_inbound_and_lock_keys_end_with_their_free_form_part() -> None:
    keys = RedisKeys("p")
    assert (
        keys.inbound_pending("42", "c1", "Telegram", "+55 11:9") == "p:account:42:client:c1:inbound:Telegram:+55 11:9"
    )
    assert keys.inbound_dedupe("c1/Telegram/7:8") == "p:inbound_dedupe:c1/Telegram/7:8"
    assert keys.inbound_record("r1") == "p:inbound:r1"
    assert keys.lock("chat:a/b") == "p:lock:chat:a/b"
    assert keys.inbound_pending("42", "c1", "Telegram", "x") != keys.sessions_with_tag("42", "c1", "inbound")
