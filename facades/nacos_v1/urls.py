from django.urls import path, re_path

from facades.nacos_v1 import events
from facades.nacos_v1 import handlers as views
from facades.nacos_v1.api import unknown_api

_operator = [
    path("switches", views.operator_switches),
    path("metrics", views.metrics),
    path("servers", views.servers),
    path("cluster/state", views.cluster_state),
    path("distro/server", views.distro_server),
    path("push/state", views.push_state),
]

ns_patterns = [
    path("instance/list", views.instance_list),
    path("instance/beat", views.instance_beat),
    path("instance", views.instance),
    path("instance/statuses", views.instance_statuses),
    path("instance/metadata/batch", views.instance_metadata_batch),
    path("service", views.service),
    path("service/list", views.service_list),
    path("service/names", views.service_names),
    path("service/subscribers", views.service_subscribers),
    path("service/checksum", views.service_checksum),
    path("service/leader", views.service_leader),
    path("service/revisions", events.service_revisions),
    path("events", events.events),
    path("catalog/service", views.catalog_service),
    path("catalog/instances", views.catalog_instances),
    path("catalog/services", views.catalog_services),
    path("catalog/rt/service", views.catalog_rt_service),
    path("cluster", views.cluster),
    path("health", views.health),
    path("health/instance", views.health),
    path("health/server", views.health_server),
    path("health/checkers", views.health_checkers),
    path("raft/leader", views.raft_leader),
    *[path(f"operator/{p.pattern}", p.callback) for p in _operator],
    *[path(f"ops/{p.pattern}", p.callback) for p in _operator],
    re_path(r"^nacos/v1/ns/(?P<rest>.*)$", unknown_api),
]
