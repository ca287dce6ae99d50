from django.http import HttpRequest, JsonResponse

from .models import Message


def messages(request: HttpRequest) -> JsonResponse:
    rows = Message.objects.order_by("id").values("id", "conversation", "sender", "text")
    return JsonResponse({"messages": list(rows)})
