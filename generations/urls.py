from __future__ import annotations

from django.urls import path

from generations import views

urlpatterns = [
    path("", views.gallery, name="gallery"),
    path("generate/", views.generate, name="generate"),
    path("compose/", views.compose, name="compose"),
    path("updates/", views.updates, name="updates"),
    path("v/<uuid:code>/", views.generation_detail, name="generation"),
    path("v/<uuid:code>/card/", views.generation_card, name="generation-card"),
    path("v/<uuid:code>/star/", views.star, name="star"),
    path("v/<uuid:code>/unstar/", views.unstar, name="unstar"),
    path("v/<uuid:code>/rename/", views.rename, name="rename"),
    path("v/<uuid:code>/delete/", views.delete, name="delete"),
    path("v/<uuid:code>/hide/", views.hide, name="hide"),
    path("v/<uuid:code>/unhide/", views.unhide, name="unhide"),
    path("v/<uuid:code>/retry/", views.retry, name="retry"),
    path("v/<uuid:code>/use-last-frame/", views.use_last_frame, name="use-last-frame"),
    path("v/<uuid:code>/video.mp4", views.video, name="video"),
    path("v/<uuid:code>/download/", views.download, name="download"),
    path("v/<uuid:code>/poster.jpg", views.poster, name="poster"),
    path("frames/<str:name>", views.frame, name="frame"),
    path("callbacks/luma/<uuid:code>/<str:token>/", views.luma_callback, name="luma-callback"),
]
