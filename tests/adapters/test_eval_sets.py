"""MSR-VTT, DiDeMo and ActivityNet Captions release files -> evaluation manifest rows."""

from __future__ import annotations

import json
import re

import pytest

from pipelines.adapters import build_manifest
from pipelines.adapters.didemo import moment
from pipelines.manifest import ManifestError

MSRVTT_CSV = (
    "key,vid_key,video_id,sentence\nret0,msr1,video1,a man sings\nret1,msr2,video2,a dog runs\n"
)
MSRVTT_JSON = {
    "videos": [{"video_id": "video1"}, {"video_id": "video2"}],
    "sentences": [
        {"video_id": "video1", "caption": "someone is singing", "sen_id": 5},
        {"video_id": "video1", "caption": "a man sings", "sen_id": 7},
        {"video_id": "video1", "caption": "music  video", "sen_id": 1},
        {"video_id": "video2", "caption": "a dog runs", "sen_id": 2},
    ],
}


@pytest.fixture
def msrvtt_files(tmp_path, video_folder):
    (tmp_path / "test.csv").write_text(MSRVTT_CSV)
    (tmp_path / "data.json").write_text(json.dumps(MSRVTT_JSON))
    return tmp_path, video_folder(tmp_path / "videos", ["video1.mp4"])


def test_msrvtt_one_row_per_video_keeps_all_sentences_csv_sentence_first(msrvtt_files):
    d, videos = msrvtt_files
    rows, report = build_manifest(
        "msrvtt", [str(d / "test.csv"), str(d / "data.json")], str(videos)
    )
    assert [r["key"] for r in rows] == ["video1"]
    assert rows[0]["text"] == "a man sings"
    assert rows[0]["sentences"] == ["a man sings", "music video", "someone is singing"]
    assert rows[0]["video"] == str(videos / "video1.mp4") and rows[0]["start"] is None
    assert (report.read, report.kept, dict(report.dropped)) == (2, 1, {"video not found": 1})
    assert report.missing_videos == ["video2"]


def test_msrvtt_per_sentence_gives_one_row_per_sentence(msrvtt_files):
    d, videos = msrvtt_files
    rows, report = build_manifest("msrvtt", [str(d / "data.json")], str(videos), per_sentence=True)
    assert [(r["key"], r["text"]) for r in rows] == [
        ("video1-s00", "music video"),
        ("video1-s01", "someone is singing"),
        ("video1-s02", "a man sings"),
    ]
    assert report.dropped["video not found"] == 1


def test_msrvtt_per_sentence_lists_a_missing_video_once(msrvtt_files):
    d, videos = msrvtt_files
    gone = {"video_id": "video9", "caption": "x", "sen_id": 0}
    data = dict(
        MSRVTT_JSON, sentences=[*MSRVTT_JSON["sentences"], gone, dict(gone, sen_id=1, caption="y")]
    )
    (d / "data.json").write_text(json.dumps(data))
    _, report = build_manifest("msrvtt", [str(d / "data.json")], str(videos), per_sentence=True)
    assert report.dropped["video not found"] == 3  # one per sentence: video2's one, video9's two
    assert report.missing_videos == ["video2", "video9"]


def test_msrvtt_json_whose_videos_is_not_a_list_names_the_field(tmp_path, video_folder):
    (tmp_path / "m.json").write_text('{"videos": 5, "sentences": []}')
    with pytest.raises(ManifestError) as info:
        build_manifest("msrvtt", [str(tmp_path / "m.json")], str(video_folder(tmp_path / "v", [])))
    assert str(info.value) == f"{tmp_path / 'm.json'}: field 'videos': expected list, got int"


def test_msrvtt_csv_unclosed_quote_stops_naming_the_line_it_opened_on(tmp_path, video_folder):
    (tmp_path / "q.csv").write_text(
        MSRVTT_CSV + 'ret2,msr3,video3,"never closed\nret3,m,video4,x\n'
    )
    with pytest.raises(
        ManifestError, match=r"q\.csv:4: a quoted field opened on this line is never"
    ):
        build_manifest("msrvtt", [str(tmp_path / "q.csv")], str(video_folder(tmp_path / "v", [])))


