from django.urls import path

from persons import apis

urlpatterns = [
    path("persons", apis.PersonListApi.as_view()),
    # Before the detail route, which would take "import" and "export" for ids.
    path("persons/import", apis.PersonImportApi.as_view()),
    path("persons/export", apis.PersonExportApi.as_view()),
    path("persons/<str:person_id>", apis.PersonDetailApi.as_view()),
]
