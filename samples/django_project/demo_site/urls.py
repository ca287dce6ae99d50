from django.urls import path
from inbox.views import messages

urlpatterns = [path("messages/", messages)]
