"""S3 sources against a real S3 endpoint (moto's server on 127.0.0.1), and the sensors that
follow a bucket, evaluated in-process on a real Dagster instance."""

from __future__ import annotations

import dagster as dg
import pytest

from dam_pipeline import components
from dam_pipeline.api import search
from dam_pipeline.definitions import build_definitions
from dam_pipeline.defs.ingest import materializations
from dam_pipeline.defs.resources import build_resources
from dam_pipeline.keys import encode_prefix
from dam_pipeline.settings import Settings
from dam_pipeline.stages import list_raw_images, normalize_partition
from dam_pipeline_tests.conftest import delete, ingest, jpeg_bytes, photo, s3_client, upload


class SensorDriver:
    """Ticks a sensor the way the daemon would: keeps its cursor, applies the partition
    requests, and runs the requested partitions (skipping run keys already launched)."""

    def __init__(
        self, settings: Settings, instance: dg.DagsterInstance, sensor: str = "upload_sensor"
    ) -> None:
        self.settings = settings
        self.sensor = sensor
        self.instance = instance
        self.defs = build_definitions(settings)
        self.cursor: str | None = None
        self.launched: set[str] = set()

    def tick(self) -> list[dg.RunRequest]:
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=build_resources(self.settings)
        ) as context:
            result = self.defs.resolve_sensor_def(self.sensor)(context)
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(
                request.partitions_def_name, request.partition_keys
            )
        self.cursor = result.cursor
        fresh = [r for r in result.run_requests or [] if r.run_key not in self.launched]
        self.launched.update(r.run_key for r in fresh)
        return fresh

    def run(self, requests: list[dg.RunRequest]) -> dict[str, dict]:
        job = self.defs.resolve_job_def("ingest_job")
        out = {}
        for request in requests:
            result = job.execute_in_process(
                partition_key=request.partition_key, instance=self.instance
            )
            assert result.success
            out[request.partition_key] = {
                asset: {k: v.value for k, v in m.metadata.items()}
                for asset in ("raw_images", "captions", "vector_index")
                for m in materializations(result, asset)
            }
        return out


def test_listing_pages_and_prefixes_with_awkward_keys(s3_settings: Settings) -> None:
    upload(s3_settings, {f"many/{i:04d}.jpg": b"x" for i in range(1100)})
    upload(s3_settings, {"café ☕/a b%.jpg": b"x", "top.png": b"x", "notes/readme.txt": b"x"})
    source = components.open_source(s3_settings)
    assert source.list_prefixes() == ["", "café ☕", "many", "notes"]
    assert len(list(source.iter_objects("many"))) == 1100  # more than one page of 1000
    assert [o.key for o in source.iter_objects("")] == ["top.png"]
    assert [o.key for o in source.iter_objects("café ☕")] == ["café ☕/a b%.jpg"]
    url = source.url_for("café ☕/a b%.jpg")
    assert url.startswith(s3_settings.s3_endpoint_url) and "Signature=" in url


def test_public_url_template(s3_settings: Settings) -> None:
    template = "https://cdn.example.test/storage/v1/object/public/{bucket}/{key}"
    source = components.open_source(s3_settings.replace(public_url_template=template))
    assert source.url_for("a b/c.jpg").endswith("/public/" + source.bucket + "/library/a%20b/c.jpg")


def test_upload_overwrite_delete_follow_the_bucket(s3_settings: Settings, instance) -> None:
    driver = SensorDriver(s3_settings, instance)
    upload(s3_settings, {"pets/cat.jpg": "chelsea", "pets/rocket.jpg": "rocket"})
    upload(s3_settings, {f"food/{name}.jpg": "coffee" for name in "cde"})

    first = driver.tick()
    assert sorted(r.partition_key for r in first) == ["food", "pets"]
    driver.run(first)
    assert search("a cat", settings=s3_settings)[0].key == "pets/cat.jpg"
    assert driver.tick() == []  # nothing changed: no run

    upload(s3_settings, {"pets/rocket.jpg": "astronaut"})  # overwrite one object
    second = driver.tick()
    assert [r.partition_key for r in second] == ["pets"]
    assert second[0].tags["dam/changed"] == "1"
    results = driver.run(second)["pets"]
    assert results["captions"]["computed"] == 1 and results["captions"]["reused"] == 1
    assert results["vector_index"]["upserted"] == 1

    delete(s3_settings, ["food/c.jpg"])
    third = driver.tick()
    assert [r.partition_key for r in third] == ["food"]
    assert third[0].tags["dam/deleted"] == "1"
    assert driver.run(third)["food"]["vector_index"]["deleted"] == 1
    everything = search("coffee", top_k=10, settings=s3_settings, min_score=-1.0)
    keys = {hit.key for hit in everything}
    assert keys == {"pets/cat.jpg", "pets/rocket.jpg", "food/d.jpg", "food/e.jpg"}


