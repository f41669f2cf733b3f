from django.urls import path

from . import views

urlpatterns = [
    path("notifications/", views.notifications, name="graph_notifications"),
    path("lifecycle/", views.lifecycle, name="graph_lifecycle"),
]
