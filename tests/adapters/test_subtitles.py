"""Subtitle parsing, rolling-line de-duplication and alignment of cues to clip spans."""

from __future__ import annotations

import json

import pytest

from pipelines.subtitles import (
    Cue,
    SubtitleError,
    align_clips,
    clip_text,
    cues_text,
    dedupe_rolling,
    load_subtitle_file,
    load_transcript_map,
    parse_cues,
    parse_transcript,
)

# YouTube auto-caption layout: no blank line between cues, word-timing tags, a 2-line roll.
YOUTUBE_VTT = """WEBVTT
Kind: captions
Language: en

00:00:01.000 --> 00:00:03.000 align:start position:0%
hello<00:00:01.500><c> there</c><00:00:02.000><c> my</c>
00:00:03.000 --> 00:00:03.010 align:start position:0%
hello there my

00:00:03.010 --> 00:00:05.000 align:start position:0%
hello there my
friends<00:00:03.500><c> welcome</c><00:00:04.000><c> back</c>

00:00:05.000 --> 00:00:07.000 align:start position:0%
friends welcome back
[Music]

00:00:20.000 --> 00:00:22.000
&gt;&gt; so today we cook
"""


def test_srt_and_plain_vtt_still_parse_as_before():
    srt = "1\n00:00:01,000 --> 00:00:02,500\nHello <i>world</i>\n\n2\n00:00:03,000 --> 00:00:04,000\n[Music]\n"
    cues = parse_cues(srt)
    assert cues == [Cue(1.0, 2.5, "Hello world"), Cue(3.0, 4.0, "")]
    assert cues_text(cues) == "Hello world"


@pytest.mark.parametrize(
    "content, message",
    [
        ("1\n00:00:01,000 --> garbage\nhello\n", r"^line 2: not a cue timing .*garbage"),
        ("1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\nsoon --> later\nx\n", r"^line 6: "),
        ("this is not a subtitle file at all", r"^line 1: no subtitle cues .*'this is not"),
        ("\n\n<html><body>404</body></html>\n", r"^line 3: no subtitle cues"),
    ],
)
def test_a_malformed_subtitle_file_is_an_error_naming_the_line(content, message):
    with pytest.raises(SubtitleError, match=message):
        parse_cues(content)


def test_empty_files_header_only_vtt_and_times_without_fraction_are_not_errors():
    assert parse_cues("") == [] and parse_cues("\n \n") == []
    assert parse_cues("\ufeffWEBVTT\nKind: captions\n\n") == []  # a video without speech
    assert parse_cues("1\n00:00:01 --> 00:00:02\nhi\n") == [Cue(1.0, 2.0, "hi")]
    assert parse_cues("WEBVTT\n\n01:02.500 --> 01:03.000 line:0 align:start\nhi") == [
        Cue(62.5, 63.0, "hi")
    ]


def test_youtube_vtt_cues_end_at_the_next_timing_line_and_lose_word_tags():
    cues = parse_cues(YOUTUBE_VTT)
    assert [c.text for c in cues] == [
        "hello there my",
        "hello there my",
        "hello there my friends welcome back",
        "friends welcome back",
        "so today we cook",
    ]
    assert cues[0] == Cue(1.0, 3.0, "hello there my", (1.0, 1.5, 2.0))  # each word's own time
    assert cues[1].words is None, "a cue without timing tags is timed as a whole"


def test_a_clip_edge_inside_a_word_timed_cue_splits_it_by_word():
    spans = [(0.0, 1.7), (1.7, 3.6), (3.6, 30.0)]
    assert align_clips(parse_cues(YOUTUBE_VTT), spans) == [
        "hello there",
        "my friends welcome",
        "back so today we cook",
    ]


def test_rolling_lines_are_kept_once():
    deduped = dedupe_rolling(parse_cues(YOUTUBE_VTT))
    assert [c.text for c in deduped] == [
        "hello there my",
        "friends welcome back",
        "so today we cook",
    ]
    assert [c.start for c in deduped] == [1.0, 3.01, 20.0]


def test_words_repeated_after_a_pause_are_speech_not_rolling():
    cues = [Cue(0.0, 1.0, "no"), Cue(5.0, 6.0, "no no")]
    assert [c.text for c in dedupe_rolling(cues)] == ["no", "no no"]


def test_transcript_display_overlap_is_cut_at_the_next_line():
    cues = parse_transcript(
        [
            {"text": "good morning", "start": 6.16, "duration": 4.479},
            {"text": "good morning looks like we&#39;re still", "start": 7.839, "duration": 3.601},
            {"text": "[Music]", "start": 11.44, "duration": 5.0},
        ]
    )
    deduped = dedupe_rolling(cues)
    assert deduped == [
        Cue(6.16, 7.839, "good morning"),
        Cue(7.839, 11.44, "looks like we're still"),
    ]
    assert clip_text(deduped, 8.0, 20.0) == "looks like we're still"