def test_msrvtt_csv_with_a_short_row_names_the_line(tmp_path, video_folder):
    (tmp_path / "bad.csv").write_text(MSRVTT_CSV + "ret2,msr3\n")
    with pytest.raises(ManifestError, match=r"bad\.csv:4: 2 fields, the header has 4"):
        build_manifest("msrvtt", [str(tmp_path / "bad.csv")], str(video_folder(tmp_path / "v", [])))


@pytest.mark.shared_data
def test_msrvtt_real_1ka_csv(shared_file, tmp_path, video_folder):
    csv_path = shared_file("captions", "MSRVTT_JSFUSION_test.csv")
    videos = video_folder(tmp_path / "videos", [f"video{i}.mp4" for i in range(7000, 10000)])
    rows, report = build_manifest("msrvtt", [str(csv_path)], str(videos))
    assert report.read == 1000 and len(rows) == 1000 == report.kept
    assert (
        rows[0]["key"] == "video9770"
        and rows[0]["text"] == "a person is connecting something to system"
    )
    assert len({r["key"] for r in rows}) == 1000


DIDEMO = [
    {
        "annotation_id": 3,
        "video": "abc@N01_1.mov",
        "description": "the dog  jumps",
        "times": [[1, 1], [1, 2], [1, 1], [0, 0]],
    },
    {"annotation_id": 4, "video": "abc@N01_1.mov", "description": "a man waves", "times": [[0, 0]]},
    {"annotation_id": 9, "video": "gone.mp4", "description": "nothing", "times": [[2, 3]]},
]


def test_didemo_consensus_moment_in_5_second_segments():
    assert moment([[1, 1], [1, 2], [1, 1], [0, 0]], "t") == (1, 1)
    assert moment([[2, 3], [0, 1]], "t") == (0, 1)  # a tie goes to the earliest moment


def test_didemo_one_row_per_moment_and_one_paragraph_per_video(tmp_path, video_folder):
    (tmp_path / "didemo.json").write_text(json.dumps(DIDEMO))
    videos = str(video_folder(tmp_path / "v", ["abc@N01_1.mp4"]))
    rows, report = build_manifest("didemo", [str(tmp_path / "didemo.json")], videos)
    assert [(r["key"], r["start"], r["end"], r["text"]) for r in rows] == [
        ("abc@N01_1-3", 5.0, 10.0, "the dog jumps"),
        ("abc@N01_1-4", 0.0, 5.0, "a man waves"),
    ]
    assert dict(report.dropped) == {"video not found": 1}
    rows, report = build_manifest(
        "didemo", [str(tmp_path / "didemo.json")], videos, mode="paragraph"
    )
    assert [(r["key"], r["start"], r["text"]) for r in rows] == [
        ("abc@N01_1", None, "a man waves the dog jumps")
    ]
    assert (report.read, report.kept) == (2, 1)


def test_didemo_bad_times_name_the_field(tmp_path, video_folder):
    bad = [dict(DIDEMO[0], times=[[1, 1], [3]])]
    (tmp_path / "d.json").write_text(json.dumps(bad))
    with pytest.raises(
        ManifestError, match=r"d\.json: \[0\]\.times\[1\]: expected \[start_segment"
    ):
        build_manifest("didemo", [str(tmp_path / "d.json")], str(video_folder(tmp_path / "v", [])))


@pytest.mark.parametrize(
    ("times", "shown"),
    [("[[NaN, 1]]", "NaN"), ("[[1, Infinity]]", "Infinity"), ("[[1e400, 1]]", "Infinity")],
)
def test_didemo_times_that_are_not_finite_stop_naming_the_field(
    tmp_path, video_folder, times, shown
):
    (tmp_path / "d.json").write_text(
        '[{"video": "a.mp4", "description": "d", "times": ' + times + "}]"
    )
    with pytest.raises(ManifestError) as info:
        build_manifest("didemo", [str(tmp_path / "d.json")], str(video_folder(tmp_path / "v", [])))
    assert str(info.value).startswith(f"{tmp_path / 'd.json'}: [0].times[0]: not a segment index")
    assert str(info.value).endswith(shown)


ANET = {
    "v_aaa": {
        "duration": 20.0,
        "timestamps": [[5.0, 12.0], [-1.0, 4.0], [25.0, 30.0]],
        "sentences": [" Then he jumps.", "A man  runs.", "Out of range."],
    },
    "v_bbb": {"duration": 9.0, "timestamps": [[0, 9]], "sentences": ["Nobody has this video."]},
}


