from pipelines.keys import MAX_KEY, derive_key, safe_key
from shards.format import FIELDS, MAX_MEMBER_NAME


def test_given_safe_keys_are_kept_unchanged():
    assert safe_key("video_0001-a") == "video_0001-a"


def test_keys_lose_dots_slashes_and_parent_refs_and_stay_distinct():
    hostile = ["../../etc/passwd", "a.b", "a_b", "clip/../x", "..", "ü.mp4", ""]
    keys = [safe_key(k) for k in hostile]
    for key in keys:
        assert key and "." not in key and "/" not in key
        assert all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in key)
    assert len(set(keys)) == len(keys), "cleaning must never merge two different ids"


def test_derived_keys_are_deterministic_and_depend_on_the_span():
    a = derive_key("/data/My Video.v2.mp4", 1.0, 2.5)
    assert a == derive_key("/data/My Video.v2.mp4", 1.0, 2.5)
    assert a != derive_key("/data/My Video.v2.mp4", 1.0, 3.0)
    assert a.startswith("My_Video-") and "." not in a
    assert derive_key("s3://b/x.mp4", None, None) != derive_key("s3://b/y.mp4", None, None)


def test_long_ids_are_cut_and_hashed_so_every_member_name_fits_a_tar_header():
    ids = ["k" * 85 + ".x", "k" * 200, "k" * 80, "k" * 81, "ü" * 300, "a/" * 90]
    keys = [safe_key(i) for i in ids]
    assert keys[2] == "k" * 80, "a safe id up to the limit is kept as it is"
    assert len(set(keys)) == len(keys)
    longest = max(FIELDS, key=len)
    for key in keys:
        assert len(key) <= MAX_KEY and len(f"{key}.{longest}") <= MAX_MEMBER_NAME
