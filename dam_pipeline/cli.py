"""``dam``: run the pipeline, search and ask from the command line.

dam demo                      build the demo library, ingest it through Dagster, ask once
dam prefixes                  register the source's prefixes as Dagster partitions
dam ingest [--prefix P ...]   materialize every asset for every (or the given) prefix
dam search "a red car"        the best-matching images (--mode, --from/--to, --tag)
dam ask "is there a cat?"     a grounded answer that cites the images
dam similar --key K | --image F   more like this
dam duplicates                groups of near-duplicate images
dam reset-index               empty the vector index (to re-index with another model)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from datetime import date
from pathlib import Path

from dotenv import load_dotenv

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # model loading is not news

from dam_pipeline.retrieval.search import MODES
from dam_pipeline.settings import Settings

QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
"""Runs still record every event for the UI; the terminal shows only warnings."""

DAGSTER_YAML = """# Written by `dam init-home`. The embedded Chroma index has a single writer,
# so runs are queued one at a time; with a Chroma server this can be raised.
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 1
"""


def ensure_dagster_home(settings: Settings) -> Path:
    """Use $DAGSTER_HOME, or a folder in the data directory, so runs show in `make dev`."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(settings.layout.dagster_home)))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


def _instance(settings: Settings):
    import dagster as dg

    ensure_dagster_home(settings)
    return dg.DagsterInstance.get()


def cmd_prefixes(settings: Settings, _: argparse.Namespace) -> int:
    from dam_pipeline.defs.jobs import register_prefixes
    from dam_pipeline.keys import decode_prefix

    new, keys = register_prefixes(_instance(settings), settings.open_source())
    for key in keys:
        print(f"{'+' if key in new else ' '} {key!s:40} {decode_prefix(key) or '(top level)'}")
    print(f"{len(keys)} prefixes, {len(new)} new")
    return 0


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from dam_pipeline.definitions import defs
    from dam_pipeline.defs.jobs import register_prefixes
    from dam_pipeline.keys import encode_prefix

    instance = _instance(settings)
    _, keys = register_prefixes(instance, settings.open_source())
    if args.prefix:
        keys = [encode_prefix(p) for p in args.prefix]
    if not keys:
        print(f"No images found in {settings.source}.", file=sys.stderr)
        return 1
    job = defs.resolve_job_def("ingest_job")
    failed = 0
    for key in keys:
        started = time.perf_counter()
        result = job.execute_in_process(
            partition_key=key, instance=instance, raise_on_error=False, run_config=QUIET_CONSOLE
        )
        status = "ok" if result.success else "FAILED"
        failed += not result.success
        counts = _indexed_counts(result)
        seconds = time.perf_counter() - started
        print(f"  {status:6} {key:32} {counts} ({seconds:.1f}s, run {result.run_id[:8]})")
    return 1 if failed else 0


def _indexed_counts(result) -> str:
    for materialization in result.asset_materializations_for_node("vector_index"):
        meta = materialization.metadata
        return ", ".join(
            f"{name} {meta[name].value}"
            for name in ("indexed", "quarantined", "upserted")
            if name in meta
        )
    return ""


def _print_hits(hits, as_json: bool) -> None:
    if as_json:
        print(json.dumps([hit.__dict__ for hit in hits], ensure_ascii=False, indent=2))
        return
    if not hits:
        print("No matching images.")
    for hit in hits:
        print(
            f"{hit.rank:>2}. {hit.key}  (score {hit.score:.3f})\n    {hit.caption}\n    {hit.url}"
        )


def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    from dam_pipeline import api

    hits = api.search(args.question, top_k=args.top_k, settings=settings, **_search_options(args))
    if not hits and not args.json:
        print(f"No image matches {args.question!r} (min score {args.min_score}).")
        return 0
    _print_hits(hits, args.json)
    return 0


def _search_options(args: argparse.Namespace) -> dict:
    return {
        "prefixes": args.prefix,
        "min_score": args.min_score,
        "date_from": args.date_from,
        "date_to": args.date_to,
        "tags": args.tag,
        "mode": args.mode,
    }


def cmd_similar(settings: Settings, args: argparse.Namespace) -> int:
    from dam_pipeline import api

    hits = api.similar(
        key=args.key,
        image=args.image,
        top_k=args.top_k,
        settings=settings,
        prefixes=args.prefix,
        min_score=args.min_score,
    )
    _print_hits(hits, args.json)
    return 0


def cmd_duplicates(settings: Settings, args: argparse.Namespace) -> int:
    from dam_pipeline import api

    groups = api.duplicates(args.prefix, args.max_distance, settings=settings)
    if args.json:
        payload = [{"keys": g.keys, "similarity": g.similarity} for g in groups]
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return 0
    if not groups:
        print("No near-duplicates found.")
    for group in groups:
        print(f"{len(group.keys)} images, similarity ≥ {group.similarity:.2f}:")
        for key in group.keys:
            print(f"    {key}")
    return 0


