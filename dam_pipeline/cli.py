"""dam: follow an image library with Dagster, then search it and ask about it.

  dam demo                         build the demo library, ingest it, ask one question
  dam ingest [--prefix P ...]      materialize every asset for every (or the given) prefix
  dam search "a red car"           the best-matching images
  dam ask "is there a cat?"        a grounded answer that cites the images
  dam similar --key K | --image F  more like this
  dam duplicates                   groups of near-duplicate images
  dam cost [--estimate]            what paid providers cost (or would, to finish ingesting)
  dam status                       per prefix: captioned, failed and deferred, by reason
  dam prefixes                     register the source's prefixes as Dagster partitions
  dam forget-prefix P --yes        remove a prefix whose objects were all deleted
  dam reset-index --yes            empty the vector index (to re-index with another model)
  dam serve [--host H --port P]    the search page and JSON API (http://127.0.0.1:8000)
  dam init-home                    create the Dagster instance folder and print its path

Configuration comes from the environment and .env (see .env.example).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import shlex
import sys
import warnings
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from dotenv import load_dotenv

from dam_pipeline import components

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # model loading is not news

from dam_pipeline.places.gazetteer import place_words
from dam_pipeline.retrieval.search import MODES
from dam_pipeline.search_request import (
    DEFAULT_TOP_K,
    DUPLICATE_DISTANCE,
    MAX_TOP_K,
    SearchRequest,
)
from dam_pipeline.settings import Settings
from dam_pipeline.text import printable

if TYPE_CHECKING:
    import dagster as dg


def _instance(settings: Settings) -> dg.DagsterInstance:
    from dam_pipeline.defs.instance import open_instance

    return open_instance(settings)


def cmd_prefixes(settings: Settings, _: argparse.Namespace) -> int:
    from dam_pipeline.defs.instance import register_prefixes
    from dam_pipeline.keys import decode_prefix

    new, keys = register_prefixes(_instance(settings), components.open_source(settings))
    for key in keys:
        label = printable(decode_prefix(key)) or "(top level)"
        print(f"{'+' if key in new else ' '} {printable(key):40} {label}")
    print(f"{len(keys)} prefixes, {len(new)} new")
    _report_vanished(settings)
    return 0


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from dam_pipeline.defs.ingest import ingest, partitions_to_ingest
    from dam_pipeline.keys import decode_prefix
    from dam_pipeline.stages.progress import show_progress

    if getattr(args, "retry_failed", False):
        settings = settings.replace(retry_failed=True)
    keys = partitions_to_ingest(settings, args.prefix)
    if not keys:
        print(f"dam: no images found in {settings.source}.", file=sys.stderr)
        return 1
    show_steps = not args.quiet and sys.stdout.isatty()
    if show_steps and sys.stderr.isatty():
        # A handle on the terminal that Dagster's capture of the steps' output leaves alone.
        show_progress(True, os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1))

    def announce(number: int, key: str) -> None:
        if show_steps:
            print(f"[{number}/{len(keys)}] {printable(decode_prefix(key)) or '(top level)'} …")

    not_done = 0
    for outcome in ingest(settings, keys, before=announce):
        not_done += outcome.status != "ok"
        prefix = printable(outcome.prefix) or "(top level)"
        print(
            f"  {outcome.status:8} {prefix:32} {outcome.counts} "
            f"({outcome.seconds:.1f}s, run {outcome.run_id[:8]})"
        )
    if not args.prefix:
        not_done += _report_vanished(settings)
    return 1 if not_done else 0


def _report_vanished(settings: Settings) -> int:
    """Say which indexed prefixes the source no longer lists; returns how many."""
    from dam_pipeline.library import Library

    vanished = Library(settings).vanished_prefixes()
    for prefix in vanished:
        print(
            f"  vanished {printable(prefix)!r}: no objects left in the source, but its images "
            "are still searchable. If they were really deleted: "
            f"dam forget-prefix {shlex.quote(prefix)} --yes"
        )
    return len(vanished)


def cmd_forget_prefix(settings: Settings, args: argparse.Namespace) -> int:
    from dam_pipeline.defs.instance import forget_partition
    from dam_pipeline.library import Library, QueryError

    library = Library(settings)
    if args.prefix.strip("/") not in library.vanished_prefixes():
        raise QueryError(f"{args.prefix!r} is not a vanished prefix: see `dam prefixes`.")
    if not args.yes:
        print(f"This removes every image of {args.prefix!r} from the index. Re-run with --yes.")
        return 1
    removed = library.forget_prefix(args.prefix)
    forget_partition(_instance(settings), args.prefix)
    print(f"Forgot {printable(args.prefix)!r}: {removed} vectors and its partition removed.")
    return 0


def _print_hits(hits, as_json: bool) -> None:
    if as_json:
        print(json.dumps([hit.to_dict() for hit in hits], ensure_ascii=False, indent=2))
        return
    for hit in hits:
        reranked = f", re-ranked {hit.rerank_score:g}/10" if hit.rerank_score is not None else ""
        print(f"{hit.rank:>2}. {printable(hit.label)}  (relevance {hit.relevance:.3f}{reranked})")
        print(f"    {printable(hit.caption)}")
        if hit.people:
            print(f"    with {printable(', '.join(hit.people))}")
        if hit.place:
            print(f"    in {printable(place_words(hit.place))}")
        print(f"    {printable(hit.url)}")


def _request(args: argparse.Namespace) -> SearchRequest:
    """The command line's ``SearchRequest`` (what the page, the API and the job build too)."""
    return SearchRequest.of(
        args.question,
        top_k=args.top_k,
        prefixes=args.prefix,
        min_score=args.min_score,
        date_from=args.date_from,
        date_to=args.date_to,
        tags=args.tag,
        mode=args.mode,
        sort=args.sort,
        people=args.person,
        places=args.place,
        near=args.near,
    )


