from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "bcsync"
admin.site.site_title = "bcsync"
admin.site.index_title = "Contacts and Microsoft 365 sync"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("health/", include("health.urls")),  # for load balancers: no sign-in, no details
    path("graph/", include("exchange_sync.urls")),  # Microsoft Graph's notifications: no sign-in
]