def test_cues_crossing_either_edge_count_and_touching_ones_do_not():
    cues = [
        Cue(0.0, 2.0, "before"),  # ends exactly at the span's start: touches only
        Cue(1.5, 3.0, "left edge"),
        Cue(4.0, 5.0, "inside"),
        Cue(5.5, 7.0, "right edge"),
        Cue(6.0, 6.0, "instant at end"),  # a zero-length cue at the span's end is outside
        Cue(6.0, 9.0, "after"),  # starts exactly at the span's end
    ]
    assert clip_text(cues, 2.0, 6.0) == "left edge inside right edge"
    assert clip_text(cues, 2.0, 6.0, min_overlap_s=0.75) == "left edge inside"
    assert clip_text(cues, None, None) == "before left edge inside right edge instant at end after"


def test_a_span_without_speech_gets_empty_text():
    cues = [Cue(0.0, 1.0, "hi"), Cue(10.0, 11.0, "bye"), Cue(4.0, 5.0, "")]
    assert align_clips(cues, [(2.0, 9.0), (0.5, 10.5)]) == ["", "hi bye"]


def test_transcript_errors_name_the_field():
    with pytest.raises(SubtitleError, match=r"vid\[1\]\.start: not a time"):
        parse_transcript(
            [{"text": "a", "start": 0, "duration": 1}, {"text": "b", "start": "x"}], "vid"
        )
    with pytest.raises(SubtitleError, match=r"\[0\]: no 'duration' or 'end'"):
        parse_transcript([{"text": "a", "start": 0}])


def test_video2dataset_clip_subtitles_with_timestamps_and_lines():
    cues = parse_transcript(
        [{"start": "00:59:24.560", "end": "00:59:27.710", "lines": ["ha", "ha"]}]
    )
    assert cues == [Cue(3564.56, 3567.71, "ha ha")]


def test_subtitle_files_by_extension(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"text": "hi", "start": 1, "duration": 1}]))
    (tmp_path / "a.vtt").write_text(YOUTUBE_VTT)
    assert load_subtitle_file(tmp_path / "a.json") == [Cue(1.0, 2.0, "hi")]
    assert len(load_subtitle_file(tmp_path / "a.vtt")) == 5


@pytest.mark.shared_data
def test_real_youtube_autocaption_vtt(shared_file):
    cues = parse_cues(shared_file("captions", "youtube_dl_autocaption.vtt").read_text())
    assert len(cues) == 4
    assert [c.text for c in dedupe_rolling(cues)] == [
        "yeah",
        "what",
        "this will happen is I'm telling",
    ]
    assert align_clips(cues, [(304.0, 306.0)]) == ["what this will happen is I'm telling"]
    # An edge at 304.5 s falls inside the word-timed cue: each word goes to one clip only.
    assert align_clips(cues, [(300.0, 304.5), (304.5, 310.0)]) == [
        "what this will happen",
        "is I'm telling",
    ]


@pytest.mark.shared_data
def test_real_youtube_asr_transcripts_lose_rolling_repeats_and_music_tags(shared_file):
    data = json.loads(shared_file("captions", "youtube_asr_vlog_half_a.json").read_text())
    transcripts = load_transcript_map(data)
    assert len(transcripts) == 235
    raw_words = deduped_words = 0
    for cues in transcripts.values():
        raw_words += sum(len(c.text.split()) for c in cues)
        deduped = dedupe_rolling(cues)
        deduped_words += sum(len(c.text.split()) for c in deduped)
        assert all("[" not in c.text for c in deduped)
        assert all(
            a.start <= b.start and a.end <= b.start + 1e-9 or a.end <= a.start
            for a, b in zip(deduped, deduped[1:])
        )
    first = dedupe_rolling(transcripts["bF_8I8hTH3U"])
    assert [c.text for c in first[:2]] == ["good morning", "looks like we're still"]
    assert deduped_words < raw_words


# yt-dlp's current auto-caption layout: a cue with no previous line to repeat (the first, and
# every cue after a pause) opens with a line holding one space, then the word-timed line.
YT_DLP_VTT = (
    "WEBVTT\nKind: captions\nLanguage: en\n\n"
    "00:00:00.000 --> 00:00:02.310 align:start position:0%\n \n"
    "hello<00:00:00.480><c> world</c>\n\n"
    "00:00:02.310 --> 00:00:02.320 align:start position:0%\nhello world\n \n\n"
    "00:00:02.320 --> 00:00:04.000 align:start position:0%\nhello world\n"
    "how<00:00:02.900><c> are</c><00:00:03.300><c> you</c>\n\n"
    "00:00:04.000 --> 00:00:04.010 align:start position:0%\nhow are you\n \n\n"
    "00:00:09.000 --> 00:00:11.000 align:start position:0%\n \n"
    "again<00:00:09.500><c> later</c>\n\n"
    "00:00:11.000 --> 00:00:11.010 align:start position:0%\nagain later\n \n"
)


