from django.urls import path

from credits import apis

urlpatterns = [
    path("operations/credits/balance", apis.CreditBalanceApi.as_view()),
    path("operations/credits/history", apis.CreditHistoryApi.as_view()),
]
