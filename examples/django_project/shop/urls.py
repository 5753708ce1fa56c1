"""URLs of the example shop."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("login/", views.login_view),
    path("items/<int:item_id>/", views.item),
    path("basket/", views.add_to_basket),
    path("boom/", views.boom),
    path("health/", views.health),
]