def test_yt_dlp_cue_opening_with_a_space_line_keeps_its_timed_words():
    cues = parse_cues(YT_DLP_VTT)
    assert cues[0] == Cue(0.0, 2.31, "hello world", (0.0, 0.48))
    assert cues[4] == Cue(9.0, 11.0, "again later", (9.0, 9.5))
    assert align_clips(cues, [(0, 2), (2, 4), (4, 10), (10, 12)]) == [
        "hello world",  # said at 0.0-0.5 s, not at the 2.31 s flash cue
        "how are you",
        "again later",
        "",
    ]


def test_a_line_of_spaces_between_hand_written_cues_still_ends_the_cue():
    srt = (
        "1\n00:00:01,000 --> 00:00:02,000\nhello\n   \n"
        "2\n00:00:03,000 --> 00:00:04,000\nthere\n\t\n"
        "3\n00:00:05,000 --> 00:00:06,000\n  \n\n"
        "4\n00:00:07,000 --> 00:00:08,000\nfriend\n"
    )
    assert [c.text for c in parse_cues(srt)] == ["hello", "there", "", "friend"]
    # no blank line at all before the next cue number: the number is not text
    assert [c.text for c in parse_cues(srt.replace("hello\n   \n", "hello\n"))][:2] == [
        "hello",
        "there",
    ]


def _deduped(lines: list[tuple[str, float, float]]) -> list[str]:
    """The texts ``dedupe_rolling`` keeps of transcript JSON rows (text, start, duration)."""
    rows = [{"text": t, "start": start, "duration": d} for t, start, d in lines]
    return [c.text for c in dedupe_rolling(parse_transcript(rows))]


def test_partial_line_repeats_in_transcript_json_are_speech_and_kept():
    """Only a whole line shown just before is a rolling repeat; a few words said again stay."""
    kept = _deduped(
        [
            ("out there have the kind of help i had", 126.0, 5.36),
            ("i had a family that surrounded me", 128.319, 5),
            ("tell us about common", 140.0, 3.0),
            ("sense camp", 142.5, 3.0),
            ("common sense camp started as a joke", 144.0, 3.0),
        ]
    )
    assert kept == [
        "out there have the kind of help i had",
        "i had a family that surrounded me",
        "tell us about common",
        "sense camp",
        "common sense camp started as a joke",
    ]


def test_whole_previous_line_repeats_are_still_trimmed():
    kept = _deduped(
        [
            ("good morning", 6.16, 4.479),
            ("good morning looks like we're still", 7.839, 3.6),
            ("looks like we're still waiting", 10.6, 3.0),
        ]
    )
    assert kept == [
        "good morning",
        "looks like we're still",
        "waiting",
    ]
    # a two-line roll without flash cues: the line a cue added is what the next repeats
    rolled = parse_cues(
        "WEBVTT\n\n00:00:01.000 --> 00:00:03.000\nno no\n\n"
        "00:00:03.000 --> 00:00:05.000\nno no\nno no\n\n"
        "00:00:05.000 --> 00:00:07.000\nno no\nthe end\n"
    )
    assert [c.text for c in dedupe_rolling(rolled)] == ["no no", "no no", "the end"]


def test_real_autocaption_vtt_dedupes_to_each_word_once(shared_file):
    path = shared_file("captions", "youtube_dl_autocaption.vtt")
    cues = dedupe_rolling(load_subtitle_file(path))
    assert [c.text for c in cues] == ["yeah", "what", "this will happen is I'm telling"]


def test_real_transcript_json_keeps_its_repeated_speech(shared_file):
    """Before: 55 cues lost 98 words, mostly speech said twice; now only whole-line repeats."""
    data = json.loads(shared_file("captions", "youtube_asr_vlog_half_a.json").read_text())
    lost_cues = lost_words = 0
    for raw in load_transcript_map(data).values():
        kept = {c.start: len(c.text.split()) for c in dedupe_rolling(raw)}
        for cue in raw:
            lost = len(cue.text.split()) - kept.get(cue.start, 0)
            lost_cues += lost > 0
            lost_words += lost
    assert (lost_cues, lost_words) == (2, 7)


