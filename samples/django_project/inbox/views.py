from django.http import JsonResponse

from .models import Message


def messages(request):
    rows = Message.objects.order_by("id").values("id", "conversation", "sender", "text")
    return JsonResponse({"messages": list(rows)})
