"""Sources that count what their listings return: how much a change detection reads."""

from __future__ import annotations

from collections.abc import Iterator

from dam_pipeline.sources import LocalFolderSource
from dam_pipeline.sources.base import SourceObject


class CountingFolder(LocalFolderSource):
    """A folder source that counts the files its listings return (each one a ``stat``)."""

    listed = 0

    def iter_objects(self, prefix: str) -> Iterator[SourceObject]:
        for obj in super().iter_objects(prefix):
            self.listed += 1
            yield obj

    def iter_all_objects(self, start_after: str | None = None) -> Iterator[SourceObject]:
        for obj in super().iter_all_objects(start_after):
            self.listed += 1
            yield obj
