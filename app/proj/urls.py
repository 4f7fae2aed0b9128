from django.contrib import admin
from django.urls import path

from demo import views

urlpatterns = [
    path("health/", views.health, name="health"),
    path("release/", views.release, name="release"),
    path("admin/", admin.site.urls),
]
