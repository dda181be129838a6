"""Videos through the whole pipeline: clips written here with PyAV (three shots of three
photos, 2 s each), ingested by ingest_job, searched by what one shot shows; bad videos of
every kind end indexed or quarantined with a reason; the page plays the shot in chromium."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import dagster as dg
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from dam_pipeline import components
from dam_pipeline.keys import encode_prefix, video_of
from dam_pipeline.library import Library
from dam_pipeline.settings import Settings
from dam_pipeline.video import VideoError, VideoLimits, extract_shots
from dam_pipeline.video.write import write_clip
from dam_pipeline.web import create_app
from dam_pipeline.web.server import running
from dam_pipeline_tests.conftest import ingest, jpeg_bytes, photo

CHROMIUM = Path("/usr/bin/chromium")
CLIP = "clips/three shots.mp4"
CLIP_WEBM = "clips/three shots copy.webm"
CAT_PHOTO = "photos/cat.jpg"
SHOTS = ("coffee", "chelsea", "rocket")
"""The clip's shots: a search for the cat lands in 00:02–00:04."""


def pictures(*names: str) -> list[Image.Image]:
    return [photo(name) for name in names]


def black() -> Image.Image:
    return Image.new("RGB", (320, 240), "black")


def audio_only(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        samples = np.zeros((1, 1024), dtype=np.float32)
        for index in range(8):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, index * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def many_streams(path: Path, extra: int = 150) -> None:
    """One video stream beside ``extra`` audio streams (a hostile file may hold hundreds)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        audios = [container.add_stream("pcm_s16le", rate=8000) for _ in range(extra)]
        for index in range(10):
            pixels = np.asarray(photo("chelsea").resize((160, 120)))
            for packet in video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
            for audio in audios[:3]:
                frame = av.AudioFrame.from_ndarray(
                    np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono"
                )
                frame.sample_rate, frame.pts = 8000, index * 800
                for packet in audio.encode(frame):
                    container.mux(packet)
        for stream in [video, *audios]:
            for packet in stream.encode():
                container.mux(packet)


def variable_frame_times() -> list[float]:
    """A phone's variable frame rate: gaps of 1/30 to 1/10 s, 24 frames a shot."""
    rng = random.Random(7)
    times = [0.0]
    while len(times) < 72:
        times.append(times[-1] + rng.choice([1 / 30, 1 / 24, 1 / 15, 1 / 10]))
    return times


VFR_TIMES = variable_frame_times()


def write_video_library(root: Path) -> None:
    clips = root / "clips"
    write_clip(root / CLIP, pictures(*SHOTS))
    write_clip(root / CLIP_WEBM, pictures(*SHOTS), size=(256, 192))  # the same, re-encoded
    write_clip(clips / "black open a.mp4", [black(), photo("astronaut")], seconds_each=1.5)
    write_clip(clips / "black open b.mp4", [black(), photo("motorcycle_left")], seconds_each=1.5)
    (root / "photos").mkdir(parents=True)
    (root / CAT_PHOTO).write_bytes(jpeg_bytes(photo("chelsea")))

    bad = root / "bad"
    bad.mkdir()
    whole = write_clip(bad / "whole.mkv", pictures(*SHOTS)).read_bytes()
    (bad / "whole.mkv").unlink()
    (bad / "truncated.mkv").write_bytes(whole[: len(whole) // 2])
    (bad / "truncated.mp4").write_bytes((root / CLIP).read_bytes()[:5000])
    (bad / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + random.randbytes(4000))
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "jpeg named.mp4").write_bytes(jpeg_bytes(photo("coffee")))
    (bad / "playlist.mp4").write_bytes(b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n")
    audio_only(bad / "audio only.mp4")
    many_streams(bad / "many streams.mkv")
    write_clip(bad / "phone vfr.mp4", pictures(*SHOTS), frame_times=VFR_TIMES)
    write_clip(bad / "rotated.mp4", pictures("chelsea"), rotation=90)
    animation = [photo("coffee").resize((64, 48)), photo("chelsea").resize((64, 48))]
    animation[0].save(bad / "animated.gif", save_all=True, append_images=animation[1:])
    animation[0].save(bad / "animated.png", save_all=True, append_images=animation[1:])


@dataclass(frozen=True)
class VideoLibrary:
    settings: Settings
    results: dict[str, dict]
    library: Library


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Iterator[VideoLibrary]:
    data = tmp_path_factory.mktemp("videos") / "data"
    settings = Settings(data_dir=data, dagster_home=data / "dagster_home", workers=2)
    write_video_library(settings.layout.library)
    with dg.instance_for_test() as instance:
        results = ingest(settings, instance)
        yield VideoLibrary(settings, results, Library(settings))


def normalized(videos: VideoLibrary, prefix: str) -> dict:
    manifest = components.open_state(videos.settings).manifests.read(
        "normalized_images", encode_prefix(prefix)
    )
    assert manifest is not None
    return manifest.by_key()


def test_a_search_lands_on_the_shot_that_shows_it(videos: VideoLibrary) -> None:
    hits = videos.library.search("a cat", top_k=6, prefixes=["clips"])
    first = hits[0]
    assert first.video_key in (CLIP, CLIP_WEBM)
    # the second shot runs from 2 s to 4 s; the detector samples 6 frames a second
    assert first.start_seconds == pytest.approx(2.0, abs=0.2)
    assert first.end_seconds == pytest.approx(4.0, abs=0.2)
    assert first.label.startswith(f"{first.video_key} @ 00:02–00:04")
    coffee = videos.library.search("a cup of coffee", top_k=1, prefixes=["clips"])[0]
    assert coffee.video_key and coffee.start_seconds < 0.5

    answer = videos.library.ask("Is there a cat?", prefixes=["clips"])
    assert "[S1]" in answer.text and "@ 00:02–00:04" in answer.text  # the citation's moment


def test_the_cli_prints_the_moment_and_json_gives_seconds(videos: VideoLibrary, dam) -> None:
    shown = dam(videos.settings, "search", "a cat", "--prefix", "clips", "--top-k", "2")
    assert shown.code == 0 and "three shots" in shown.out and "@ 00:02–00:04" in shown.out
    listed = dam(videos.settings, "search", "a cat", "--prefix", "clips", "--json")
    first = json.loads(listed.out)[0]
    assert isinstance(first["start_seconds"], float) and 1.9 <= first["start_seconds"] < 4
    assert first["video_key"] in (CLIP, CLIP_WEBM) and first["end_seconds"] > 3.5


def test_shots_are_counted_and_the_times_follow_the_frames(videos: VideoLibrary) -> None:
    clips = videos.results["clips"]["normalized_images"]
    assert clips["videos"] == 4 and clips["videos_decoded"] == 4
    # three shots each, the black openings not indexed
    assert clips["video_shots"] == 3 + 3 + 1 + 1
    assert clips["video_blank_shots_skipped"] == 2
    records = normalized(videos, "bad")
    vfr = sorted(
        (r for r in records.values() if r.video_key == "bad/phone vfr.mp4"),
        key=lambda r: r.start_seconds,
    )
    starts = [r.start_seconds for r in vfr][1:]
    assert starts == pytest.approx([VFR_TIMES[24], VFR_TIMES[48]], abs=0.2)
    rotated = next(r for r in records.values() if r.video_key == "bad/rotated.mp4")
    assert rotated.height > rotated.width  # turned upright by the display matrix


def test_each_bad_video_is_indexed_or_quarantined_with_its_reason(videos: VideoLibrary) -> None:
    records = normalized(videos, "bad")
    reasons = {key: r.reason for key, r in records.items() if r.status == "quarantined"}
    assert "empty" in reasons["bad/empty.mp4"]
    assert "no video stream" in reasons["bad/audio only.mp4"]
    assert "corrupt" in reasons["bad/corrupt.mp4"]
    assert "corrupt" in reasons["bad/truncated.mp4"]  # an MP4 cut before its index
    assert "no known video format" in reasons["bad/jpeg named.mp4"]
    assert "no known video format" in reasons["bad/playlist.mp4"]  # never probed as HLS
    indexed = {r.video_key for r in records.values() if r.status == "ok" and r.video_key}
    assert {"bad/truncated.mkv", "bad/many streams.mkv", "bad/phone vfr.mp4"} <= indexed
    # GIF and APNG animations stay images
    assert records["bad/animated.gif"].status == records["bad/animated.png"].status == "ok"
    assert not records["bad/animated.gif"].video_key
    summary = videos.results["bad"]["normalized_images"]
    assert "truncated.mkv" in json.dumps(summary["video_notes"])  # the cut is said
    # every listed object is accounted for
    raw = videos.results["bad"]["raw_images"]
    assert raw["seen"] == summary["objects"] == 12


def test_an_unchanged_video_is_never_decoded_again(videos: VideoLibrary) -> None:
    with dg.instance_for_test() as instance:
        again = ingest(videos.settings, instance)
    for results in again.values():
        assert results["normalized_images"]["videos_decoded"] == 0
        assert results["normalized_images"]["video_frames_decoded"] == 0
        assert results["vector_index"]["upserted"] == 0


def test_similar_and_duplicates_work_across_photos_and_shots(videos: VideoLibrary) -> None:
    like_photo = videos.library.similar(key=CAT_PHOTO, top_k=3)
    assert any(hit.video_key and 1.9 <= hit.start_seconds < 4 for hit in like_photo)
    groups = [group.keys for group in videos.library.duplicates(prefixes=["clips"])]
    assert [CLIP_WEBM, CLIP] in groups  # the clip re-encoded, grouped as videos
    black_openings = {"clips/black open a.mp4", "clips/black open b.mp4"}
    assert not any(black_openings <= set(keys) for keys in groups)


def test_the_original_streams_with_ranges_and_the_detail_lists_shots(
    videos: VideoLibrary,
) -> None:
    client = TestClient(create_app(videos.settings, videos.library), base_url="http://localhost")
    hit = videos.library.search("a cat", top_k=1, prefixes=["clips"])[0]
    whole = (videos.settings.layout.library / hit.video_key).read_bytes()
    part = client.get("/originals", params={"key": hit.key}, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole[100:200]
    assert part.headers["content-type"].startswith("video/")
    found = client.get("/api/search", params={"q": "a cat", "prefix": "clips"}).json()
    assert found["hits"][0]["url"].endswith(f"#t={hit.start_seconds:g},{hit.end_seconds:g}")
    page = client.get("/image", params={"key": hit.key})
    assert page.status_code == 200 and "<video" in page.text
    assert page.text.count('class="card') == 3  # the video's three shots
    grid = client.get("/", params={"q": "a photo", "action": "search", "prefix": "clips"})
    assert grid.text.count("Also in this video") >= 1  # shots grouped under their video


def test_a_long_shot_is_cut_and_limits_quarantine_with_the_reason(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "long.mp4", pictures("coffee"), seconds_each=5, fps=6)
    with clip.open("rb") as file:
        found = extract_shots(file, 256, VideoLimits(max_shot_seconds=2.0))
    assert [s.start_seconds for s in found.shots] == pytest.approx([0, 2, 4], abs=0.2)
    with clip.open("rb") as file, pytest.raises(VideoError, match="DAM_VIDEO_MAX_MINUTES"):
        extract_shots(file, 256, VideoLimits(max_minutes=0.05))
    with clip.open("rb") as file, pytest.raises(VideoError, match="DAM_VIDEO_MAX_PIXELS"):
        extract_shots(file, 256, VideoLimits(max_pixels=320 * 200))
    with clip.open("rb") as file:
        capped = extract_shots(file, 256, VideoLimits(max_shot_seconds=1.0, max_shots=3))
    assert len(capped.shots) == 3 and "DAM_VIDEO_MAX_SHOTS" in capped.notes[0]


def test_a_changed_video_is_re_indexed_and_a_deleted_one_removed(settings: Settings) -> None:
    root = settings.layout.library
    for name in ("astronaut", "motorcycle_left", "hubble_deep_field", "coffee"):
        (root / "event" / f"{name}.jpg").parent.mkdir(parents=True, exist_ok=True)
        (root / "event" / f"{name}.jpg").write_bytes(jpeg_bytes(photo(name)))
    write_clip(root / "event" / "talk.mp4", pictures("coffee", "chelsea"))
    with dg.instance_for_test() as instance:
        first = ingest(settings, instance)["event"]
        assert first["vector_index"]["indexed"] == 4 + 2
        write_clip(root / "event" / "talk.mp4", pictures("coffee", "chelsea", "rocket"))
        changed = ingest(settings, instance)["event"]
        assert changed["normalized_images"]["videos_decoded"] == 1
        assert changed["captions"]["computed"] <= 2  # the new shot (the others are cached)
        assert changed["vector_index"]["indexed"] == 4 + 3
        (root / "event" / "talk.mp4").unlink()
        gone = ingest(settings, instance)["event"]  # 3 of 7 vectors go: not a mass deletion
    assert gone["vector_index"]["deleted"] == 3 and gone["vector_index"]["indexed"] == 4
    index = components.open_vector_store(settings)
    assert not any(video_of(m["key"]) for m in index.list_partition("event").values())


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make installs it)")
def test_the_page_plays_the_clip_from_the_shot(videos: VideoLibrary) -> None:
    from playwright.sync_api import expect, sync_playwright

    app = create_app(videos.settings, videos.library)
    with running(app) as address, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page()
        page.goto(f"{address}/?q=a+cat&action=search&prefix=clips")
        card = page.locator(".card.video").filter(has_text="three shots copy.webm")
        expect(card.locator(".moment")).to_have_text("▶ 00:02–00:04")
        card.locator("a.key").click()
        player = page.locator("video#player")
        expect(player).to_be_visible()
        page.wait_for_function(
            "() => { const v = document.getElementById('player');"
            " return v.readyState >= 1 && v.currentTime > 1.5; }",
            timeout=20_000,
        )
        position = page.evaluate("document.getElementById('player').currentTime")
        assert position == pytest.approx(2.0, abs=0.3)  # the player sought the shot's start
        assert page.locator(".shots .card").count() == 3
        browser.close()


def test_keyframe_times_use_the_stream_clock(tmp_path: Path) -> None:
    """A stream whose timestamps start late (an edited phone clip) is timed from its start."""
    path = tmp_path / "late.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 10)
        for index, name in enumerate(["coffee"] * 10 + ["chelsea"] * 10):
            pixels = np.asarray(photo(name).resize((160, 120)))
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = 50 + index, Fraction(1, 10)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with path.open("rb") as file:
        found = extract_shots(file, 128, VideoLimits())
    assert [s.start_seconds for s in found.shots] == pytest.approx([0.0, 1.0], abs=0.2)
