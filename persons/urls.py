from django.urls import path

from persons import apis

urlpatterns = [
    path("persons", apis.PersonListApi.as_view()),
    path("persons/<str:person_id>", apis.PersonDetailApi.as_view()),
]