def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    from dam_pipeline import api

    hits = api.find(_request(args), settings=settings)
    if not hits and not args.json:
        floor = settings.min_score if args.min_score is None else args.min_score
        print(
            f"Nothing in the library matches {printable(args.question)!r} well "
            f"(similarity ≥ {floor})."
        )
        return 0
    _print_hits(hits, args.json)
    return 0


def cmd_ask(settings: Settings, args: argparse.Namespace) -> int:
    from dam_pipeline import api

    answer = api.answer(_request(args), settings=settings)
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        return 0
    print(printable(answer.text, keep_newlines=True))
    if answer.sources:
        print("\nSources:")
    for number, hit in enumerate(answer.sources, start=1):
        print(
            f"  [S{number}] {printable(hit.label)}  (relevance {hit.relevance:.3f})  "
            f"{printable(hit.caption)}"
        )
    if answer.cost_usd:
        print(f"\nThis answer cost ${answer.cost_usd:.4f} ({', '.join(answer.usage)}).")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from dam_pipeline.library import Library

    report = Library(settings).status()
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    for prefix, row in report.items():
        counts = ", ".join(
            f"{name} {row[name]}"
            for name in ("captioned", "quarantined", "failed", "deferred")
            if name in row
        )
        print(f"{printable(prefix) or '(top level)':32} {counts}{' ' + row.get('note', '')}")
        for status in ("failed", "deferred"):
            for reason, entry in row.get(f"{status}_by_reason", {}).items():
                example = printable(str(entry["example"]))[:160]
                print(f"    {status} ({reason}): {entry['images']}, e.g. {example}")
    return 0


def cmd_cost(settings: Settings, args: argparse.Namespace) -> int:
    from dam_pipeline.library import Library

    library = Library(settings)
    if args.estimate:
        estimate = library.estimate_ingest_cost(args.prefix)
        if args.json:
            print(json.dumps(estimate.to_dict(), indent=2))
            return 0
        print(
            f"{estimate.objects} objects not captioned yet by {estimate.captioner}: "
            f"about ${estimate.cost_usd:.4f} ({estimate.basis})"
        )
        if not estimate.priced:
            print(f"  {estimate.captioner} has no price: add it to DAM_PRICES")
        return 0
    spent = library.spend()
    if args.json:
        print(json.dumps(spent, indent=2))
        return 0
    print(
        f"Spent ${spent['cost_usd']:.4f}: {spent['requests']} requests, "
        f"{spent['input_tokens']:,} input and {spent['output_tokens']:,} output tokens, "
        f"{spent['images']} images"
    )
    if spent["unknown_cost"]:
        print(
            f"  and {spent['unknown_cost']} requests of unknown cost (timed out or unreadable: "
            "the provider may have billed them; its console has the exact figure)"
        )
    for title, group in (("By provider/model", "by_model"), ("By partition", "by_partition")):
        if spent[group]:
            print(f"\n{title}:")
        for name, row in spent[group].items():
            print(f"  {printable(name):44} ${row['cost_usd']:.4f}  {row['requests']} requests")
    if spent["by_day"]:
        print("\nBy day:")
    for day, row in spent["by_day"].items():
        print(f"  {day}  ${row['cost_usd']:.4f}")
    return 0


