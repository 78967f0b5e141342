"""Flat URL table, hot endpoints first: Django resolves in order, and an ``include`` costs a
second resolver level on every request (measured in issue #2's note)."""

from django.urls import path

from accounts.users import (
    AdminView,
    PermissionsView,
    RoleSearchView,
    RolesView,
    UserSearchView,
    UsersView,
)
from distro import views as peer
from facades.console.urls import console_patterns
from facades.eureka import urls as eureka
from facades.nacos_v1 import audit, console
from facades.nacos_v1 import handlers as views
from facades.nacos_v1.urls import ns_patterns
from node import prometheus

NS = "nacos/v1/ns/"

urlpatterns = [
    *[path(NS + p.pattern._route, p.callback) for p in ns_patterns if hasattr(p.pattern, "_route")],
    path("nacos/v1/auth/login", views.login),
    path("nacos/v1/auth/users/login", views.login),
    path("nacos/v1/auth/logout", views.logout),
    path("nacos/v1/auth/users", UsersView.as_view()),
    path("nacos/v1/auth/users/search", UserSearchView.as_view()),
    path("nacos/v1/auth/users/admin", AdminView.as_view()),
    path("nacos/v1/auth/roles", RolesView.as_view()),
    path("nacos/v1/auth/roles/search", RoleSearchView.as_view()),
    path("nacos/v1/auth/permissions", PermissionsView.as_view()),
    path("nacos/v1/console/namespaces", console.namespaces),
    path("nacos/v1/console/server/state", console.server_state),
    path("nacos/v1/console/health/liveness", console.liveness),
    path("nacos/v1/console/health/readiness", console.readiness),
    path("nacos/v1/core/cluster/nodes", views.cluster_nodes),
    path("nacos/v1/core/loader/current", views.loader_current),
    path("nacos/v1/console/audit", audit.audit),
    path("nacos/v1/core/cluster/report", peer.report),
    path(NS + "distro/datum", peer.datum),
    path(NS + "distro/datums", peer.datums),
    path(NS + "distro/checksum", peer.checksum),
    path(NS + "distro/change", peer.change),
    path("bench/empty", views.empty),
    path("metrics", prometheus.metrics),
    # The Eureka facade (its own port serves only /eureka/; the peer path only signed forwards),
    # before the v1 edge's catch-all for unknown /nacos/v1/ns/ paths.
    *[path(base + route, view) for base in eureka.PREFIXES for route, view in eureka.ROUTES],
    *[p for p in ns_patterns if not hasattr(p.pattern, "_route")],
    *console_patterns,
]

handler404 = "facades.nacos_v1.api.not_found"
handler400 = "facades.nacos_v1.api.bad_request"
handler500 = "facades.nacos_v1.api.server_error"
