"""The web pages dialbgm serves itself: the annotation campaign (``dialbgm annotate``)."""

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
    "annotation_status",
    "bind",
    "build_annotation_app",
    "campaign_dataset",
    "campaign_file",
    "default_export",
    "export_campaign",
    "load_campaign",
    "open_campaign",
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
    "annotation_status": "._annotate_export",
    "bind": "._annotate_serve",
    "build_annotation_app": "._annotate_app",
    "campaign_dataset": "._annotate_export",
    "campaign_file": "._campaign",
    "default_export": "._annotate_export",
    "export_campaign": "._annotate_export",
    "load_campaign": "._campaign",
    "open_campaign": "._annotate_export",
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
    from dialbgm.web._annotate_serve import bind, serve_campaign
    from dialbgm.web._campaign import Campaign, CampaignError, campaign_file, load_campaign

__getattr__ = exports(__name__, _WHERE)
