from __future__ import annotations

from django.urls import path

from generations import views

urlpatterns = [
    path("", views.gallery, name="gallery"),
    path("generate/", views.generate, name="generate"),
    path("updates/", views.updates, name="updates"),
    path("v/<uuid:code>/", views.generation_detail, name="generation"),
    path("v/<uuid:code>/card/", views.generation_card, name="generation-card"),
    path("v/<uuid:code>/video.mp4", views.video, name="video"),
    path("v/<uuid:code>/poster.jpg", views.poster, name="poster"),
    path("frames/<str:name>", views.frame, name="frame"),
    path("callbacks/luma/<uuid:code>/<str:token>/", views.luma_callback, name="luma-callback"),
]
