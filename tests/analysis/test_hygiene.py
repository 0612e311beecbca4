"""Subtitle markup, sound tags, empties and repeats are cleaned and counted."""

from __future__ import annotations

from analysis.hygiene import TextHygiene, clean_sentences, strip_markup


def test_strip_markup_removes_vtt_word_timing_tags_and_sound_tags():
    raw = "this<00:05:04.199><c> will</c><c.colorE5E5E5><00:05:04.379><c> happen</c></c> [Music]"
    assert strip_markup(raw) == "this will happen"
    assert strip_markup("00:00:01,000 --> 00:00:02,000") == ""
    assert strip_markup("<i>hello</i>  (applause) there") == "hello there"


def test_clean_sentences_drops_and_counts_empty_and_duplicate_lines():
    texts = ["[Music]", "good morning", "good morning", "", "Good Morning", "  "]
    kept, stats = clean_sentences(texts, TextHygiene())
    assert kept == ["good morning", "Good Morning"]
    assert (stats.total, stats.empty, stats.duplicates, stats.kept) == (6, 3, 1, 2)


def test_lowercase_and_keep_options():
    texts = ["Good Morning [Music]", "good morning [Music]"]
    kept, stats = clean_sentences(texts, TextHygiene(lowercase=True))
    assert kept == ["good morning"] and stats.duplicates == 1
    kept, _ = clean_sentences(texts, TextHygiene(strip_markup=False, drop_duplicates=False))
    assert kept == texts


def test_a_cue_timing_is_stripped_without_the_text_after_it():
    # A timing line joined into a sentence (a reader that missed a cue boundary) loses only the
    # times and cue settings, not the next cue's words.
    joined = "yeah what 00:05:04.080 --> 00:05:05.069 align:start position:0% this will happen"
    assert strip_markup(joined) == "yeah what this will happen"
    assert strip_markup("hi 00:00:01,000 --> 00:00:02,000 X1:10 X2:20 Y1:1 Y2:2 there") == (
        "hi there"
    )
    assert strip_markup("00:01.000 --> 00:02.000 line:0") == ""
    assert strip_markup("meet at 10:30 -> ratio a:b") == "meet at 10:30 -> ratio a:b"
