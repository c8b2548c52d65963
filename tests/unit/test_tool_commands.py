"""Arguments of the owner's /members, /export, /grant and /revoke: every bad one says why."""

import pytest

from bot.commands import (
    ArgError,
    parse_grant_args,
    parse_group_arg,
    parse_revoke_args,
    parse_user_ref,
)
from bot.i18n import t
from bot.messages import CATALOG
from membership.admin import UserRef


@pytest.mark.parametrize(
    "token,ref",
    [
        ("@bob_99", UserRef(username="bob_99")),
        ("@Bob", UserRef(username="Bob")),
        ("2002", UserRef(platform_user_id="2002")),
        ("007", UserRef(platform_user_id="7")),
    ],
)
def test_user_refs(token, ref):
    assert parse_user_ref(token) == ref


@pytest.mark.parametrize(
    "token", ["bob", "@", "@b", "@bad-name", "0", "-5", "12a", "@" + "x" * 33, "1" * 20]
)
def test_bad_user_refs(token):
    with pytest.raises(ArgError) as err:
        parse_user_ref(token)
    assert err.value.key == "user_ref_invalid" and err.value.params == {"ref": token}


def test_grant_args():
    a = parse_grant_args("@bob 1 30d")
    assert (a.user, a.group_ref, a.duration_days) == (UserRef(username="bob"), "1", 30)
    a = parse_grant_args("  2002   #3  lifetime ")
    assert (a.user, a.group_ref, a.duration_days) == (UserRef(platform_user_id="2002"), "3", None)
    assert parse_grant_args("2002 -1001234 1y").group_ref == "-1001234"


@pytest.mark.parametrize(
    "args,key",
    [
        (None, "missing_args"),
        ("", "missing_args"),
        ("@bob 1", "missing_args"),
        ("@bob 1 30d extra", "too_many_args"),
        ("bob 1 30d", "user_ref_invalid"),
        ("@bob one 30d", "group_ref_invalid"),
        ("1 @bob 30d", "group_ref_invalid"),
        ("@bob 1 3x", "not a duration"),
        ("@bob 1 0d", "at least one day"),
        ("@bob 1 11y", "longer than ten years"),
    ],
)
def test_bad_grant_args(args, key):
    with pytest.raises(ArgError, match=key):
        parse_grant_args(args)


def test_revoke_args():
    a = parse_revoke_args("@bob 2")
    assert (a.user, a.group_ref) == (UserRef(username="bob"), "2")


@pytest.mark.parametrize(
    "args,key",
    [
        (None, "missing_args"),
        ("@bob", "missing_args"),
        ("@bob 1 30d", "too_many_args"),
        ("bob 1", "user_ref_invalid"),
        ("@bob x", "group_ref_invalid"),
    ],
)
def test_bad_revoke_args(args, key):
    with pytest.raises(ArgError, match=key):
        parse_revoke_args(args)


def test_group_arg():
    assert parse_group_arg(" 3 ") == "3"
    assert parse_group_arg("#3") == "3"
    for args, key in [
        (None, "missing_args"),
        ("1 2", "too_many_args"),
        ("abc", "group_ref_invalid"),
    ]:
        with pytest.raises(ArgError, match=key):
            parse_group_arg(args)


def test_every_reason_key_is_in_both_languages():
    for key, params in [
        ("too_many_args", {"extra": "x"}),
        ("user_ref_invalid", {"ref": "x"}),
        ("missing_args", {}),
        ("group_ref_invalid", {"ref": "x"}),
    ]:
        assert key in CATALOG
        assert t(key, "zh", **params) and t(key, "en", **params)