def cmd_similar(settings: Settings, args: argparse.Namespace) -> int:
    from dam_pipeline import api

    hits = api.similar(
        key=args.key,
        image=args.image,
        top_k=args.top_k or DEFAULT_TOP_K,
        prefixes=args.prefix,
        min_score=args.min_score,
        settings=settings,
    )
    if not hits and not args.json:
        print("No similar image found.")
    _print_hits(hits, args.json)
    return 0


def cmd_duplicates(settings: Settings, args: argparse.Namespace) -> int:
    from dam_pipeline import api

    groups = api.duplicates(prefixes=args.prefix, max_distance=args.max_distance, settings=settings)
    if args.json:
        payload = [group.to_dict() for group in groups]
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return 0
    if not groups:
        print("No near-duplicates found.")
    for group in groups:
        print(
            f"{len(group.keys)} images, similarity ≥ {group.similarity:.2f} (by {group.joined_by}):"
        )
        for key in group.keys:
            print(f"    {printable(key)}")
    return 0


def cmd_people(settings: Settings, args: argparse.Namespace) -> int:
    """`dam people [list|show|name|merge|hide|unhide|detach|forget|regroup|delete-all]`."""
    from dam_pipeline.faces.people_store import UnknownPersonError
    from dam_pipeline.library import Library

    library = Library(settings)
    action = args.people_command or "list"
    try:
        return _PEOPLE_ACTIONS[action](library, args)
    except UnknownPersonError as exc:
        print(f"dam: {exc.args[0]}", file=sys.stderr)
        return 2


def _people_list(library, args: argparse.Namespace) -> int:
    people = library.people_list(include_hidden=getattr(args, "all", False))
    if getattr(args, "json", False):
        print(json.dumps([p.to_dict() for p in people], ensure_ascii=False, indent=2))
        return 0
    if not people:
        print("No people found yet: faces are found when the library is ingested (DAM_FACES).")
    for person in people:
        name = printable(person.name) if person.name else "(no name)"
        hidden = "  [hidden]" if person.hidden else ""
        sample = ", ".join(printable(k) for k in person.photos[:3])
        faces = f"{person.faces} face{'s' if person.faces != 1 else ''}"
        photos = f"{len(person.photos)} photo{'s' if len(person.photos) != 1 else ''}"
        print(f"{person.person_id:>5}  {name}{hidden}: {faces} in {photos} (e.g. {sample})")
    return 0


def _people_show(library, args: argparse.Namespace) -> int:
    person = library.person(args.person)
    faces = library.person_faces(args.person)
    if args.json:
        print(json.dumps(person.to_dict() | {"face_ids": faces}, ensure_ascii=False, indent=2))
        return 0
    print(f"{person.person_id}: {printable(person.name or '(no name)')}")
    for face in faces:
        print(f"    face {face['face_id']}  in {printable(face['key'])}")
    return 0


def _people_name(library, args: argparse.Namespace) -> int:
    person = library.name_person(args.person, args.name)
    print(f"Person {person.person_id} is now {printable(person.name or '(no name)')}.")
    return 0


def _people_merge(library, args: argparse.Namespace) -> int:
    person = library.merge_people(args.into, args.other)
    print(f"Person {args.other} merged into {person.person_id} ({person.faces} faces).")
    return 0


def _people_hide(library, args: argparse.Namespace) -> int:
    library.hide_person(args.person, hidden=args.people_command == "hide")
    print(f"Person {args.person} is {'hidden' if args.people_command == 'hide' else 'shown'}.")
    return 0


def _people_detach(library, args: argparse.Namespace) -> int:
    new = library.detach_face(args.face)
    print(f"Face {args.face} taken out of its person: it is now person {new}.")
    return 0


def _people_forget(library, args: argparse.Namespace) -> int:
    if not args.yes:
        print(f"This deletes person {args.person}'s faces and keeps their new faces from being "
              "grouped again. Re-run with --yes.")  # fmt: skip
        return 1
    count = library.forget_person(args.person)
    print(f"Forgot person {args.person}: {count} faces deleted.")
    return 0