def test_prefix_discovery_sensor_adds_partitions(s3_settings: Settings, instance) -> None:
    upload(s3_settings, {"2024/july/a.jpg": b"x", "weird ../name/b.jpg": b"x"})
    sensor = build_definitions(s3_settings).resolve_sensor_def("prefix_discovery_sensor")
    with dg.build_sensor_context(
        instance=instance, resources=build_resources(s3_settings)
    ) as context:
        result = sensor(context)
    (request,) = result.dynamic_partitions_requests
    assert sorted(request.partition_keys) == sorted(
        [encode_prefix("2024"), encode_prefix("weird ..")]
    )


def test_listing_that_fails_half_way_deletes_nothing(
    s3_settings: Settings, instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dam_pipeline.sources.s3.PAGE_SIZE", 2)  # 3 photos: 2 pages
    driver = SensorDriver(s3_settings, instance)
    upload(s3_settings, {f"big/{i:04d}.jpg": "coffee" for i in range(3)})
    driver.run(driver.tick())
    assert components.open_vector_store(s3_settings).count() == 3

    client = s3_client(s3_settings)
    calls = {"n": 0}

    def fail_second_page(**_):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise ConnectionError("storage outage")

    client.meta.events.register("before-call.s3.ListObjectsV2", fail_second_page)
    from dam_pipeline.sources import open_source

    source = open_source(s3_settings.source, s3_client=client)
    with pytest.raises(ConnectionError):
        list_raw_images(source, "big")
    assert components.open_vector_store(s3_settings).count() == 3


def test_mass_disappearance_is_refused_loudly(s3_settings: Settings, instance) -> None:
    driver = SensorDriver(s3_settings, instance)
    upload(s3_settings, {f"album/{i}.jpg": "coffee" for i in range(4)})
    driver.run(driver.tick())
    delete(s3_settings, [f"album/{i}.jpg" for i in range(3)])
    result = driver.run(driver.tick())["album"]["vector_index"]
    assert result["deletion_blocked"] is True and result["would_delete"] == 3
    assert components.open_vector_store(s3_settings).count() == 4


def test_bad_objects_are_accounted_for_and_never_escape_the_data_dir(
    s3_settings: Settings, instance, tmp_path
) -> None:
    upload(
        s3_settings,
        {
            "odd/with space & 100%.jpg": "chelsea",
            "odd/ünïcödé 写真.jpg": "coffee",
            "odd/../../../escape.jpg": "rocket",
            "odd/not-an-image.jpg": b"<html><body>Access denied</body></html>",
            "odd/empty.jpg": b"",
        },
    )
    driver = SensorDriver(s3_settings, instance)
    results = driver.run(driver.tick())
    odd = results["odd"]
    assert odd["raw_images"]["seen"] == 5  # S3 keys are opaque: "../" is just characters
    assert odd["vector_index"]["indexed"] == 3 and odd["vector_index"]["quarantined"] == 2
    assert {hit.key for hit in search("a rocket", top_k=3, settings=s3_settings)} >= {
        "odd/../../../escape.jpg"
    }
    outside = [p for p in tmp_path.rglob("*") if "data" not in p.relative_to(tmp_path).parts]
    assert outside == []


def test_object_deleted_between_listing_and_download(s3_settings: Settings, tmp_path) -> None:
    from dam_pipeline.imaging import FolderObjectStore

    upload(s3_settings, {"p/a.jpg": "chelsea", "p/b.jpg": "coffee"})
    source = components.open_source(s3_settings)
    raw = list_raw_images(source, "p")
    delete(s3_settings, ["p/b.jpg"])
    normalized = normalize_partition(source, raw, FolderObjectStore(tmp_path / "objects"))
    by_key = normalized.by_key()
    assert by_key["p/a.jpg"].status == "ok"
    assert by_key["p/b.jpg"].status == "quarantined"
    assert "deleted" in by_key["p/b.jpg"].reason


def test_a_bucket_video_is_read_once_and_capped(s3_settings: Settings, tmp_path) -> None:
    """A video in a bucket is streamed once into a temporary file (one GET, hashed on the
    way), its shots indexed; one over DAM_VIDEO_MAX_MB is quarantined without a GET."""
    from PIL import Image

    from dam_pipeline.demo import skimage_data_dir
    from dam_pipeline.imaging import FolderObjectStore
    from dam_pipeline.video import VideoLimits
    from dam_pipeline.video.write import write_clip

    stills = [Image.open(skimage_data_dir() / name) for name in ("coffee.png", "chelsea.png")]
    clip = write_clip(tmp_path / "talk.mp4", stills).read_bytes()
    upload(s3_settings, {"v/talk.mp4": clip, "v/big.mp4": clip + bytes(2 * 2**20)})
    source = components.open_source(s3_settings, s3_client(s3_settings))
    gets: list[str] = []
    source.client.meta.events.register(
        "provide-client-params.s3.GetObject", lambda params, **_: gets.append(params["Key"])
    )
    raw = list_raw_images(source, "v")
    normalized = normalize_partition(
        source, raw, FolderObjectStore(tmp_path / "objects"), video=VideoLimits(max_megabytes=1)
    )
    shots = [r for r in normalized if r.video_key == "v/talk.mp4"]
    assert [r.start_seconds for r in shots] == [0.0, 2.0] and shots[0].content_hash
    assert "DAM_VIDEO_MAX_MB" in normalized.by_key()["v/big.mp4"].reason
    assert [key.rsplit("/", 2)[-2:] for key in gets] == [
        ["v", "talk.mp4"]
    ]  # one GET for the clip, none for the one over the cap


def test_a_folder_placeholder_that_holds_bytes_is_quarantined_with_its_reason(
    s3_settings: Settings, instance
) -> None:
    upload(s3_settings, {"b/photo.jpg/": "chelsea", "b/empty/": b"", "b/cat.jpg": "chelsea"})
    result = ingest(s3_settings, instance)["b"]
    assert result["raw_images"]["listed"] == 2  # the empty placeholder is structure
    assert result["vector_index"]["indexed"] == 1 and result["vector_index"]["quarantined"] == 1
    quarantine = str(result["normalized_images"]["quarantine"])
    assert "photo.jpg/" in quarantine and "trailing '/'" in quarantine


def test_an_archived_object_is_retried_once_restored_and_its_reason_is_one_line(
    s3_settings: Settings, instance, caplog
) -> None:
    from dam_pipeline.sources import parse_s3_uri

    bucket, root = parse_s3_uri(s3_settings.source)
    client = s3_client(s3_settings)
    upload(s3_settings, {"cold/cat.jpg": "coffee"})
    client.put_object(
        Bucket=bucket,
        Key=f"{root}/cold/archived.jpg",
        Body=jpeg_bytes(photo("chelsea")),
        StorageClass="GLACIER",
    )
    first = ingest(s3_settings, instance)["cold"]
    assert first["vector_index"]["quarantined"] == 1
    assert "restore it" in str(first["normalized_images"]["quarantine"])
    assert "Traceback" not in caplog.text
    client.restore_object(
        Bucket=bucket, Key=f"{root}/cold/archived.jpg", RestoreRequest={"Days": 1}
    )
    second = ingest(s3_settings, instance)["cold"]  # same ETag: retried all the same
    assert second["vector_index"]["indexed"] == 2 and second["vector_index"]["quarantined"] == 0


def test_originals_from_a_bucket_are_typed_by_their_bytes_and_keep_dot_segments(
    s3_settings: Settings, instance
) -> None:
    import httpx
    from fastapi.testclient import TestClient

    from dam_pipeline.library import Library
    from dam_pipeline.sources import parse_s3_uri
    from dam_pipeline.web import create_app

    bucket, root = parse_s3_uri(s3_settings.source)
    client = s3_client(s3_settings)
    client.put_object(
        Bucket=bucket,
        Key=f"{root}/web/page.jpg",
        Body=jpeg_bytes(photo("chelsea")),
        ContentType="text/html",
    )
    upload(s3_settings, {"web/a/../dots.jpg": "coffee"})
    ingest(s3_settings, instance)
    app = TestClient(create_app(s3_settings, Library(s3_settings)), base_url="http://localhost")
    typed = app.get("/originals", params={"key": "web/page.jpg"}, follow_redirects=False)
    assert typed.status_code == 307
    served = httpx.get(typed.headers["location"])  # what the browser is sent to
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert served.headers["content-disposition"].startswith("inline")
    dots = app.get("/originals", params={"key": "web/a/../dots.jpg"}, follow_redirects=False)
    assert dots.status_code == 200 and dots.headers["content-type"] == "image/jpeg"
    assert dots.content == jpeg_bytes(photo("coffee"))
