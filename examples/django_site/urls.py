"""URLs of the example project."""

from __future__ import annotations

import views
from django.urls import path

urlpatterns = [path("orders/<int:order_id>", views.read_order)]