def cmd_ask(settings: Settings, args: argparse.Namespace) -> int:
    from dam_pipeline import api

    answer = api.ask(args.question, top_k=args.top_k, settings=settings, **_search_options(args))
    if args.json:
        payload = {
            "question": answer.question,
            "answer": answer.text,
            "cited": [answer.sources[n - 1].key for n in answer.cited],
            "sources": [hit.__dict__ for hit in answer.sources],
            "reasoner": answer.reasoner,
            "error": answer.error,
        }
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return 0
    print(answer.text)
    print()
    print("Sources:")
    for number, hit in enumerate(answer.sources, start=1):
        print(f"  [S{number}] {hit.key}  (score {hit.score:.3f})  {hit.caption}")
    return 0


def cmd_reset_index(settings: Settings, args: argparse.Namespace) -> int:
    from dam_pipeline.api import open_index

    store = open_index(settings)
    if not args.yes:
        print(
            f"This deletes all {store.count()} vectors in {settings.collection}. Re-run with --yes."
        )
        return 1
    store.reset()
    print(f"Emptied {settings.collection}; re-materialize vector_index (dam ingest) to rebuild it.")
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from dam_pipeline.demo import DEMO_QUESTION, build_demo_library

    library = Path(settings.source.removeprefix("file://"))
    photos = build_demo_library(library)
    print(f"Demo library: {len(photos)} photos in {library}")
    print("Materializing raw_images → normalized_images → captions → embeddings → vector_index")
    status = cmd_ingest(settings, argparse.Namespace(prefix=None))
    if status:
        return status
    print(f"\nQuestion: {DEMO_QUESTION}\n")
    cmd_query_job(settings, DEMO_QUESTION)
    print("\nOpen the Dagster UI (asset graph, partitions, runs, metadata) with:  make dev")
    return 0


def cmd_query_job(settings: Settings, question: str, top_k: int = 5) -> None:
    """Run the question through Dagster's query_job so it shows in the UI too."""
    from dam_pipeline.definitions import defs

    result = defs.resolve_job_def("query_job").execute_in_process(
        instance=_instance(settings),
        run_config={
            **QUIET_CONSOLE,
            "ops": {"answer_question": {"config": {"question": question, "top_k": top_k}}},
        },
    )
    output = result.output_for_node("answer_question")
    print(output["answer"])
    print("\nTop images:")
    for hit in output["hits"]:
        print(f"  {hit['rank']}. {hit['key']:38} score {hit['score']:.3f}  {hit['caption']}")


def _add_common(command: argparse.ArgumentParser) -> None:
    command.add_argument("-k", "--top-k", type=int, default=5)
    command.add_argument("--prefix", action="append", help="only this prefix (repeatable)")
    command.add_argument("--min-score", type=float, default=0.0, help="minimum similarity")
    command.add_argument("--json", action="store_true", help="machine-readable output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dam", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("demo", help="build the demo library, ingest it, ask one question").set_defaults(
        func=cmd_demo
    )
    sub.add_parser("prefixes", help="register prefixes as partitions").set_defaults(
        func=cmd_prefixes
    )
    ingest = sub.add_parser("ingest", help="materialize the assets through Dagster")
    ingest.add_argument("--prefix", action="append", help="only this prefix (repeatable)")
    ingest.set_defaults(func=cmd_ingest)

    for name, func, text in (
        ("search", cmd_search, "find images"),
        ("ask", cmd_ask, "answer a question"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("question")
        _add_common(command)
        command.add_argument(
            "--mode", choices=MODES, help="retrieval mode (default: DAM_SEARCH_MODE)"
        )
        command.add_argument("--from", dest="date_from", type=date.fromisoformat, help="YYYY-MM-DD")
        command.add_argument("--to", dest="date_to", type=date.fromisoformat, help="YYYY-MM-DD")
        command.add_argument("--tag", action="append", help="require this tag (repeatable)")
        command.set_defaults(func=func)

    similar = sub.add_parser("similar", help="images like an indexed one or a new file")
    target = similar.add_mutually_exclusive_group(required=True)
    target.add_argument("--key", help="the key of an indexed image")
    target.add_argument("--image", help="the path of an image file")
    _add_common(similar)
    similar.set_defaults(func=cmd_similar)

    dupes = sub.add_parser("duplicates", help="groups of near-duplicate images")
    dupes.add_argument("--prefix", action="append", help="only this prefix (repeatable)")
    dupes.add_argument("--max-distance", type=int, default=6, help="Hamming bits (of 64)")
    dupes.add_argument("--json", action="store_true", help="machine-readable output")
    dupes.set_defaults(func=cmd_duplicates)

    reset = sub.add_parser("reset-index", help="delete every vector (to re-index)")
    reset.add_argument("--yes", action="store_true")
    reset.set_defaults(func=cmd_reset_index)
    sub.add_parser("init-home", help="create $DAGSTER_HOME").set_defaults(
        func=lambda settings, _: print(ensure_dagster_home(settings)) or 0
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Partitioned asset checks are a Dagster preview feature; say so once in the README,
    # not on every command.
    warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*")
    load_dotenv(".env")  # the same configuration `dagster dev` reads; the environment wins
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    try:
        return args.func(Settings.from_env(), args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"dam: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
