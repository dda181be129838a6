"""Videos: shots found by scene detection, one keyframe each, indexed like photos."""

from dam_pipeline.video.shots import (
    CODECS,
    CONTAINERS,
    Shot,
    VideoError,
    VideoLimits,
    VideoShots,
    extract_shots,
    sniff_container,
)

__all__ = [
    "CODECS",
    "CONTAINERS",
    "Shot",
    "VideoError",
    "VideoLimits",
    "VideoShots",
    "extract_shots",
    "sniff_container",
]
