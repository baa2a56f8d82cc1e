"""The web pages dialbgm serves itself (Starlette, served by uvicorn): ``dialbgm view``, a local
web app over run and experiment folders, and ``dialbgm annotate``, the pages of an annotation
campaign with its store of submissions.

Pages are rendered on the server from Jinja2 templates with autoescape on; every asset (CSS,
the little JavaScript) is served by the app itself, nothing comes from a CDN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialbgm._lazy import exports

__all__ = [
    "SCHEMA_VERSION",
    "AnnotationSite",
    "AnnotationStore",
    "AnnotatorStatus",
    "Campaign",
    "CampaignError",
    "CampaignState",
    "Submission",
    "ViewSettings",
    "annotation_status",
    "build_annotation_app",
    "campaign_dataset",
    "campaign_file",
    "check_host",
    "create_app",
    "default_export",
    "export_campaign",
    "load_campaign",
    "need_web",
    "open_campaign",
    "serve",
    "serve_campaign",
]

_WHERE = {
    "SCHEMA_VERSION": "._annostore",
    "AnnotationSite": "._annotate_app",
    "AnnotationStore": "._annostore",
    "AnnotatorStatus": "._annotate_export",
    "Campaign": "._campaign",
    "CampaignError": "._campaign",
    "CampaignState": "._annotate_export",
    "Submission": "._annostore",
    "ViewSettings": "._settings",
    "annotation_status": "._annotate_export",
    "build_annotation_app": "._annotate_app",
    "campaign_dataset": "._annotate_export",
    "campaign_file": "._campaign",
    "check_host": "._server",
    "create_app": "._app",
    "default_export": "._annotate_export",
    "export_campaign": "._annotate_export",
    "load_campaign": "._campaign",
    "need_web": "._settings",
    "open_campaign": "._annotate_export",
    "serve": "._server",
    "serve_campaign": "._annotate_serve",
}

if TYPE_CHECKING:
    from dialbgm.web._annostore import SCHEMA_VERSION, AnnotationStore, Submission
    from dialbgm.web._annotate_app import AnnotationSite, build_annotation_app
    from dialbgm.web._annotate_export import (
        AnnotatorStatus,
        CampaignState,
        annotation_status,
        campaign_dataset,
        default_export,
        export_campaign,
        open_campaign,
    )
    from dialbgm.web._annotate_serve import serve_campaign
    from dialbgm.web._app import create_app
    from dialbgm.web._campaign import Campaign, CampaignError, campaign_file, load_campaign
    from dialbgm.web._server import check_host, serve
    from dialbgm.web._settings import ViewSettings, need_web

__getattr__ = exports(__name__, _WHERE)
