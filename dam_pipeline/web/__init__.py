"""The web app (`dam serve`): a search page and a JSON API over the one ``Library``."""

from dam_pipeline.web.app import create_app

__all__ = ["create_app"]
