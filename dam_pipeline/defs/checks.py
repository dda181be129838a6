"""Asset checks: what must hold after each materialization, shown beside the asset in the UI."""

import dagster as dg

from dam_pipeline.defs.partitions import image_prefixes
from dam_pipeline.defs.resources import StorageResource, VectorStoreResource
from dam_pipeline.manifests import Manifest


@dg.asset_check(
    asset="captions",
    partitions_def=image_prefixes,
    description="Few images are quarantined or failed (warns above DAM_MAX_QUARANTINE_SHARE).",
)
def captions_quarantine_share(captions: Manifest, storage: StorageResource) -> dg.AssetCheckResult:
    threshold = storage.settings.max_quarantine_share
    seen = len(captions)
    not_ok = captions.not_ok()
    share = len(not_ok) / seen if seen else 0.0
    return dg.AssetCheckResult(
        passed=share <= threshold,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "seen": seen,
            "quarantined": sum(r.status == "quarantined" for r in not_ok),
            "failed": sum(r.status == "failed" for r in not_ok),
            "share": round(share, 4),
            "threshold": threshold,
            "examples": dg.MetadataValue.json({r.key: r.reason for r in not_ok[:10]}),
        },
    )


@dg.asset_check(
    asset="vector_index",
    partitions_def=image_prefixes,
    description="Exactly one vector per processed object, of the configured model and dimension.",
)
def vector_index_matches_manifest(
    context: dg.AssetCheckExecutionContext,
    vector_index: Manifest,
    vector_store: VectorStoreResource,
) -> dg.AssetCheckResult:
    store = vector_store.open()
    partition_key = context.partition_key if context.has_partition_key else None
    stored = store.list_partition(partition_key) if partition_key else {}
    expected = {r.vector_id for r in vector_index if r.status == "ok"}
    kept = {r.vector_id for r in vector_index if r.status == "failed"}
    missing = sorted(expected - set(stored))
    extra = sorted(set(stored) - expected - kept)
    summary = vector_index.summary
    models = {m.get("embedder") for m in stored.values()}
    wrong_model = models - {summary.get("embedder")} if expected else set()
    binding = store.binding()
    wrong_dimension = (
        bool(expected) and binding is not None and binding[1] != summary.get("dimension")
    )
    return dg.AssetCheckResult(
        passed=not (
            missing or extra or wrong_model or wrong_dimension or summary.get("deletion_blocked")
        ),
        metadata={
            "expected": len(expected),
            "stored": len(stored),
            "missing": len(missing),
            "extra": len(extra),
            "models": dg.MetadataValue.json(sorted(str(m) for m in models)),
            "index_dimension": binding[1] if binding else 0,
            "manifest_dimension": int(summary.get("dimension", 0)),
            "deletion_blocked": bool(summary.get("deletion_blocked")),
        },
    )


image_library_checks = [captions_quarantine_share, vector_index_matches_manifest]
