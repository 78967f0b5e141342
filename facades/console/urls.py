"""The console's pages under ``/nacos/console/`` and its entry point ``/nacos/``; mounted by
``server/urls.py`` after the API's hot paths (the console is never on a client's path)."""

from django.urls import path

from facades.console.views import admin, bulk, namespaces, naming, session, static

P = "nacos/console/"

console_patterns = [
    path("nacos/", session.root),
    path("nacos", session.root),
    path(P[:-1], session.root),
    path(P, session.root),
    path(P + "login", session.login),
    path(P + "logout", session.logout),
    path(P + "static/<path:path>", static.static),
    path(P + "services", naming.services),
    path(P + "service", naming.service_detail),
    path(P + "service/create", naming.service_create),
    path(P + "service/edit", naming.service_edit),
    path(P + "service/delete", naming.service_delete),
    path(P + "service/instances", naming.instances_fragment),
    path(P + "cluster/edit", naming.cluster_edit),
    path(P + "instance/create", naming.instance_create),
    path(P + "instance/edit", naming.instance_edit),
    path(P + "instance/enable", naming.instance_enable),
    path(P + "instance/delete", naming.instance_delete),
    path(P + "instances/bulk", bulk.instances_bulk),
    path(P + "init", session.first_admin),
    path(P + "subscribers", naming.subscribers),
    path(P + "namespaces", namespaces.namespaces),
    path(P + "namespace/create", namespaces.namespace_create),
    path(P + "namespace/edit", namespaces.namespace_edit),
    path(P + "namespace/delete", namespaces.namespace_delete),
    path(P + "users", admin.users),
    path(P + "users/create", admin.user_create),
    path(P + "users/reset", admin.user_reset),
    path(P + "users/delete", admin.user_delete),
    path(P + "roles", admin.roles),
    path(P + "roles/bind", admin.role_bind),
    path(P + "roles/unbind", admin.role_unbind),
    path(P + "permissions", admin.permissions),
    path(P + "permissions/add", admin.permission_add),
    path(P + "permissions/delete", admin.permission_delete),
    path(P + "password", admin.password),
    path(P + "cluster", admin.cluster),
    path(P + "audit", admin.audit),
]