def test_activitynet_segments_are_clamped_and_paragraphs_time_ordered(tmp_path, video_folder):
    (tmp_path / "val.json").write_text(json.dumps(ANET))
    videos = str(video_folder(tmp_path / "v", ["aaa.mp4"]))  # downloaded without the v_ prefix
    rows, report = build_manifest("activitynet", [str(tmp_path / "val.json")], videos)
    assert [(r["key"], r["start"], r["end"], r["text"]) for r in rows] == [
        ("v_aaa-000", 5.0, 12.0, "Then he jumps."),
        ("v_aaa-001", 0.0, 4.0, "A man runs."),
    ]
    assert dict(report.dropped) == {
        "empty span after clamping to the video's duration": 1,
        "video not found": 1,
    }
    rows, _ = build_manifest("activitynet", [str(tmp_path / "val.json")], videos, mode="paragraph")
    assert rows[0]["text"] == "A man runs. Then he jumps. Out of range."
    assert rows[0]["start"] is None and rows[0]["duration"] == 20.0


def test_activitynet_mismatched_lists_stop_naming_the_video(tmp_path, video_folder):
    bad = {"v_x": {"duration": 5, "timestamps": [[0, 1]], "sentences": ["a", "b"]}}
    (tmp_path / "a.json").write_text(json.dumps(bad))
    with pytest.raises(ManifestError, match=r"a\.json: v_x: 1 timestamps but 2 sentences"):
        build_manifest(
            "activitynet", [str(tmp_path / "a.json")], str(video_folder(tmp_path / "v", []))
        )


def test_json_syntax_error_names_line_and_column(tmp_path, video_folder):
    (tmp_path / "a.json").write_text('{"v_x": {"duration": 5,\n "timestamps": [[0, 1]], }}')
    with pytest.raises(ManifestError, match=r"a\.json:2:\d+: not valid JSON"):
        build_manifest(
            "activitynet", [str(tmp_path / "a.json")], str(video_folder(tmp_path / "v", []))
        )


@pytest.mark.shared_data
def test_activitynet_real_val_1(shared_file, tmp_path, video_folder):
    path = shared_file("captions", "activitynet_val_1.json")
    ids = list(json.loads(path.read_text()))
    videos = str(video_folder(tmp_path / "v", [f"{vid}.mp4" for vid in ids]))
    rows, report = build_manifest("activitynet", [str(path)], videos)
    assert report.read == 17505
    assert report.kept + sum(report.dropped.values()) == 17505
    assert report.kept > 17000
    assert all(0 <= r["start"] < r["end"] <= r["duration"] for r in rows)
    assert not any(r["text"].startswith(" ") for r in rows)
    paragraphs, report = build_manifest("activitynet", [str(path)], videos, mode="paragraph")
    assert len(paragraphs) == 4917 == report.kept


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ('{"duration": 3.0, "timestamps": [[0.5, NaN]], "sentences": ["a"]}', "timestamps[0]"),
        ('{"duration": NaN, "timestamps": [[0.5, 1]], "sentences": ["a"]}', "duration"),
        ('{"duration": 3.0, "timestamps": [[-Infinity, 1]], "sentences": ["a"]}', "timestamps[0]"),
    ],
    ids=["nan-end", "nan-duration", "infinite-start"],
)
def test_activitynet_nan_or_infinite_times_stop_naming_the_field(
    tmp_path, video_folder, entry, field
):
    (tmp_path / "a.json").write_text('{"v_abc": ' + entry + "}")
    videos = str(video_folder(tmp_path / "v", ["v_abc.mp4"]))
    with pytest.raises(ManifestError, match=rf"a\.json: v_abc\.{re.escape(field)}: not a time: "):
        build_manifest("activitynet", [str(tmp_path / "a.json")], videos)


def test_activitynet_reversed_and_empty_segments_are_dropped_by_their_own_reason(
    tmp_path, video_folder
):
    entry = {
        "duration": 3.0,
        "timestamps": [[2.0, 0.5], [1.0, 1.0], [4.0, 5.0], [0.5, 2.0]],
        "sentences": ["reversed", "empty", "after the end", "kept"],
    }
    (tmp_path / "a.json").write_text(json.dumps({"v_abc": entry}))
    videos = str(video_folder(tmp_path / "v", ["v_abc.mp4"]))
    rows, report = build_manifest("activitynet", [str(tmp_path / "a.json")], videos)
    assert [r["text"] for r in rows] == ["kept"]
    assert dict(report.dropped) == {
        "reversed span (end before start)": 1,
        "empty span": 1,
        "empty span after clamping to the video's duration": 1,
    }


