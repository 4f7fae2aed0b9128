from django.contrib import admin
from django.urls import path

from envsite import views
from envsite.settings import ADMIN_URL

urlpatterns = [
    path("", views.index),
    path(ADMIN_URL, admin.site.urls),
]