NESTED_SRT = (
    "1\n00:00:01,000 --> 00:00:09,000\nNARRATOR: the long road home\n\n"
    "2\n00:00:02,000 --> 00:00:03,000\nhey\n"
)


def test_a_cue_nested_inside_a_long_one_keeps_the_long_ones_text_in_later_clips():
    """The review's repro: cutting the narrator's cue at the nested "hey" lost its text after
    3 s, so align_clips disagreed with clip_text on the same span."""
    cues = parse_cues(NESTED_SRT)
    assert dedupe_rolling(cues) == [
        Cue(1.0, 9.0, "NARRATOR: the long road home"),
        Cue(2.0, 3.0, "hey"),
    ]
    assert align_clips(cues, [(0, 3), (4, 9), (3.5, 5)]) == [
        "NARRATOR: the long road home hey",
        "NARRATOR: the long road home",
        clip_text(cues, 3.5, 5),
    ]


def test_overlapping_speakers_keep_their_whole_display_time_until_a_line_rolls_over():
    cues = [
        Cue(1.0, 4.0, "- where are you"),
        Cue(1.0, 4.0, "- right here"),  # a second speaker at the same time
        Cue(4.5, 12.0, "the storm is coming"),
        Cue(6.0, 7.0, "what"),  # nested: both said at once
        Cue(8.0, 9.0, "run"),  # nested too
        Cue(10.0, 14.0, "we made it"),  # starts inside, ends after: the long line rolls over
    ]
    assert [(c.start, c.end) for c in dedupe_rolling(cues)] == [
        (1.0, 4.0),
        (1.0, 4.0),
        (4.5, 10.0),
        (6.0, 7.0),
        (8.0, 9.0),
        (10.0, 14.0),
    ]
    assert align_clips(cues, [(2, 3), (7.5, 8.5), (9.5, 11)]) == [
        "- where are you - right here",
        "the storm is coming run",
        "the storm is coming we made it",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1\n00:00:75,000 --> 00:01:20,000\nhi\n", r"^line 2: '00:00:75,000': minutes and"),
        ("WEBVTT\n\n00:61:00.000 --> 01:02:00.000\nhi\n", r"^line 3: '00:61:00.000': minutes"),
        (
            "WEBVTT\n\n00:00:01.000 --> 00:00:03.000\nhi<00:00:90.000><c> there</c>\n",
            r"^line 3: word time: '00:00:90.000': minutes and seconds must be below 60$",
        ),
    ],
)
def test_cue_times_with_minutes_or_seconds_past_59_stop_naming_the_line(content, message):
    with pytest.raises(SubtitleError, match=message):
        parse_cues(content)


def test_a_transcript_timestamp_past_59_minutes_names_the_field():
    with pytest.raises(SubtitleError, match=r"^v\[0\]\.start: '00:99:00\.000': minutes"):
        parse_transcript([{"text": "a", "start": "00:99:00.000", "duration": 1}], "v")
    assert parse_transcript([{"text": "a", "start": "100:59:59.5", "end": 363600}])[0].start == (
        100 * 3600 + 59 * 60 + 59.5
    )


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("if a < b and c > d then", "if a < b and c > d then"),
        ("x<y, y>z", "x<y, y>z"),
        ("<i>hello</i> <b>there</b> <u>you</u>", "hello there you"),
        ('<font color="#ffff00">yellow</font> text', "yellow text"),
        ("<c.colorE5E5E5>grey</c> <v Roger Bingham>we are</v>", "grey we are"),
        ("one<00:00:01.000><c> two</c>", "one two"),
        (r"{\an8}on top {\i1}slanted{\i0}", "on top slanted"),
        ("a &lt;i&gt; in speech", "a <i> in speech"),
        ("line<br>two<BR />three<br/>four", "line two three four"),
        ("<b >spaced</b > <i/>empty <rp>(</rp>", "spaced empty ("),
    ],
)
def test_only_markup_is_stripped_and_a_bare_less_than_is_speech(raw, clean):
    assert parse_cues(f"1\n00:00:01,000 --> 00:00:02,000\n{raw}\n")[0].text == clean


def test_minutes_past_59_are_read_where_no_hours_field_bounds_them():
    """mm:ss for videos over an hour (``75:30.000``) is a form some tools write; under an
    hours field ``01:75:00`` can only be a typo."""
    (cue,) = parse_cues("WEBVTT\n\n75:30.000 --> 75:32.500\nlate\n")
    assert (cue.start, cue.end) == (4530.0, 4532.5)
    with pytest.raises(SubtitleError, match="minutes and seconds must be below 60"):
        parse_cues("WEBVTT\n\n01:75:00.000 --> 01:75:02.000\nhi\n")