@pytest.mark.parametrize(("ext", "want"), [("mp4", "abc@N01_1.mp4"), ("webm", "abc@N01_1.webm")])
def test_didemo_unchecked_videos_take_the_video_ext_flag(tmp_path, ext, want):
    """The release names ``.mov``; --no-check-videos builds DIR/ID.EXT as documented."""
    (tmp_path / "didemo.json").write_text(json.dumps(DIDEMO[:2]))
    for mode in ("clip", "paragraph"):
        rows, _ = build_manifest(
            "didemo",
            [str(tmp_path / "didemo.json")],
            "remote/videos",
            check_videos=False,
            video_ext=ext,
            mode=mode,
        )
        assert {r["video"] for r in rows} == {f"remote/videos/{want}"}


def test_msrvtt_json_video_without_captions_is_dropped_as_no_sentences(tmp_path, video_folder):
    data = dict(MSRVTT_JSON, videos=[*MSRVTT_JSON["videos"], {"video_id": "video3"}])
    (tmp_path / "data.json").write_text(json.dumps(data))
    videos = str(video_folder(tmp_path / "v", ["video1.mp4", "video2.mp4", "video3.mp4"]))
    for per_sentence in (False, True):
        rows, report = build_manifest(
            "msrvtt", [str(tmp_path / "data.json")], videos, per_sentence=per_sentence
        )
        assert "video3" not in {r["source_id"] for r in rows}
        assert all(r["text"] and all(r["sentences"]) for r in rows)
        assert dict(report.dropped) == {"no sentences": 1}
        assert report.read == report.kept + 1 and report.empty_text == 0


MSRVTT_SPLITS = {
    "videos": [
        {"video_id": "video1", "split": "train"},
        {"video_id": "video2", "split": "train"},
        {"video_id": "video9", "split": "test"},
    ],
    "sentences": [
        {"video_id": v, "caption": f"{v} caption {j}", "sen_id": j}
        for v in ("video1", "video2", "video9")
        for j in range(2)
    ],
}


@pytest.fixture
def msrvtt_splits(tmp_path, video_folder):
    (tmp_path / "data.json").write_text(json.dumps(MSRVTT_SPLITS))
    videos = video_folder(tmp_path / "videos", ["video1.mp4", "video2.mp4", "video9.mp4"])
    return str(tmp_path / "data.json"), str(videos)


def test_msrvtt_split_keeps_only_that_splits_videos(msrvtt_splits):
    data, videos = msrvtt_splits
    rows, report = build_manifest("msrvtt", [data], videos, split="train")
    assert [r["key"] for r in rows] == ["video1", "video2"]
    assert dict(report.dropped) == {"not in --split train": 1}
    assert dict(report.notes) == {"rows of split train": 2}
    rows, report = build_manifest("msrvtt", [data], videos, split="test", per_sentence=True)
    assert [r["key"] for r in rows] == ["video9-s00", "video9-s01"]
    assert (report.read, dict(report.dropped)) == (6, {"not in --split test": 4})


def test_msrvtt_json_without_split_keeps_every_video_and_counts_rows_per_split(msrvtt_splits):
    data, videos = msrvtt_splits
    rows, report = build_manifest("msrvtt", [data], videos)
    assert len(rows) == 3
    assert dict(report.notes) == {"rows of split train": 2, "rows of split test": 1}


def test_msrvtt_split_that_selects_nothing_stops(msrvtt_splits, tmp_path):
    data, videos = msrvtt_splits
    with pytest.raises(
        ManifestError,
        match=r"^msrvtt: --split 'val' matches no video \(the JSON has: test, train\)$",
    ):
        build_manifest("msrvtt", [data], videos, split="val")
    (tmp_path / "t.csv").write_text(MSRVTT_CSV)
    with pytest.raises(ManifestError, match=r"^msrvtt: --split train needs the annotation JSON"):
        build_manifest("msrvtt", [str(tmp_path / "t.csv")], videos, split="train")
