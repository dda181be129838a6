"""People: real faces (crops named in data/faces/README.md) and edited copies of them go
through the faces stage; persons are named, merged, regrouped, forgotten and searched by
name through the CLI, as a user would."""

from __future__ import annotations

import io
import json
from pathlib import Path

import dagster as dg
import pytest
from PIL import Image, ImageEnhance, ImageOps

from dam_pipeline import components
from dam_pipeline.library import Library
from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import ingest, write_library

FACES = Path(__file__).parent / "data" / "faces"


def _face(name: str, edit: str = "") -> bytes:
    image = Image.open(FACES / f"{name}.jpg").convert("RGB")
    if edit == "flipped":
        image = ImageOps.mirror(image)
    elif edit == "darker":
        image = ImageEnhance.Brightness(image).enhance(0.6)
    elif edit == "larger":
        image = image.resize((image.width * 3 // 2, image.height * 3 // 2))
    elif edit == "grey":
        image = image.convert("L")
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=88)
    return out.getvalue()


LIBRARY = {
    "trip/obama_a.jpg": _face("obama_a"),
    "trip/biden_a.jpg": _face("biden_a"),
    "trip/kit_a.jpg": _face("kit_a"),
    "trip/both.jpg": _face("obama_and_biden"),
    "home/obama_b_flipped.jpg": _face("obama_b", "flipped"),
    "home/biden_b_darker.jpg": _face("biden_b", "darker"),
    "home/kit_b_larger.jpg": _face("kit_b", "larger"),
    "home/rose_a_grey.jpg": _face("rose_a", "grey"),
}
WHO = {  # who is in each photo
    "trip/obama_a.jpg": {"obama"},
    "trip/biden_a.jpg": {"biden"},
    "trip/kit_a.jpg": {"kit"},
    "trip/both.jpg": {"obama", "biden"},
    "home/obama_b_flipped.jpg": {"obama"},
    "home/biden_b_darker.jpg": {"biden"},
    "home/kit_b_larger.jpg": {"kit"},
    "home/rose_a_grey.jpg": {"rose"},
}


def _people(dam, settings: Settings) -> list[dict]:
    ran = dam(settings, "people", "--json")
    assert ran.code == 0, ran.err
    return json.loads(ran.out)


def _person_of(people: list[dict], who: str) -> dict:
    """The one person whose photos are exactly those ``who`` is in."""
    wanted = {key for key, names in WHO.items() if who in names}
    alone = {key for key, names in WHO.items() if names == {who}}
    (found,) = [p for p in people if set(p["photos"]) & alone]
    assert set(found["photos"]) == wanted
    return found


@pytest.fixture
def faces_on(settings: Settings) -> Settings:
    return settings.replace(faces=True)


@pytest.fixture
def library(faces_on: Settings, instance: dg.DagsterInstance) -> Settings:
    settings = faces_on
    write_library(settings.layout.library, LIBRARY)
    ingest(settings, instance)
    return settings


def test_each_person_is_one_group_and_searchable_by_name(library: Settings, dam) -> None:
    people = _people(dam, library)
    labelled = [_person_of(people, who) for who in ("obama", "biden", "kit", "rose")]
    for person in labelled:  # nobody shares a group, nobody is split
        assert person["faces"] == len(person["photos"])  # one face of them a photo
    others = [p for p in people if p not in labelled]
    # both.jpg (faces_dev's face_02) also shows an unlabelled face in the background
    assert [p["photos"] for p in others] in ([], [["trip/both.jpg"]])
    obama, biden = _person_of(people, "obama"), _person_of(people, "biden")
    assert dam(library, "people", "name", str(obama["id"]), "Barack").code == 0
    assert dam(library, "people", "name", str(biden["id"]), "Joe Biden").code == 0

    # a name in the question filters to exactly that person's photos, in any mode
    for mode in ("dense", "hybrid", "keyword"):
        ran = dam(library, "search", "Barack", "--json", "--mode", mode, "-k", "20")
        assert ran.code == 0, ran.err
        hits = json.loads(ran.out)
        if mode != "keyword":
            assert {h["key"] for h in hits} == set(obama["photos"])
        assert all("Barack" in h["people"] for h in hits)
    # the answer names the people in the images it cites
    answered = dam(library, "ask", "a close-up of Barack's face")
    assert "(with Barack) [S1]" in answered.out, answered.out
    # --person, repeatable: all of them present
    ran = dam(
        library, "search", "two people", "--person", "Barack", "--person", "joe biden", "--json"
    )
    assert [h["key"] for h in json.loads(ran.out)] == ["trip/both.jpg"]
    assert json.loads(ran.out)[0]["people"] == ["Barack", "Joe Biden"]
    # counted, not guessed
    ran = dam(library, "ask", "how many photos of Joe Biden?")
    assert ran.out.startswith("3 photos show Joe Biden.")
    # an unknown name is one clear line
    ran = dam(library, "search", "a face", "--person", "Maria")
    assert ran.code == 2 and "No person is named 'Maria'" in ran.err
    # renaming takes effect at once, without any run
    dam(library, "people", "name", str(obama["id"]), "Barack Obama")
    ran = dam(library, "search", "Barack Obama", "--json")
    assert {h["key"] for h in json.loads(ran.out)} == set(obama["photos"])


def test_names_and_decisions_survive_regrouping_and_new_photos(
    library: Settings, instance: dg.DagsterInstance, dam
) -> None:
    people = _people(dam, library)
    kit, rose = _person_of(people, "kit"), _person_of(people, "rose")
    dam(library, "people", "name", str(kit["id"]), "Kit")
    # a user's decision against the grouping: rose's face is kit's
    assert dam(library, "people", "merge", str(kit["id"]), str(rose["id"])).code == 0
    assert dam(library, "people", "regroup").code == 0
    after = {p["id"]: p for p in _people(dam, library)}
    assert after[kit["id"]]["name"] == "Kit"
    assert set(after[kit["id"]]["photos"]) == set(kit["photos"]) | set(rose["photos"])

    # a new photo of a named person joins them in the next ingest
    write_library(library.layout.library, {"new/kit_a_darker.jpg": _face("kit_a", "darker")})
    ingest(library, instance)
    after = {p["id"]: p for p in _people(dam, library)}
    assert "new/kit_a_darker.jpg" in after[kit["id"]]["photos"]
    assert after[kit["id"]]["name"] == "Kit"

    # an edited photo (new pixels, new face ids) keeps its person
    edited = {"home/kit_b_larger.jpg": _face("kit_b", "grey")}
    write_library(library.layout.library, edited)
    faces_run = ingest(library, instance)["home"]["faces"]
    assert faces_run["faces_kept_their_person"] == 1
    after = {p["id"]: p for p in _people(dam, library)}
    assert "home/kit_b_larger.jpg" in after[kit["id"]]["photos"]

    # a face taken out of a person never goes back, even on regrouping
    shown = json.loads(dam(library, "people", "show", str(kit["id"]), "--json").out)
    face = next(f for f in shown["face_ids"] if f["key"] == "trip/kit_a.jpg")
    assert dam(library, "people", "detach", face["face_id"]).code == 0
    dam(library, "people", "regroup")
    after = {p["id"]: p for p in _people(dam, library)}
    assert "trip/kit_a.jpg" not in after[kit["id"]]["photos"]


def test_deleting_photos_forgetting_people_and_deleting_all_leave_nothing(
    library: Settings, instance: dg.DagsterInstance, dam
) -> None:
    from dam_pipeline import components

    people = Library(library).people
    faces_index = components.open_face_index(library)
    before = people.count()
    assert faces_index.count() == before
    assert before in (9, 10)  # 10: both.jpg's background face

    # a deleted photo takes its faces with it
    in_both = len(people.photo_faces("trip")["trip/both.jpg"])
    (library.layout.library / "trip" / "both.jpg").unlink()
    ingest(library, instance)
    assert people.count() == faces_index.count() == before - in_both
    before -= in_both - 2  # the counts below as if both.jpg had held its two people

    # a forgotten person's faces are gone, and their new photos are not grouped again
    listed = _people(dam, library)
    biden = next(p for p in listed if "trip/biden_a.jpg" in p["photos"])
    assert dam(library, "people", "forget", str(biden["id"])).code == 1  # asks for --yes
    assert dam(library, "people", "forget", str(biden["id"]), "--yes").code == 0
    assert people.count() == faces_index.count() == before - 4
    write_library(library.layout.library, {"new/biden_again.jpg": _face("biden_b", "flipped")})
    ingest(library, instance)
    assert not any("new/biden_again.jpg" in p["photos"] for p in _people(dam, library))
    assert people.count() == faces_index.count() == before - 4

    # delete-all: descriptors, crops, cached results, persons and names
    assert dam(library, "people", "delete-all", "--yes").code == 0
    assert people.count() == 0 and faces_index.count() == 0 and _people(dam, library) == []
    assert Library(library).state.cache.forget_results("faces/") == 0  # already empty


def test_the_stage_off_leaves_no_faces(
    settings: Settings, instance: dg.DagsterInstance, dam
) -> None:
    from dam_pipeline.definitions import build_definitions

    off = settings.replace(faces=False)
    assert "faces" in {
        k.path[-1] for k in build_definitions(off.replace(faces=True)).resolve_all_asset_keys()
    }
    assert "faces" not in {k.path[-1] for k in build_definitions(off).resolve_all_asset_keys()}
    write_library(off.layout.library, {"a/obama.jpg": _face("obama_a")})
    ingest(off, instance)
    assert Library(off).people.count() == 0
    ran = dam(off, "people", "--json", DAM_FACES="false")
    assert ran.code == 0 and json.loads(ran.out) == []


def test_a_source_that_looks_emptied_keeps_its_faces(
    faces_on: Settings, instance: dg.DagsterInstance
) -> None:
    settings = faces_on
    edits = ("", "flipped", "darker", "larger", "grey")
    photos = {f"crowd/{name}_{edit or 'plain'}.jpg": _face(name, edit)
              for name in ("obama_a", "biden_a") for edit in edits}  # fmt: skip
    write_library(settings.layout.library, photos)
    ingest(settings, instance)
    people = Library(settings).people
    assert people.count() == 10
    for key in list(photos)[1:]:
        (settings.layout.library / key).unlink()
    faces_run = ingest(settings, instance)["crowd"]["faces"]
    assert faces_run["deletion_blocked"] is True
    assert people.count() == 10


def test_the_page_and_the_api_name_show_and_search_people(library: Settings) -> None:
    from fastapi.testclient import TestClient

    from dam_pipeline.web.app import create_app

    client = TestClient(create_app(library), base_url="http://127.0.0.1")
    people = client.get("/api/people").json()["people"]
    kit = next(p for p in people if "trip/kit_a.jpg" in p["photos"])
    assert client.get(kit["crop_url"]).headers["content-type"] == "image/jpeg"
    named = client.post(f"/api/people/{kit['id']}/name", data={"name": "Kit"})
    assert named.json()["name"] == "Kit"
    hits = client.get("/api/search", params={"q": "a face", "person": "Kit"}).json()["hits"]
    assert {h["key"] for h in hits} == set(kit["photos"])
    assert all(h["people"] == ["Kit"] for h in hits)
    detail = client.get("/api/image", params={"key": "trip/kit_a.jpg"}).json()
    assert [face["name"] for face in detail["faces"]] == ["Kit"]
    assert client.get("/api/people/987654").status_code == 404
    assert client.get("/api/search", params={"q": "x", "person": "Nobody"}).status_code == 400
    # the page: the People view renames in place, the detail page names the face
    page = client.get("/people")
    assert page.status_code == 200 and f"/people/{kit['id']}/name" in page.text
    renamed = client.post(f"/people/{kit['id']}/name", data={"name": "Kit H."})
    assert renamed.status_code == 200 and "Kit H." in renamed.text  # followed the redirect
    assert "Kit H." in client.get("/image", params={"key": "trip/kit_a.jpg"}).text


def test_a_crowd_is_described_up_to_the_cap_and_the_rest_counted(
    faces_on: Settings, instance: dg.DagsterInstance
) -> None:
    settings = faces_on
    crops = sorted(FACES.glob("*_?.jpg"))
    crowd = Image.new("RGB", (1020, 850), "white")  # 30 faces of 170 px, six to a row
    for i in range(30):
        face = Image.open(crops[i % len(crops)]).convert("RGB").resize((170, 170))
        crowd.paste(face, ((i % 6) * 170, (i // 6) * 170))
    out = io.BytesIO()
    crowd.save(out, format="JPEG", quality=88)
    write_library(settings.layout.library, {"party/crowd.jpg": out.getvalue()})
    faces_run = ingest(settings, instance)["party"]["faces"]
    assert faces_run["faces"] == 20 and faces_run["faces_over_cap"] == 10
    (record,) = components.open_state(settings).manifests.read("faces", "party")
    assert record.capped == 10 and "10 more faces not described" in record.reason
