from django.urls import include, path

from naming import views
from naming.urls import ns_patterns

urlpatterns = [
    path("nacos/v1/ns/", include(ns_patterns)),
    path("nacos/v1/auth/login", views.login),
    path("nacos/v1/auth/users/login", views.login),
    path("nacos/v1/core/cluster/nodes", views.cluster_nodes),
    path("bench/empty", views.empty),
]