def _people_regroup(library, args: argparse.Namespace) -> int:
    done = library.regroup_people()
    print(f"Regrouped {done['faces']} faces into {done['persons']} people "
          f"({done['faces_moved']} moved); names and your decisions kept.")  # fmt: skip
    return 0


def _people_delete_all(library, args: argparse.Namespace) -> int:
    if not args.yes:
        print("This deletes every face descriptor and crop, every person and name. "
              "Re-run with --yes (and set DAM_FACES=false to stop finding faces).")  # fmt: skip
        return 1
    count = library.delete_all_faces()
    print(f"Deleted {count} faces, their descriptors and crops, and every person.")
    return 0


_PEOPLE_ACTIONS = {
    "list": _people_list,
    "show": _people_show,
    "name": _people_name,
    "merge": _people_merge,
    "hide": _people_hide,
    "unhide": _people_hide,
    "detach": _people_detach,
    "forget": _people_forget,
    "regroup": _people_regroup,
    "delete-all": _people_delete_all,
}


def _add_people_parser(people: argparse.ArgumentParser) -> None:
    people.add_argument("--json", action="store_true", help="machine-readable output")
    people.add_argument("--all", action="store_true", help="hidden people too")
    actions = people.add_subparsers(dest="people_command", metavar="action")
    listing = actions.add_parser("list", help="the people found (the default)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.add_argument("--all", action="store_true", help="hidden people too")
    show = actions.add_parser("show", help="one person's faces and photos")
    show.add_argument("person", type=int)
    show.add_argument("--json", action="store_true", help="machine-readable output")
    name = actions.add_parser("name", help="name a person (searches use it at once)")
    name.add_argument("person", type=int)
    name.add_argument("name", help="the name ('' takes it away)")
    merge = actions.add_parser("merge", help="two people are one: B's faces go to A")
    merge.add_argument("into", type=int, metavar="A")
    merge.add_argument("other", type=int, metavar="B")
    hiding = (("hide", "leave a person out of lists and searches"), ("unhide", "show again"))
    for verb, text in hiding:
        actions.add_parser(verb, help=text).add_argument("person", type=int)
    detach = actions.add_parser("detach", help="take one face out of its person")
    detach.add_argument("face", help="a face id (`dam people show ID` lists them)")
    forget = actions.add_parser("forget", help="delete a person's faces; never group them again")
    forget.add_argument("person", type=int)
    forget.add_argument("--yes", action="store_true", help="really forget")
    actions.add_parser("regroup", help="group every face again, keeping names and decisions")
    delete_all = actions.add_parser("delete-all", help="delete every face descriptor and crop")
    delete_all.add_argument("--yes", action="store_true", help="really delete")


def cmd_places(settings: Settings, args: argparse.Namespace) -> int:
    from dam_pipeline.library import Library

    places = Library(settings).places()
    if args.json:
        print(json.dumps(places, ensure_ascii=False, indent=2))
        return 0
    if not places:
        print("No photo has a place yet: places come from the photos' GPS (DAM_LOCATION).")
    for country in places:
        print(f"{printable(country['country'])}: {country['photos']} photos")
        for region in country["regions"]:
            cities = ", ".join(
                f"{printable(c['city'])} ({c['photos']})" for c in region["cities"] if c["city"]
            )
            print(f"    {printable(region['region'] or '(no region)')}: {region['photos']}"
                  + (f"; {cities}" if cities else ""))  # fmt: skip
    return 0


def cmd_reset_index(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.embedded_index_exists():
        print(f"There is no index at {settings.chroma_path}: nothing to reset.")
        return 0
    store = components.open_vector_store(settings)
    if not args.yes:
        print(
            f"This deletes all {store.count()} vectors in {settings.collection}. Re-run with --yes."
        )
        return 1
    store.reset()
    if (visual := components.open_visual_index(settings)) is not None:
        visual.reset()
    print(f"Emptied {settings.collection}; run `dam ingest` to rebuild it.")
    return 0


def cmd_init_home(settings: Settings, args: argparse.Namespace) -> int:
    postgres = args.postgres or ""
    if postgres and not postgres.startswith(("postgresql://", "postgres://")):
        print(f"dam: --postgres wants a postgresql:// URL, not {postgres!r}.", file=sys.stderr)
        return 2
    from dam_pipeline.defs.instance import ensure_dagster_home

    home = ensure_dagster_home(settings, postgres)
    print(home)
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from dam_pipeline.demo import DEMO_QUESTION, build_demo_library

    library = Path(settings.source.removeprefix("file://"))
    photos = build_demo_library(library)
    print(f"Demo library: {len(photos) - 1} photos and a clip in {library}")
    print("Materializing raw_images → normalized_images → captions → embeddings → vector_index")
    status = cmd_ingest(settings, argparse.Namespace(prefix=None, quiet=args.quiet))
    if status:
        return status
    print(f"\nQuestion: {DEMO_QUESTION}\n")
    answer = run_query_job(settings, DEMO_QUESTION, top_k=DEMO_IMAGES)
    print(printable(answer["answer"], keep_newlines=True))
    print("\nTop images:")
    for hit in answer["hits"]:
        print(
            f"  {hit['rank']}. {printable(hit['label']):38} relevance {hit['relevance']:.3f}  "
            f"{printable(hit['caption'])}"
        )
    print("\nOpen the Dagster UI (asset graph, partitions, runs, metadata) with:  make dev")
    print(
        f"Open the search page (http://{settings.serve_host}:{settings.serve_port}) "
        "with:  make serve"
    )
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from dam_pipeline.web import create_app

    host = args.host or settings.serve_host
    port = args.port or settings.serve_port
    open_to_others = host not in ("127.0.0.1", "localhost", "::1")
    if open_to_others and not settings.api_token.get_secret_value():
        if not settings.serve_without_token:
            print(
                f"dam serve: refusing to serve on {host} with no DAM_API_TOKEN (anyone who "
                "reaches it could search the library); set DAM_API_TOKEN, or "
                "DAM_SERVE_WITHOUT_TOKEN=true to open it on purpose",
                file=sys.stderr,
            )
            return 2
        print(f"Serving on {host} with no DAM_API_TOKEN: anyone who reaches it can search.")
    app = create_app(settings)
    print(f"Search page: http://{host}:{port}/   JSON API: http://{host}:{port}/openapi.json")
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


DEMO_IMAGES = 5
"""The demo prints the answer and its five best images."""


def run_query_job(settings: Settings, question: str, top_k: int = DEFAULT_TOP_K) -> dict:
    """Ask through Dagster's query_job, so the question shows in the UI too."""
    from dam_pipeline.definitions import build_definitions

    job = build_definitions(settings).resolve_job_def("query_job")
    # The run records every event for the UI; its console log is not for this terminal (the
    # job's config mapping leaves no room for a logger level, and a failure still raises).
    with contextlib.redirect_stderr(io.StringIO()):
        result = job.execute_in_process(
            instance=_instance(settings), run_config={"question": question, "top_k": top_k}
        )
    return result.output_for_node("answer_question")


def _add_query_options(command: argparse.ArgumentParser, *, filters: bool = True) -> None:
    command.add_argument(
        "-k", "--top-k", type=int, help=f"how many images, 1-{MAX_TOP_K} (default {DEFAULT_TOP_K})"
    )
    command.add_argument(
        "--prefix", action="append", help="only this prefix (repeatable), e.g. 'kitchen'"
    )
    command.add_argument(
        "--min-score", type=float, help="minimum similarity, -1 to 1 (default DAM_MIN_SCORE)"
    )
    command.add_argument("--json", action="store_true", help="machine-readable output")
    if not filters:
        return
    command.add_argument("--mode", choices=MODES, help="retrieval mode (default: DAM_SEARCH_MODE)")
    command.add_argument(
        "--sort",
        choices=("relevance", "date"),
        help="order of the relevant images: relevance (best first, the default) or date",
    )
    command.add_argument(
        "--from", dest="date_from", type=date.fromisoformat, help="taken on or after YYYY-MM-DD"
    )
    command.add_argument(
        "--to", dest="date_to", type=date.fromisoformat, help="taken on or before YYYY-MM-DD"
    )
    command.add_argument("--tag", action="append", help="require this tag (repeatable)")
    command.add_argument(
        "--person", action="append", help="only photos with this named person (repeatable: all)"
    )
    command.add_argument(
        "--place", action="append", help="taken in this city, region or country (repeatable: any)"
    )
    command.add_argument("--near", metavar="LAT,LON,KM", help="taken within KM of a point")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dam", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what each stage does")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    # The same two flags after the command (`dam ingest -q`), without overriding them.
    anywhere = argparse.ArgumentParser(add_help=False)
    anywhere.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    anywhere.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    def command(name: str, func, text: str) -> argparse.ArgumentParser:
        made = sub.add_parser(name, help=text, description=text, parents=[anywhere])
        made.set_defaults(func=func)
        return made

    command("demo", cmd_demo, "build the demo library, ingest it, ask one question")
    ingest = command("ingest", cmd_ingest, "register prefixes and materialize every asset")
    ingest.add_argument("--prefix", action="append", help="only this prefix (repeatable)")
    ingest.add_argument(
        "--retry-failed",
        action="store_true",
        help="send again images whose answers were unusable three runs in a row",
    )
    search = command("search", cmd_search, "find images that match a description")
    search.add_argument("question", help="what the image shows, in plain words")
    _add_query_options(search)
    ask = command("ask", cmd_ask, "answer a question from the captions, citing the images")
    ask.add_argument("question", help="a question about the library")
    _add_query_options(ask)
    similar = command("similar", cmd_similar, "images like an indexed one or a new file")
    target = similar.add_mutually_exclusive_group(required=True)
    target.add_argument("--key", help="the key of an indexed image, e.g. 'kitchen/coffee.jpg'")
    target.add_argument("--image", help="the path of an image file (not stored)")
    _add_query_options(similar, filters=False)
    dupes = command("duplicates", cmd_duplicates, "groups of near-duplicate images")
    dupes.add_argument("--prefix", action="append", help="only this prefix (repeatable)")
    dupes.add_argument(
        "--max-distance",
        type=int,
        default=DUPLICATE_DISTANCE,
        help=f"Hamming bits of 64 ({DUPLICATE_DISTANCE} ≈ similarity 0.9)",
    )
    dupes.add_argument("--json", action="store_true", help="machine-readable output")
    status = command("status", cmd_status, "per prefix: captioned, failed and deferred, by reason")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    cost = command("cost", cmd_cost, "what paid providers cost, or would cost to finish")
    cost.add_argument("--estimate", action="store_true", help="what captioning the rest would cost")
    cost.add_argument("--prefix", action="append", help="with --estimate: only this prefix")
    cost.add_argument("--json", action="store_true", help="machine-readable output")
    command("prefixes", cmd_prefixes, "register the source's prefixes as Dagster partitions")
    forget = command(
        "forget-prefix", cmd_forget_prefix, "remove a vanished prefix's images from the index"
    )
    forget.add_argument("prefix", help="a prefix whose objects were all deleted")
    forget.add_argument("--yes", action="store_true", help="really remove them")
    places = command("places", cmd_places, "countries, regions and cities, with photo counts")
    places.add_argument("--json", action="store_true", help="machine-readable output")
    people = command("people", cmd_people, "the people in the photos: list, name, merge ...")
    _add_people_parser(people)
    reset = command("reset-index", cmd_reset_index, "delete every vector (to re-index)")
    reset.add_argument("--yes", action="store_true", help="really delete")
    serve = command("serve", cmd_serve, "the search page and its JSON API")
    serve.add_argument("--host", help="address to listen on (default DAM_SERVE_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default DAM_SERVE_PORT, 8000)")
    init_home = command(
        "init-home", cmd_init_home, "create the Dagster instance folder; print its path"
    )
    init_home.add_argument(
        "--postgres",
        metavar="URL",
        help="keep runs, events and schedules in this Postgres (several machines; "
        "default: DAGSTER_PG_URL)",
    )
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("dam_pipeline").setLevel(logging.INFO if verbose else logging.WARNING)
    # Storage migrations and HTTP clients are not news, even with -v.
    for noisy in ("alembic", "sqlalchemy", "httpx", "chromadb", "dagster"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning, module="dagster")


def main(argv: list[str] | None = None) -> int:
    from dam_pipeline.library import EmptyIndexError
    from dam_pipeline.settings import SettingsError
    from dam_pipeline.sources import SourceUnavailableError
    from dam_pipeline.stages.progress import show_progress
    from dam_pipeline.vector_stores import IncompatibleIndexError

    args = build_parser().parse_args(argv)
    load_dotenv(".env")  # the same configuration `dagster dev` reads; the environment wins
    _configure_logging(args.verbose)
    if args.quiet:
        show_progress(False)
    try:
        settings = Settings.from_env()
        return args.func(settings, args)
    except SettingsError as exc:
        print(f"dam: {exc}", file=sys.stderr)
        return 2
    except (
        ValueError,
        FileNotFoundError,
        EmptyIndexError,
        SourceUnavailableError,
        IncompatibleIndexError,
        ConnectionError,
    ) as exc:
        print(f"dam: {printable(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
