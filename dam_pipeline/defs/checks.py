"""Asset checks: what must hold after each materialization, shown beside the asset in the UI.

They are evaluated inside the step that materializes the asset (``check_specs``), over every
partition of the run, with one row per partition in their metadata: a run over many
partitions gets one verdict, and the table says which partition broke it.
"""

from __future__ import annotations

import dagster as dg

from dam_pipeline.faces.people_store import PeopleStore
from dam_pipeline.manifests import RETRIED, Manifest
from dam_pipeline.vector_stores import VectorStore

QUARANTINE_SHARE = dg.AssetCheckSpec(
    "captions_quarantine_share",
    asset="captions",
    description="Few images are quarantined or failed (warns above DAM_MAX_QUARANTINE_SHARE).",
)
INDEX_MATCHES_MANIFEST = dg.AssetCheckSpec(
    "vector_index_matches_manifest",
    asset="vector_index",
    description="Exactly one vector per processed object, of the configured model and dimension.",
)

FACES_MATCH_PEOPLE = dg.AssetCheckSpec(
    "faces_match_people_store",
    asset="faces",
    description="Every face the manifest lists is in the people store, and no other face.",
)

PARTITION_ROWS = dg.TableSchema(
    columns=[
        dg.TableColumn("partition", "string"),
        dg.TableColumn("passed", "bool"),
        dg.TableColumn("detail", "string"),
    ]
)


def _rows(rows: list[tuple[str, bool, str]]) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        [dg.TableRecord({"partition": p, "passed": ok, "detail": d}) for p, ok, d in rows],
        schema=PARTITION_ROWS,
    )


def quarantine_share(captions: dict[str, Manifest], threshold: float) -> dg.AssetCheckResult:
    """The share of quarantined or failed images of each partition, against the threshold."""
    rows, examples = [], {}
    seen = quarantined = failed = 0
    for key, manifest in captions.items():
        # deferred images (the run's budget) are neither bad input nor provider errors
        not_ok = [r for r in manifest.not_ok() if r.status != "deferred"]
        share = len(not_ok) / len(manifest) if len(manifest) else 0.0
        seen += len(manifest)
        quarantined += sum(r.status == "quarantined" for r in not_ok)
        failed += sum(r.status == "failed" for r in not_ok)
        rows.append((key, share <= threshold, f"{len(not_ok)} of {len(manifest)} not ok"))
        examples.update({r.key: r.reason for r in not_ok[: 10 - len(examples)]})
    return dg.AssetCheckResult(
        check_name=QUARANTINE_SHARE.name,
        passed=all(ok for _, ok, _ in rows),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "seen": seen,
            "quarantined": quarantined,
            "failed": failed,
            "share": round((quarantined + failed) / seen, 4) if seen else 0.0,
            "threshold": threshold,
            "partitions": _rows(rows),
            "examples": dg.MetadataValue.json(examples),
        },
    )


def index_problems(manifest: Manifest, store: VectorStore, partition_key: str) -> list[str]:
    """What is wrong with one partition's slice of the index (nothing: it matches)."""
    stored = store.list_partition(partition_key)
    expected = {r.vector_id for r in manifest if r.status == "ok"}
    kept = {r.vector_id for r in manifest if r.status in RETRIED}
    summary = manifest.summary
    problems = []
    if missing := expected - set(stored):
        problems.append(f"{len(missing)} missing")
    if extra := set(stored) - expected - kept:
        problems.append(f"{len(extra)} extra")
    models = {m.get("embedder") for m in stored.values()}
    if expected and models - {summary.get("embedder")}:
        problems.append(f"other models: {sorted(str(m) for m in models)}")
    binding = store.binding()
    if expected and binding is not None and binding[1] != summary.get("dimension"):
        problems.append(f"index is {binding[1]}-d, manifest {summary.get('dimension')}-d")
    if summary.get("deletion_blocked"):
        problems.append(f"deletion blocked ({summary.get('would_delete')} would vanish)")
    return problems


def index_matches_manifest(indexed: dict[str, Manifest], store: VectorStore) -> dg.AssetCheckResult:
    """Every partition of the run has exactly its manifest's vectors in the index."""
    rows = []
    for key, manifest in indexed.items():
        problems = index_problems(manifest, store, key)
        rows.append((key, not problems, "; ".join(problems) or f"{len(manifest.ok())} vectors"))
    return dg.AssetCheckResult(
        check_name=INDEX_MATCHES_MANIFEST.name,
        passed=all(ok for _, ok, _ in rows),
        metadata={
            "partitions": _rows(rows),
            "failing": sum(not ok for _, ok, _ in rows),
        },
    )


def faces_match_people(faces: dict[str, Manifest], people: PeopleStore) -> dg.AssetCheckResult:
    rows = []
    for key, manifest in faces.items():
        listed = {face for record in manifest for face in record.face_ids}
        by_photo = people.photo_faces(key)
        stored = {face for ids in by_photo.values() for face in ids}
        kept = {  # a failed image keeps its earlier faces
            face
            for record in manifest
            if record.status == "failed"
            for face in by_photo.get(record.key, [])
        }
        missing, extra = listed - stored, stored - listed - kept
        detail = (
            f"{len(listed)} faces"
            if not (missing or extra)
            else (f"{len(missing)} listed but not stored, {len(extra)} stored but not listed")
        )
        rows.append((key, not (missing or extra), detail))
    return dg.AssetCheckResult(
        check_name=FACES_MATCH_PEOPLE.name,
        asset_key="faces",
        passed=all(ok for _, ok, _ in rows),
        metadata={"partitions": _rows(rows)},
    )
